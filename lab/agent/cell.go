package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nfslab/nfslab/lab/cluster"
	"github.com/nfslab/nfslab/lab/datapath"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/internal/ticking"
	"github.com/nfslab/nfslab/lab/nfs"
	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/lab/verdict"
)

// The cell runner: the sequence of a cell's steps, written against what it needs from the
// cluster, the node and the datapath. The netns form's pieces are wired in parts.go.

// Cluster is where the cell's NFS server runs and its service is published.
type Cluster interface {
	// Setup prepares the cluster for the cell and says what it made.
	Setup(ctx context.Context) (string, error)
	// Service is the service the node mounts.
	Service() cluster.Service
	// StartBackend brings up a new backend pod serving NFS, with an address the cluster
	// chooses, and returns once it serves.
	StartBackend(ctx context.Context) (cluster.Backend, error)
	// Publish makes the service's endpoints list b alone (nil: no endpoint) and returns once
	// the datapath has been told.
	Publish(ctx context.Context, b cluster.Backend) error
	// Teardown removes everything the cluster made for the cell.
	Teardown(ctx context.Context) error
}

// Node is where the kernel NFS client mounts the service, and where the probes run.
type Node interface {
	// Prepare gives the cell a clean node (an empty conntrack table).
	Prepare(ctx context.Context) error
	Mount(ctx context.Context, svc cluster.Service) (string, error)
	StartProbe(seq int, baseline bool) *probeRun
	MountEntry() (nfs.MountEntry, error)
	// KernelSockets are the node's TCP sockets to port that belong to the kernel itself.
	KernelSockets(port uint16) ([]event.Socket, error)
	// ActiveOpens is the node's count of TCP connects so far.
	ActiveOpens() (uint64, error)
	Unmount(ctx context.Context) error
}

// Datapath is the service datapath nfslab installs on the node. It may also keep counters
// (datapath.Instrumented), stream its hook's events (datapath.HookEventSource) and describe
// itself (datapath.Describer).
type Datapath interface {
	Install(ctx context.Context) error
	// Verify checks, from what the kernel reports, that the datapath in effect on the node is
	// this one and serves the service vip alone (datapath.Datapath's Verify).
	Verify(vip netip.Addr, ports []datapath.Port) error
	Close(ctx context.Context) error
}

// parts are a cell's cluster, node and datapath, and how to start its connect tracer.
type parts struct {
	cluster  Cluster
	node     Node
	datapath Datapath
	tracer   func(port uint16) (ConnectTracer, error)
	// clusterObs, in the kind form, is the record of the kind cluster the cell runs on (its
	// creation, its Cilium), put on the cell's own timeline as the cell begins.
	clusterObs *event.ClusterObs
}

// sampleEvery is how often sockets and hook counters are sampled while waiting for recovery; it
// bounds the early verdict's latency.
const sampleEvery = 200 * time.Millisecond

// probeRetryEvery is the pause between probes that failed fast.
const probeRetryEvery = 500 * time.Millisecond

// maxConnectEvents caps the connect records a cell puts on its timeline: a reconnect loop can
// produce hundreds a second, and the first ones are the evidence.
const maxConnectEvents = 300

// cellRun is one cell being run.
type cellRun struct {
	cell scenario.Cell
	em   *emitter
	log  *slog.Logger
	parts

	// gate, when set, holds the cell before a step until it returns (nfslab demo: the
	// presenter's word before the fault, before backend B, and before the teardown); an error
	// ends the cell. nil for nfslab run.
	gate func(context.Context, event.Step) error
	// pause, when set, holds the cell at its snapshot point (snapshot.CellReady: set up and
	// mounted, right before the fault) until the host says go on (pauseForHost).
	pause func() error

	svc        cluster.Service
	installed  bool
	mountTried bool
	backendA   cluster.Backend
	probe      *probeRun // the last probe started; still running when stuck

	// Evidence sampling.
	lastSockets []event.Socket
	lastSample  event.Mono // when the sockets were last read
	lastHook    *event.HookObs
	lastLost    map[string]uint64 // records lost so far, per instrument
	failing     map[string]bool   // instruments whose last read failed

	// Tracers of connect attempts: the kernel_connect kprobe and the socket-LB hook's events.
	tracer     ConnectTracer
	stopTrace  context.CancelFunc
	traceWG    sync.WaitGroup
	traced     atomic.Int64 // connect records emitted; past maxConnectEvents they are counted only
	kprobeSeen atomic.Int64 // records the kprobe handed in
	instrMu    sync.Mutex   // guards lastLost and failing (tracer goroutines report too)
}

