package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab/cluster"
	"github.com/nfslab/nfslab/lab/cluster/kind"
	"github.com/nfslab/nfslab/lab/datapath"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/fault"
	"github.com/nfslab/nfslab/lab/nfs"
	"github.com/nfslab/nfslab/lab/observe/connecttrace"
	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/lab/verdict"
)

// The cell runner against fakes: the sequence of steps, the facts it puts on the timeline, the
// early verdict, and the teardown of everything on every path. The addresses the fake cluster
// chooses differ from the scenario's, so the verdict must take them from the timeline.

// world is the fake cluster, node, datapath and tracer of one test, and what happened to them.
type world struct {
	mu  sync.Mutex
	log []string // what was called, in order

	record func(event.Event) event.Event
	vip    netip.Addr
	pods   []netip.Addr
	backs  []*fakeBackend
	// pointed is the backend the service points at (invalid: none), as the datapath was told.
	pointed netip.Addr
	killed  bool // backend A was killed

	failStart    int // StartBackend call (1-based) that fails; 0: none
	failInstall  bool
	verifyErr    error // what the datapath's check before the fault finds; nil: the cell's datapath alone
	teardownErr  error // what the cluster's teardown fails with
	socketErr    error
	probeOK      func(w *world, seq int) bool // whether a probe after the fault succeeds at once
	tracerInputs func(w *world) []netip.AddrPort
	connects     chan connecttrace.Connect
	tracerLost   uint64 // what the tracer says it lost
	lostErr      error  // why the tracer cannot say what it lost
}

// addresses gives the world the addresses its fake cluster chooses and its tracer channel, once:
// before the goroutine that feeds the tracer reads them.
func (w *world) addresses() {
	if w.connects != nil {
		return
	}
	w.vip = netip.MustParseAddr("10.96.133.7")
	w.pods = []netip.Addr{netip.MustParseAddr("10.244.0.5"), netip.MustParseAddr("10.244.0.9")}
	w.connects = make(chan connecttrace.Connect, 64)
}

func (w *world) called(what string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.log = append(w.log, what)
}

func (w *world) calls() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.log)
}

// fakeCluster
type fakeCluster struct{ w *world }

func (c fakeCluster) Setup(context.Context) (string, error) {
	c.w.called("cluster.Setup")
	return "fake", nil
}
func (c fakeCluster) Service() cluster.Service {
	return cluster.Service{Name: "nfslab/nfs", VIP: c.w.vip, Ports: []datapath.Port{{Name: "nfs", Port: 2049, Protocol: "tcp"}}}
}
func (c fakeCluster) StartBackend(context.Context) (cluster.Backend, error) {
	w := c.w
	w.called("cluster.StartBackend")
	n := len(w.backs)
	if w.failStart == n+1 {
		return nil, errors.New("image pull failed")
	}
	b := &fakeBackend{w: w, name: fmt.Sprintf("nfs-%d", n), addr: w.pods[n]}
	w.backs = append(w.backs, b)
	return b, nil
}
func (c fakeCluster) Publish(_ context.Context, b cluster.Backend) error {
	w := c.w
	var eps []string
	w.mu.Lock()
	w.pointed = netip.Addr{}
	if b != nil {
		w.pointed = b.Addr()
		eps = []string{b.Addr().String()}
	}
	w.mu.Unlock()
	w.called(fmt.Sprintf("cluster.Publish(%v)", eps))
	w.record(event.Event{Kind: event.KindObserve, Service: &event.ServiceObs{Name: "nfslab/nfs", VIP: w.vip.String(), Endpoints: eps, Datapath: true}})
	return nil
}
func (c fakeCluster) Teardown(context.Context) error {
	c.w.called("cluster.Teardown")
	return c.w.teardownErr
}

type fakeBackend struct {
	w    *world
	name string
	addr netip.Addr
}

func (b *fakeBackend) Name() string     { return b.name }
func (b *fakeBackend) Addr() netip.Addr { return b.addr }
func (b *fakeBackend) Fault(ctx context.Context, name string) error {
	return fault.Inject(ctx, name, b)
}

func (b *fakeBackend) Kill(context.Context) error {
	b.w.called("kill " + b.name)
	b.w.mu.Lock()
	b.w.killed = true
	b.w.mu.Unlock()
	return nil
}
func (b *fakeBackend) Blackhole(context.Context) error { b.w.called("blackhole " + b.name); return nil }
func (b *fakeBackend) Settle(context.Context) error    { return nil }
func (b *fakeBackend) Delete(context.Context) error    { b.w.called("delete " + b.name); return nil }
func (w *world) vipPort() netip.AddrPort               { return netip.AddrPortFrom(w.vip, 2049) }
func (w *world) podPort(i int) netip.AddrPort          { return netip.AddrPortFrom(w.pods[i], 2049) }
func (w *world) isPointed(a netip.Addr) bool           { w.mu.Lock(); defer w.mu.Unlock(); return w.pointed == a }
func (n fakeNode) ActiveOpens() (uint64, error)        { return 0, nil }
func (n fakeNode) Prepare(context.Context) error       { n.w.called("node.Prepare"); return nil }
func (n fakeNode) Unmount(context.Context) error       { n.w.called("node.Unmount"); return nil }
func (n fakeNode) MountEntry() (nfs.MountEntry, error) {
	return nfs.MountEntry{Source: "vip:/export", FSType: "nfs4"}, nil
}

// fakeNode mounts nothing; its probes finish at once or block until killed.
type fakeNode struct{ w *world }

func (n fakeNode) Mount(_ context.Context, svc cluster.Service) (string, error) {
	n.w.called("node.Mount " + svc.VIP.String())
	return "mounted", nil
}

func (n fakeNode) StartProbe(seq int, baseline bool) *probeRun {
	p := &probeRun{seq: seq, start: now(), done: make(chan error, 1), exited: make(chan struct{})}
	var once sync.Once
	finish := func(err error) {
		once.Do(func() {
			p.finish = now()
			p.done <- err
			close(p.exited)
		})
	}
	p.kill = func() error { finish(errors.New("killed")); return nil }
	if baseline {
		finish(nil)
		return p
	}
	// The probe finishes once the kernel would answer, or blocks until killed.
	go func() {
		for {
			select {
			case <-p.exited:
				return
			case <-time.After(20 * time.Millisecond):
				if n.w.probeOK(n.w, seq) {
					finish(nil)
				}
			}
		}
	}()
	return p
}