func newCellRun(c scenario.Cell, em *emitter, log *slog.Logger, p parts) *cellRun {
	return &cellRun{cell: c, em: em, log: log, parts: p, lastLost: map[string]uint64{}, failing: map[string]bool{}}
}

// run runs the cell end to end and tears it down. It reports whether the teardown left a process
// stuck in the kernel (the VM is then unfit for more cells).
func (r *cellRun) run(ctx context.Context) (tainted bool) {
	r.em.beginCell(r.cell.Index)
	defer r.em.endCell()
	if r.clusterObs != nil {
		r.em.emit(event.Event{Kind: event.KindObserve, Cluster: r.clusterObs})
	}

	decision := r.execute(ctx)
	r.em.emit(event.Event{Kind: event.KindCellDone, Verdict: &event.VerdictRecord{Verdict: string(decision.Verdict), Reason: decision.Reason}})
	if err := r.wait(ctx, event.StepTeardown); err != nil {
		r.log.Debug("gate before teardown", "err", err)
	}
	return r.teardown()
}

// wait holds the cell at the gate before step s, sampling the evidence meanwhile; without a
// gate it returns at once.
func (r *cellRun) wait(ctx context.Context, s event.Step) error {
	if r.gate == nil {
		return nil
	}
	return ticking.While(ctx, sampleEvery, func(ctx context.Context) error { return r.gate(ctx, s) }, r.sample)
}

func (r *cellRun) decide(final bool) verdict.Decision {
	events := r.em.events()
	if d, ok := LabFailure(events); ok {
		return d
	}
	return verdict.Decide(verdict.Collect(r.cell.Port, events), final)
}

// LabFailure is the decision on a cell whose timeline shows the lab itself failed a check of
// its setup — the datapath in effect on the node was not the cell's — and whether it does.
// Such a cell says nothing about the mount: it is inconclusive, and no expectation may count
// it as passed.
func LabFailure(events []event.Event) (verdict.Decision, bool) {
	for _, e := range events {
		if e.Kind == event.KindError && e.Step == event.StepDatapathChecked {
			return verdict.Decision{Verdict: verdict.Inconclusive, Reason: "lab: " + string(e.Step) + ": " + e.Msg, Final: true, Code: verdict.CodeSetupError.With(string(e.Step))}, true
		}
	}
	return verdict.Decision{}, false
}

// execute runs the cell's steps; any failure is recorded as an error event and ends the cell.
func (r *cellRun) execute(ctx context.Context) verdict.Decision {
	steps := []struct {
		step event.Step
		do   func(context.Context) (string, error)
	}{
		{event.StepTopology, r.setup},
		{event.StepTracer, func(context.Context) (string, error) { return r.startTracing(), nil }},
		{event.StepDatapath, r.installDatapath},
		{event.StepBackendServing, func(ctx context.Context) (string, error) {
			a, err := r.cluster.StartBackend(ctx)
			if err != nil {
				return "", err
			}
			r.backendA = a
			return fmt.Sprintf("%s served on %s:%d in pod %s", r.cell.Protocol, a.Addr(), r.svc.NFSPort(), a.Name()), nil
		}},
		{event.StepServicePointed, func(ctx context.Context) (string, error) {
			if err := r.cluster.Publish(ctx, r.backendA); err != nil {
				return "", err
			}
			return fmt.Sprintf("%s -> %s (%s)", r.svc.VIP, r.backendA.Addr(), r.svc.PortList()), nil
		}},
		{event.StepMounted, func(ctx context.Context) (string, error) {
			r.mountTried = true
			return r.node.Mount(ctx, r.svc)
		}},
		{event.StepBaselineIO, r.baseline},
		{event.StepDatapathChecked, r.checkDatapath},
	}
	setup := r.cell.Timeouts.Setup.Duration
	for _, s := range steps {
		sctx, cancel := context.WithTimeout(ctx, setup)
		msg, err := s.do(sctx)
		cancel()
		if err != nil {
			r.em.fail(s.step, err)
			return r.decide(true)
		}
		r.em.step(s.step, "%s", msg)
	}
	r.observeMount()
	r.sample()
	r.checkSight()
	if r.pause != nil {
		if err := r.pause(); err != nil {
			r.em.fail(event.StepFaultInjected, err)
			return r.decide(true)
		}
	}

	if err := r.wait(ctx, event.StepFaultInjected); err != nil {
		r.em.fail(event.StepFaultInjected, err)
		return r.decide(true)
	}
	r.em.setPhase(event.PhaseAfter)
	bReady, inflight, err := r.failover(ctx)
	if err != nil {
		return r.decide(true)
	}
	d := r.awaitRecovery(ctx, bReady, inflight)
	r.observeMount()
	r.sample()
	return d
}