func (n fakeNode) KernelSockets(uint16) ([]event.Socket, error) {
	w := n.w
	if w.socketErr != nil {
		return nil, w.socketErr
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	// A socket-LB rewrites the VIP to the endpoint it has: after the fault, while the
	// endpoint is stale, the kernel's reconnect is a SYN to the dead backend.
	if w.killed && w.pointed == w.pods[0] {
		return []event.Socket{{Local: "10.0.0.1:700", Remote: w.pods[0].String() + ":2049", State: "SYN-SENT", Kernel: true}}, nil
	}
	return nil, nil
}

// fakeDatapath records Install and Close.
type fakeDatapath struct{ w *world }

func (d fakeDatapath) Install(context.Context) error {
	d.w.called("datapath.Install")
	if d.w.failInstall {
		return errors.New("attach failed")
	}
	return nil
}
func (d fakeDatapath) Verify(vip netip.Addr, ports []datapath.Port) error {
	d.w.called(fmt.Sprintf("datapath.Verify %s %v", vip, ports))
	return d.w.verifyErr
}
func (d fakeDatapath) Close(context.Context) error { d.w.called("datapath.Close"); return nil }

// fakeTracer hands out the connects the test pushes.
type fakeTracer struct{ w *world }

func (t fakeTracer) Read(ctx context.Context, out func(connecttrace.Connect)) error {
	for {
		select {
		case c := <-t.w.connects:
			out(c)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
func (t fakeTracer) Lost() (uint64, error) { return t.w.tracerLost, t.w.lostErr }
func (t fakeTracer) ReturnsTraced() error  { return nil }
func (t fakeTracer) Close() error          { t.w.called("tracer.Close"); return nil }

func testCell() scenario.Cell {
	return scenario.Cell{
		Index: 0, ID: "k/dp/4.1/delete-pod", Datapath: "fake", NFS: "4.1", Fault: fault.DeletePod, Port: 2049,
		// The scenario's addresses: the fake cluster chooses others.
		VIP: "10.96.0.50", BackendA: "10.0.0.11", BackendB: "10.0.0.12",
		Timeouts: scenario.Timeouts{
			Recovery: scenario.Duration{Duration: 3 * time.Second},
			Probe:    scenario.Duration{Duration: 300 * time.Millisecond},
			Setup:    scenario.Duration{Duration: 2 * time.Second},
		},
	}
}

// runCell runs c in w and returns the timeline and the host's verdict on it.
func runCell(t *testing.T, w *world, c scenario.Cell) ([]event.Event, verdict.Decision) {
	t.Helper()
	return runCellGated(t, w, c, nil)
}

// runCellGated is runCell with a gate (cellRun.gate).
func runCellGated(t *testing.T, w *world, c scenario.Cell, gate func(context.Context, event.Step) error) ([]event.Event, verdict.Decision) {
	t.Helper()
	events, d, tainted := runCellTainted(t, w, c, gate)
	if tainted {
		t.Errorf("run reported a tainted VM")
	}
	return events, d
}

// runCellTainted is runCellGated that also returns whether the run reported the VM unfit for
// another cell.
func runCellTainted(t *testing.T, w *world, c scenario.Cell, gate func(context.Context, event.Step) error) ([]event.Event, verdict.Decision, bool) {
	t.Helper()
	var out bytes.Buffer
	em := newEmitter(&out, slog.New(slog.NewTextHandler(io.Discard, nil)))
	w.record = em.emit
	w.addresses()
	if w.probeOK == nil {
		w.probeOK = func(*world, int) bool { return true }
	}
	p := parts{
		cluster: fakeCluster{w}, node: fakeNode{w}, datapath: fakeDatapath{w},
		tracer: func(uint16) (ConnectTracer, error) { return fakeTracer{w}, nil },
	}
	r := newCellRun(c, em, slog.New(slog.NewTextHandler(io.Discard, nil)), p)
	r.gate = gate
	tainted := r.run(context.Background())
	events := em.events()
	// Everything the emitter sent is valid on the wire.
	for _, line := range bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n")) {
		if _, err := event.Decode(line); err != nil {
			t.Errorf("event on the wire: %v: %s", err, line)
		}
	}
	return events, hostDecision(c, events), tainted
}

// hostDecision is the verdict the host reaches on a cell's timeline (lab.Judge).
func hostDecision(c scenario.Cell, events []event.Event) verdict.Decision {
	if d, ok := LabFailure(events); ok {
		return d
	}
	return verdict.Decide(verdict.Collect(c.Port, events), true)
}

func stepsOf(events []event.Event) []event.Step {
	var s []event.Step
	for _, e := range events {
		if e.Kind == event.KindStep {
			s = append(s, e.Step)
		}
	}
	return s
}

// pushWhile feeds the tracer, every 50 ms until stop closes, the connects w's kernel makes.
func pushWhile(w *world, stop <-chan struct{}) {
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				for _, a := range w.tracerInputs(w) {
					w.connects <- connecttrace.Connect{Mono: int64(now()), Addr: a, Comm: "kworker/u4:1"}
				}
			}
		}
	}()
}