// setup prepares the node and the cluster.
func (r *cellRun) setup(ctx context.Context) (string, error) {
	r.instrument(instrConntrack, r.node.Prepare(ctx))
	msg, err := r.cluster.Setup(ctx)
	r.svc = r.cluster.Service()
	return msg, err
}

func (r *cellRun) installDatapath(ctx context.Context) (string, error) {
	c := r.cell
	r.installed = true // from here on teardown removes it, whatever Install left
	if err := r.datapath.Install(ctx); err != nil {
		return "", fmt.Errorf("install %s: %w", c.Datapath, err)
	}
	r.traceHook()
	msg := c.Datapath + " installed"
	d, ok := r.datapath.(datapath.Describer)
	if ok {
		if what, err := d.Describe(); err == nil && what != "" {
			msg += "; " + what
		}
	}
	if _, isLB := r.datapath.(datapath.HookEventSource); !isLB {
		// Which socket-level programs the kernel's sockets meet here: none, for kube-proxy.
		if what, err := datapath.EffectiveAt(CgroupRoot); err == nil {
			msg += "; " + what
		}
	}
	return msg, nil
}

// checkDatapath verifies, right before the fault, that the datapath in effect on the node is
// the one the cell installed, serving the cell's service alone: a socket-LB left at the root
// cgroup under a kube-proxy cell, or another service in the socket-LB's map, would make the
// cell's verdict about another datapath than the one it names.
func (r *cellRun) checkDatapath(context.Context) (string, error) {
	if err := r.datapath.Verify(r.svc.VIP, r.svc.Ports); err != nil {
		return "", fmt.Errorf("the datapath in effect is not the cell's %s alone: %w", r.cell.Datapath, err)
	}
	return fmt.Sprintf("%s alone in effect, for %s (%s)", r.cell.Datapath, r.svc.VIP, r.svc.PortList()), nil
}

// baseline writes the file every later probe reads back.
func (r *cellRun) baseline(ctx context.Context) (string, error) {
	p := r.node.StartProbe(0, true)
	r.probe = p
	select {
	case err := <-p.done:
		r.emitProbe(p, err, false)
		if err != nil {
			return "", fmt.Errorf("baseline I/O through the mount: %w", err)
		}
		return fmt.Sprintf("write+fsync+read in %.2f s", p.finish.Sub(p.start).Seconds()), nil
	case <-ctx.Done():
		r.emitProbe(p, nil, true)
		return "", fmt.Errorf("baseline I/O through the mount: %w", ctx.Err())
	}
}

// teardown removes everything the cell created, in reverse order. It reports whether the VM is
// unfit for another cell: a part failed to go (whatever it left — a mount, rules, a BPF link, a
// namespace — would be part of the next cell's lab), or a probe is still stuck in the kernel
// after the mount was forced away.
func (r *cellRun) teardown() (tainted bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var errs []error
	// Unmount while the backend still serves, so a healthy mount goes away at once and a stuck
	// one is forced.
	if r.mountTried {
		if err := r.node.Unmount(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	stuck := false
	if r.probe != nil {
		select {
		case <-r.probe.exited:
		case <-time.After(3 * time.Second):
			_ = r.probe.kill()
			select {
			case <-r.probe.exited:
			case <-time.After(2 * time.Second):
				stuck = true
			}
		}
	}
	r.stopTracing()
	if r.installed {
		if err := r.datapath.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("remove datapath: %w", err))
		}
	}
	if err := r.cluster.Teardown(ctx); err != nil {
		errs = append(errs, err)
	}
	var why []string
	if err := errors.Join(errs...); err != nil {
		r.em.fail(event.StepTeardown, err)
		why = append(why, "the teardown failed")
	}
	if stuck {
		why = append(why, fmt.Sprintf("probe %d is still blocked in the kernel after a forced unmount", r.probe.seq))
	}
	if len(why) > 0 {
		r.em.step(event.StepTeardownTainted, "%s; the VM runs no other cell", strings.Join(why, "; "))
		return true
	}
	r.em.step(event.StepTeardown, "cell resources removed")
	return false
}