func TestCellRunner(t *testing.T) {
	tests := []struct {
		name      string
		world     world
		cell      func(*scenario.Cell)
		verdict   verdict.Verdict
		reason    string
		steps     []event.Step // must appear in this order (others may be between)
		calls     []string     // must appear in this order
		instrumnt string       // an instrument failure on the timeline
	}{
		{
			name:    "recovered",
			world:   world{},
			verdict: verdict.Recovered,
			steps: []event.Step{event.StepTopology, event.StepTracer, event.StepDatapath, event.StepBackendServing, event.StepServicePointed,
				event.StepMounted, event.StepBaselineIO, event.StepDatapathChecked, event.StepFaultInjected, event.StepBackendBReady, event.StepIORecovered, event.StepTeardown},
			calls: []string{"node.Prepare", "cluster.Setup", "datapath.Install", "cluster.StartBackend", "cluster.Publish([10.244.0.5])",
				"node.Mount 10.96.133.7", "datapath.Verify 10.96.133.7 [{nfs 2049 tcp}]", "kill nfs-0", "delete nfs-0", "cluster.Publish([])", "cluster.StartBackend",
				"cluster.Publish([10.244.0.9])", "node.Unmount", "tracer.Close", "datapath.Close", "cluster.Teardown"},
		},
		{
			name: "bug: SUNRPC asks for the old backend, called early",
			world: world{
				probeOK:      func(*world, int) bool { return false },
				tracerInputs: func(w *world) []netip.AddrPort { return []netip.AddrPort{w.podPort(0)} },
			},
			cell:    func(c *scenario.Cell) { c.Timeouts.Recovery.Duration = 30 * time.Second },
			verdict: verdict.BugReproduced,
			reason:  "the kernel client asked for the old backend 10.244.0.5: kprobe:kernel_connect was handed 10.244.0.5:2049",
			steps:   []event.Step{event.StepBackendBReady, event.StepIOStuck, event.StepTeardown},
			calls:   []string{"node.Unmount", "datapath.Close", "cluster.Teardown"},
		},
		{
			name: "fixed kernel, stale endpoint, slow replacement: recovered, not the bug",
			world: world{
				// SUNRPC always asks for the VIP; I/O comes back 1 s after B is pointed at.
				tracerInputs: func(w *world) []netip.AddrPort { return []netip.AddrPort{w.vipPort()} },
			},
			cell:    func(c *scenario.Cell) { c.StaleEndpoint.Duration = 600 * time.Millisecond },
			verdict: verdict.Recovered,
			steps:   []event.Step{event.StepFaultInjected, event.StepStaleEndpoint, event.StepBackendBReady, event.StepIOStuck, event.StepIORecovered},
		},
		{
			name:    "backend A never starts: failed, everything removed",
			world:   world{failStart: 1},
			verdict: verdict.Failed,
			reason:  "setup: backend-a-serving: image pull failed",
			calls:   []string{"datapath.Install", "cluster.StartBackend", "datapath.Close", "cluster.Teardown"},
		},
		{
			name:    "datapath install fails: still closed",
			world:   world{failInstall: true},
			verdict: verdict.Failed,
			reason:  "setup: datapath-installed: install fake: attach failed",
			calls:   []string{"datapath.Install", "datapath.Close", "cluster.Teardown"},
		},
		{
			name:    "backend B never starts: inconclusive",
			world:   world{failStart: 2},
			verdict: verdict.Inconclusive,
			reason:  "backend B never became ready",
			calls:   []string{"kill nfs-0", "cluster.StartBackend", "datapath.Close", "cluster.Teardown"},
		},
		{
			name: "stuck with a broken socket sampler: inconclusive, not failed",
			world: world{
				probeOK:   func(*world, int) bool { return false },
				socketErr: errors.New("read /proc/net/tcp: EIO"),
			},
			cell:      func(c *scenario.Cell) { c.Timeouts.Recovery.Duration = time.Second },
			verdict:   verdict.Inconclusive,
			reason:    "an instrument failed (sockets: read /proc/net/tcp: EIO",
			instrumnt: "sockets",
		},
	}
	for i := range tests {
		tt := &tests[i]
		t.Run(tt.name, func(t *testing.T) {
			w := &tt.world
			c := testCell()
			if tt.cell != nil {
				tt.cell(&c)
			}
			if tt.name == "fixed kernel, stale endpoint, slow replacement: recovered, not the bug" {
				var bAt time.Time
				w.probeOK = func(w *world, seq int) bool {
					if !w.isPointed(w.pods[1]) {
						return false
					}
					if bAt.IsZero() {
						bAt = time.Now()
					}
					return time.Since(bAt) > time.Second
				}
			}
			w.addresses()
			if w.tracerInputs != nil {
				stop := make(chan struct{})
				defer close(stop)
				pushWhile(w, stop)
			}
			start := time.Now()
			events, d := runCell(t, w, c)
			if d.Verdict != tt.verdict || !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("verdict %s (%s), want %s with %q", d.Verdict, d.Reason, tt.verdict, tt.reason)
			}
			if tt.verdict == verdict.BugReproduced && time.Since(start) > 10*time.Second {
				t.Errorf("the bug was not called early: the cell took %s", time.Since(start))
			}
			if !inOrder(stepsOf(events), tt.steps) {
				t.Errorf("steps %v, want in order %v", stepsOf(events), tt.steps)
			}
			if !inOrder(w.calls(), tt.calls) {
				t.Errorf("calls %q, want in order %q", w.calls(), tt.calls)
			}
			// The facts come from the cluster, not the scenario.
			ev := verdict.Collect(c.Port, events)
			published := slices.ContainsFunc(events, func(e event.Event) bool { return e.Service != nil })
			if published && (ev.VIP != "10.96.133.7" || ev.OldBackend != "10.244.0.5") {
				t.Errorf("facts VIP %q old %q, want the fake cluster's", ev.VIP, ev.OldBackend)
			}
			if tt.verdict == verdict.Recovered && ev.NewBackend != "10.244.0.9" {
				t.Errorf("new backend %q, want the fake cluster's 10.244.0.9", ev.NewBackend)
			}
			if tt.instrumnt != "" && !slices.ContainsFunc(events, func(e event.Event) bool { return e.Instr != nil && e.Instr.Name == tt.instrumnt }) {
				t.Errorf("no failure of instrument %s on the timeline", tt.instrumnt)
			}
			// Every path ends with the datapath and the cluster removed.
			calls := w.calls()
			if slices.Contains(calls, "datapath.Install") && !slices.Contains(calls, "datapath.Close") {
				t.Errorf("datapath installed but never closed: %q", calls)
			}
			if !slices.Contains(calls, "cluster.Teardown") {
				t.Errorf("cluster never torn down: %q", calls)
			}
		})
	}
}

// TestDatapathCheckedBeforeFault: right before the fault the cell asks its datapath whether it is
// the one in effect, serving the cell's service alone. When it is not, nothing is faulted, and
// the cell is the lab's failure: inconclusive for the agent and the host alike, never a verdict
// on the mount that an expectation could match.
func TestDatapathCheckedBeforeFault(t *testing.T) {
	w := &world{verifyErr: errors.New("a socket-level load balancer is in effect at /sys/fs/cgroup: CGroupInet4Connect nfslab_connect4")}
	events, d := runCell(t, w, testCell())
	if d.Verdict != verdict.Inconclusive || !strings.HasPrefix(d.Reason, "lab: datapath-checked: ") || !strings.Contains(d.Reason, "nfslab_connect4") {
		t.Errorf("host verdict %s (%s), want inconclusive, a lab failure naming what is in effect", d.Verdict, d.Reason)
	}
	var agent *event.VerdictRecord
	for _, e := range events {
		if e.Kind == event.KindCellDone {
			agent = e.Verdict
		}
	}
	if agent == nil || agent.Verdict != string(verdict.Inconclusive) || agent.Reason != d.Reason {
		t.Errorf("the agent's verdict %+v, want the host's: %s (%s)", agent, d.Verdict, d.Reason)
	}
	if !slices.ContainsFunc(events, func(e event.Event) bool { return e.Kind == event.KindError && e.Step == event.StepDatapathChecked }) {
		t.Errorf("no error at %s on the timeline", event.StepDatapathChecked)
	}
	if s := stepsOf(events); slices.Contains(s, event.StepFaultInjected) || slices.Contains(s, event.StepDatapathChecked) {
		t.Errorf("steps %v: the cell went on after its datapath check failed", s)
	}
	calls := w.calls()
	if slices.Contains(calls, "kill nfs-0") {
		t.Errorf("calls %q: backend A was faulted after the datapath check failed", calls)
	}
	if !inOrder(calls, []string{"node.Mount 10.96.133.7", "datapath.Verify 10.96.133.7 [{nfs 2049 tcp}]", "node.Unmount", "datapath.Close", "cluster.Teardown"}) {
		t.Errorf("calls %q: want the check with the cluster's VIP and ports, then everything removed", calls)
	}
}

// TestFailedTeardownTaintsTheVM: a cell whose teardown failed leaves the VM unfit for another
// cell, as one whose probe is stuck in the kernel does, and says so on its timeline; its verdict
// stays what the evidence says.
func TestFailedTeardownTaintsTheVM(t *testing.T) {
	w := &world{teardownErr: errors.New("delete namespace nfslab-c0: still terminating")}
	events, d, tainted := runCellTainted(t, w, testCell(), nil)
	if !tainted {
		t.Error("run did not report the VM unfit after a failed teardown")
	}
	s := stepsOf(events)
	if !slices.Contains(s, event.StepTeardownTainted) || slices.Contains(s, event.StepTeardown) {
		t.Errorf("steps %v: want %s and not %s", s, event.StepTeardownTainted, event.StepTeardown)
	}
	if !slices.ContainsFunc(events, func(e event.Event) bool {
		return e.Kind == event.KindError && e.Step == event.StepTeardown && strings.Contains(e.Msg, "still terminating")
	}) {
		t.Error("the teardown's error is not on the timeline")
	}
	if d.Verdict != verdict.Recovered {
		t.Errorf("verdict %s (%s), want recovered: the teardown does not change what the mount did", d.Verdict, d.Reason)
	}
}

// inOrder reports whether want is a subsequence of got.
func inOrder[T comparable](got, want []T) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// TestKindNodeLimitsAgree: the node count a scenario may ask for is the one the kind package
// creates.
func TestKindNodeLimitsAgree(t *testing.T) {
	if scenario.MaxKindNodes != kind.MaxNodes {
		t.Errorf("scenario allows %d kind nodes, the kind package creates at most %d", scenario.MaxKindNodes, kind.MaxNodes)
	}
}
