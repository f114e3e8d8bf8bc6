package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nfslab/nfslab/lab/datapath"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/fault"
	"github.com/nfslab/nfslab/lab/nfs"
	"github.com/nfslab/nfslab/lab/observe"
	"github.com/nfslab/nfslab/lab/observe/connecttrace"
	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/lab/socklb"
	"github.com/nfslab/nfslab/lab/topology"
	"github.com/nfslab/nfslab/lab/verdict"
)

// serviceCIDR is routed to the service dummy device, as on a kube-proxy node.
var serviceCIDR = netip.MustParsePrefix("10.96.0.0/12")

// sampleEvery is how often sockets and hook counters are sampled while waiting for recovery; it
// bounds the early verdict's latency.
const sampleEvery = 200 * time.Millisecond

// probeRetryEvery is the pause between probes that failed fast.
const probeRetryEvery = 500 * time.Millisecond

// cellRun is one cell being run: the resources it created, so teardown removes exactly those.
type cellRun struct {
	cell scenario.Cell
	em   *emitter
	log  *slog.Logger

	node     topology.Node
	dp       datapath.Datapath
	ports    []datapath.Port // the service's ports for the cell's NFS version
	rpcbind  *nfs.Process    // NFSv3 only: the node's rpcbind the backends register with
	pods     []*topology.Pod
	backends []*backend
	mountDir string
	export   string
	probe    *probeRun // the last probe started; still running when stuck

	lastSockets []event.Socket
	lastHook    *event.HookObs

	// Tracers of connect attempts: the kernel_connect kprobe and the socket-LB hook's events.
	tracer    *connecttrace.Tracer
	stopTrace context.CancelFunc
	traceWG   sync.WaitGroup
	traced    atomic.Int64 // connect records emitted; past maxConnectEvents they are counted only
}

// maxConnectEvents caps the connect records a cell puts on its timeline: a reconnect loop can
// produce hundreds a second, and the first ones are the evidence.
const maxConnectEvents = 300

// backend is a pod running nfs-ganesha.
type backend struct {
	pod     *topology.Pod
	ganesha *nfs.Process
}

// Kill stops the backend's server (the pod's containers die).
func (b *backend) Kill(ctx context.Context) error {
	if b.ganesha == nil {
		return nil
	}
	err := b.ganesha.Kill(ctx)
	b.ganesha = nil
	return err
}

// Delete removes the pod: its network namespace and address are gone.
func (b *backend) Delete(context.Context) error { return b.pod.Delete() }

// Settle waits until no TCP connection is left open in the pod (the killed server's connections
// have been closed by the kernel and the client has answered), polling every 20 ms.
func (b *backend) Settle(ctx context.Context) error {
	for {
		n, err := b.pod.OpenConnections(observe.CountOpen)
		if err == nil && n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// run runs the cell end to end and tears it down. It reports whether the teardown left a process
// stuck in the kernel (the VM is then unfit for more cells).
func (r *cellRun) run(ctx context.Context) (tainted bool) {
	r.em.beginCell(r.cell.Index)
	defer r.em.endCell()

	decision := r.execute(ctx)
	r.em.emit(event.Event{Kind: event.KindCellDone, Verdict: &event.VerdictRecord{Verdict: string(decision.Verdict), Reason: decision.Reason}})
	return r.teardown()
}

func (r *cellRun) facts() verdict.Facts {
	return verdict.Facts{VIP: r.cell.VIP, OldBackend: r.cell.BackendA, NewBackend: r.cell.BackendB, Port: r.cell.Port}
}

func (r *cellRun) decide(final bool) verdict.Decision {
	return verdict.Decide(verdict.Collect(r.facts(), r.em.events()), final)
}

// execute runs the cell's steps; any failure is recorded as an error event and ends the cell.
func (r *cellRun) execute(ctx context.Context) verdict.Decision {
	c := r.cell
	setup := c.Timeouts.Setup.Duration
	vip := netip.AddrPortFrom(netip.MustParseAddr(c.VIP), uint16(c.Port))
	addrA, addrB := netip.MustParseAddr(c.BackendA), netip.MustParseAddr(c.BackendB)
	nodePrefix := netip.MustParsePrefix(c.NodeCIDR)
	ports, err := nfs.ServicePorts(c.NFS, uint16(c.Port))
	if err != nil {
		r.em.fail(event.StepTopology, err)
		return r.decide(true)
	}
	for _, p := range ports {
		r.ports = append(r.ports, datapath.Port(p))
	}

	steps := []struct {
		step event.Step
		do   func(context.Context) (string, error)
	}{
		{event.StepTopology, func(context.Context) (string, error) {
			flushConntrack()
			r.node = topology.Node{Bridge: fmt.Sprintf("nfslab%d", c.Index), Addr: nodePrefix, ServiceDev: fmt.Sprintf("svc%d", c.Index), ServiceCIDR: serviceCIDR}
			if err := r.node.Setup(); err != nil {
				return "", err
			}
			if err := r.makeExport(); err != nil {
				return "", err
			}
			return fmt.Sprintf("node %s on %s, service CIDR %s, export %s", nodePrefix, r.node.Bridge, serviceCIDR, r.export), nil
		}},
		{event.StepTracer, func(context.Context) (string, error) {
			return r.startTracing(), nil
		}},
		{event.StepDatapath, func(ctx context.Context) (string, error) {
			dp, err := datapath.New(c.Datapath, datapath.Config{
				CgroupRoot: CgroupRoot, WatchPort: uint16(c.Port),
				RefuseWithoutBackend: c.SocketLBNoBackend == scenario.NoBackendRefuse,
			})
			if err != nil {
				return "", err
			}
			if err := dp.Install(ctx); err != nil {
				return "", fmt.Errorf("install %s: %w", c.Datapath, err)
			}
			r.dp = dp
			r.traceHook()
			if d, ok := dp.(datapath.Describer); ok {
				if what, err := d.Describe(); err == nil {
					return c.Datapath + " installed; " + what, nil
				}
			}
			return c.Datapath + " installed", nil
		}},
		{event.StepBackendServing, func(ctx context.Context) (string, error) {
			if protos, _, err := nfs.ServerProtocols(c.NFS); err != nil {
				return "", err
			} else if protos != "4" {
				// NFSv3 backends register with rpcbind, or ganesha exits.
				if r.rpcbind, err = nfs.StartRPCBind(ctx); err != nil {
					return "", fmt.Errorf("start rpcbind: %w", err)
				}
			}
			if _, err := r.startBackend(ctx, "a", addrA); err != nil {
				return "", err
			}
			return fmt.Sprintf("nfs-ganesha serving on %s:%d", addrA, c.Port), nil
		}},
		{event.StepServicePointed, func(ctx context.Context) (string, error) {
			if err := r.dp.SetService(ctx, vip.Addr(), r.ports, addrA); err != nil {
				return "", fmt.Errorf("point %s at %s: %w", vip.Addr(), addrA, err)
			}
			return fmt.Sprintf("%s -> %s (%s)", vip.Addr(), addrA, portList(r.ports)), nil
		}},
		{event.StepMounted, func(ctx context.Context) (string, error) {
			return r.mount(ctx, vip.Addr(), nodePrefix.Addr())
		}},
		{event.StepBaselineIO, func(ctx context.Context) (string, error) {
			p := startProbe(r.mountDir, 0, true)
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
		}},
	}
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

	// The fault, and the replacement backend.
	r.em.setPhase(event.PhaseAfter)
	fctx, cancel := context.WithTimeout(ctx, setup)
	err = fault.Inject(fctx, c.Fault, r.backends[0])
	cancel()
	if err != nil {
		r.em.fail(event.StepFaultInjected, err)
		return r.decide(true)
	}
	r.em.step(event.StepFaultInjected, "%s: pod a (%s) is gone", c.Fault, addrA)
	// With the pod gone its endpoint leaves the EndpointSlice: the service has no backend.
	if err := r.dp.SetService(ctx, vip.Addr(), r.ports, netip.Addr{}); err != nil {
		r.em.fail(event.StepFaultInjected, fmt.Errorf("remove endpoint %s: %w", addrA, err))
		return r.decide(true)
	}

	// With a no-endpoint window, I/O is in flight while the service has no endpoint, as an
	// application's would be, and the kernel keeps trying to reconnect.
	var inflight *probeRun
	if w := c.NoEndpointWindow.Duration; w > 0 {
		inflight = startProbe(r.mountDir, 1, false)
		r.probe = inflight
		if err := r.noEndpointWindow(ctx, w); err != nil {
			r.em.fail(event.StepNoEndpoints, err)
			return r.decide(true)
		}
	}

	bctx, cancel := context.WithTimeout(ctx, setup)
	_, err = r.startBackend(bctx, "b", addrB)
	if err == nil {
		err = r.dp.SetService(bctx, vip.Addr(), r.ports, addrB)
	}
	cancel()
	if err != nil {
		r.em.fail(event.StepBackendBReady, err)
		return r.decide(true)
	}
	bReady := r.em.step(event.StepBackendBReady, "nfs-ganesha serving on %s:%d and %s -> %s (%s)", addrB, c.Port, vip.Addr(), addrB, portList(r.ports)).Mono

	d := r.awaitRecovery(ctx, bReady, inflight)
	r.observeMount()
	r.sample()
	return d
}

// noEndpointWindow keeps the service without endpoints for w, sampling evidence, and records
// how hard the kernel tried to reconnect meanwhile.
func (r *cellRun) noEndpointWindow(ctx context.Context, w time.Duration) error {
	opens0, err := observe.TCPActiveOpens()
	if err != nil {
		return fmt.Errorf("read TCP counters: %w", err)
	}
	refused0 := r.refused()
	logs0 := r.kernelLogLines()
	start := now()
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	end := time.NewTimer(w)
	defer end.Stop()
wait:
	for {
		select {
		case <-tick.C:
			r.sample()
		case <-end.C:
			break wait
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	opens1, err := observe.TCPActiveOpens()
	if err != nil {
		return fmt.Errorf("read TCP counters: %w", err)
	}
	refused := r.refused() - refused0
	obs := &event.WindowObs{
		Seconds:         now().Sub(start).Seconds(),
		ConnectAttempts: opens1 - opens0 + refused,
		Refused:         refused,
		KernelLogLines:  r.kernelLogLines() - logs0,
	}
	r.em.emit(event.Event{Kind: event.KindObserve, Window: obs})
	r.em.step(event.StepNoEndpoints, "%.1f s without endpoints: %d connect attempts (%.1f/s, %d refused by socket-LB), %d kernel log lines",
		obs.Seconds, obs.ConnectAttempts, float64(obs.ConnectAttempts)/obs.Seconds, obs.Refused, obs.KernelLogLines)
	return nil
}

// refused is the socket-LB hook's count of refused connects (0 for other datapaths).
func (r *cellRun) refused() uint64 {
	if in, ok := r.dp.(datapath.Instrumented); ok {
		if h, err := in.HookStats(); err == nil {
			return h.Refused
		}
	}
	return 0
}

// kernelLogLines counts the NFS/SUNRPC kernel log lines of the cell so far.
func (r *cellRun) kernelLogLines() int {
	n := 0
	for _, e := range r.em.events() {
		if e.Kernel != nil {
			n++
		}
	}
	return n
}

// awaitRecovery probes I/O until it succeeds, the early verdict is final, or the deadline passes.
// inflight is a probe already running since the fault, if any.
func (r *cellRun) awaitRecovery(ctx context.Context, bReady event.Mono, inflight *probeRun) verdict.Decision {
	c := r.cell
	deadline := time.NewTimer(c.Timeouts.Recovery.Duration)
	defer deadline.Stop()
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()

	seq := 1
	p := inflight
	if p == nil {
		p = startProbe(r.mountDir, seq, false)
		r.probe = p
	}
	stuckSaid := false
	var retry <-chan time.Time
	for {
		var done <-chan error
		if p != nil {
			done = p.done
		}
		select {
		case err := <-done:
			r.emitProbe(p, err, false)
			if err == nil {
				r.em.step(event.StepIORecovered, "I/O recovered %.2f s after backend b was ready", p.finish.Sub(bReady).Seconds())
				return r.decide(true)
			}
			p = nil
			retry = time.After(probeRetryEvery)
		case <-retry:
			retry = nil
			seq++
			p = startProbe(r.mountDir, seq, false)
			r.probe = p
		case <-tick.C:
			r.sample()
			// A probe counts as stuck once it has run for the probe deadline after backend B
			// was ready (an in-flight probe started earlier, during the no-endpoint window).
			if p != nil && !stuckSaid && now().Sub(max(p.start, bReady)) > c.Timeouts.Probe.Duration {
				stuckSaid = true
				r.emitProbe(p, nil, true)
				r.em.step(event.StepIOStuck, "probe %d has not finished after %s", p.seq, c.Timeouts.Probe.Duration)
			}
			if d := r.decide(false); d.Final {
				return d
			}
		case <-deadline.C:
			r.em.step(event.StepDeadline, "no recovery %s after backend b was ready", c.Timeouts.Recovery.Duration)
			return r.decide(true)
		case <-ctx.Done():
			r.em.fail(event.StepDeadline, ctx.Err())
			return r.decide(true)
		}
	}
}

func (r *cellRun) emitProbe(p *probeRun, err error, stuck bool) {
	obs := &event.ProbeObs{Seq: p.seq, OK: err == nil && !stuck, Stuck: stuck, StartNS: p.start}
	if stuck {
		obs.Seconds = now().Sub(p.start).Seconds()
	} else {
		obs.FinishNS = p.finish
		obs.Seconds = p.finish.Sub(p.start).Seconds()
	}
	if err != nil {
		obs.Error = err.Error()
	}
	r.em.emit(event.Event{Kind: event.KindObserve, Probe: obs})
}

// sample records the kernel's sockets to the NFS port and the hook counters when they changed.
func (r *cellRun) sample() {
	// Only the kernel's own sockets are evidence: the agent's readiness checks connect to the
	// backends too.
	held, herr := observe.HeldSocketInodes()
	if obs, err := observe.ReadTCPSockets(uint16(r.cell.Port)); err == nil && herr == nil {
		observe.MarkKernelSockets(obs.Sockets, held)
		kernel := slices.DeleteFunc(obs.Sockets, func(s event.Socket) bool { return !s.Kernel })
		if !reflect.DeepEqual(kernel, r.lastSockets) {
			r.lastSockets = kernel
			r.em.emit(event.Event{Kind: event.KindObserve, Sockets: &event.SocketsObs{Sockets: kernel}})
		}
	}
	if in, ok := r.dp.(datapath.Instrumented); ok {
		if h, err := in.HookStats(); err == nil && (r.lastHook == nil || *r.lastHook != h) {
			r.lastHook = &h
			r.em.emit(event.Event{Kind: event.KindObserve, Hook: &h})
		}
	}
}

func (r *cellRun) observeMount() {
	f, err := os.Open("/proc/mounts")
	if err != nil {
		r.em.fail("", fmt.Errorf("read /proc/mounts: %w", err))
		return
	}
	defer f.Close()
	entries, err := nfs.ParseMounts(f)
	if err != nil {
		r.em.fail("", fmt.Errorf("parse /proc/mounts: %w", err))
		return
	}
	m, ok := nfs.FindMount(entries, r.mountDir)
	if !ok {
		r.em.fail("", fmt.Errorf("%s is not in /proc/mounts", r.mountDir))
		return
	}
	r.em.emit(event.Event{Kind: event.KindObserve, Mount: &event.MountObs{Source: m.Source, FSType: m.FSType, Addr: nfs.AddrOf(m), Options: m.Options}})
}

// makeExport creates the tmpfs both backends export, like a volume a replaced pod reattaches.
func (r *cellRun) makeExport() error {
	r.export = fmt.Sprintf("/srv/nfslab/c%d/export", r.cell.Index)
	if err := os.MkdirAll(r.export, 0o755); err != nil {
		return fmt.Errorf("mkdir %s: %w", r.export, err)
	}
	if err := unix.Mount("tmpfs", r.export, "tmpfs", 0, "mode=0777,size=64m"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", r.export, err)
	}
	return nil
}

// startBackend creates pod <name> at addr and starts nfs-ganesha in it, returning when it listens.
func (r *cellRun) startBackend(ctx context.Context, name string, addr netip.Addr) (*backend, error) {
	c := r.cell
	podName := fmt.Sprintf("c%d-pod-%s", c.Index, name)
	pod, err := r.node.AddPod(podName, fmt.Sprintf("c%d%s", c.Index, name), addr)
	if err != nil {
		return nil, err
	}
	r.pods = append(r.pods, pod)
	b := &backend{pod: pod}
	r.backends = append(r.backends, b)

	dir := filepath.Join("/run/nfslab", podName)
	if err := os.MkdirAll(filepath.Join(dir, "recovery"), 0o755); err != nil {
		return nil, fmt.Errorf("mkdir %s: %w", dir, err)
	}
	protos, udp, err := nfs.ServerProtocols(c.NFS)
	if err != nil {
		return nil, err
	}
	conf, err := nfs.RenderGaneshaConfig(nfs.GaneshaParams{
		Protocols:    protos,
		EnableUDP:    udp,
		BindAddr:     addr,
		Port:         c.Port,
		ExportPath:   r.export,
		PseudoPath:   "/export",
		RecoveryRoot: filepath.Join(dir, "recovery"),
		LeaseSeconds: 10,
		LogPath:      filepath.Join(dir, "ganesha.log"),
	})
	if err != nil {
		return nil, fmt.Errorf("ganesha config for pod %s: %w", name, err)
	}
	confPath := filepath.Join(dir, "ganesha.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", confPath, err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the agent binary: %w", err)
	}
	proc, err := nfs.StartGanesha(ctx, pod.Name, []string{self, PodExecCommand}, confPath, filepath.Join(dir, "ganesha.log"), filepath.Join(dir, "ganesha.pid"))
	if err != nil {
		return nil, fmt.Errorf("start nfs-ganesha in pod %s: %w", name, err)
	}
	b.ganesha = proc
	if err := waitListening(ctx, proc, uint16(c.Port)); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "ganesha.log"))
		return nil, fmt.Errorf("nfs-ganesha in pod %s never listened on %s:%d: %w (log: %s)", name, addr, c.Port, err, tail(log, 600))
	}
	return b, nil
}

func (r *cellRun) mount(ctx context.Context, vip, client netip.Addr) (string, error) {
	c := r.cell
	r.mountDir = fmt.Sprintf("/mnt/nfslab/c%d", c.Index)
	extra := c.MountOptions
	if c.Port != 2049 {
		extra = append(slices.Clone(extra), fmt.Sprintf("port=%d", c.Port))
	}
	fstype, data, err := nfs.MountOptions(c.NFS, vip, client, extra)
	if err != nil {
		return "", err
	}
	source := nfs.MountSource(vip, "/export")
	if err := nfs.Mount(ctx, source, r.mountDir, fstype, data); err != nil {
		return "", nfs.ExplainMountError(c.NFS, err)
	}
	return fmt.Sprintf("%s on %s type %s (%s)", source, r.mountDir, fstype, data), nil
}

// teardown removes everything the cell created, in reverse order. It reports whether a probe is
// still stuck in the kernel after the mount was forced away.
func (r *cellRun) teardown() (tainted bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var errs []error
	// Unmount while the backend still serves, so a healthy mount goes away at once and a stuck
	// one is forced.
	if r.mountDir != "" {
		if err := nfs.Unmount(ctx, r.mountDir); err != nil {
			errs = append(errs, err)
		}
	}
	if r.probe != nil {
		select {
		case <-r.probe.exited:
		case <-time.After(3 * time.Second):
			_ = r.probe.kill()
			select {
			case <-r.probe.exited:
			case <-time.After(2 * time.Second):
				tainted = true
			}
		}
	}
	for _, b := range r.backends {
		if err := b.Kill(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if r.rpcbind != nil {
		if err := r.rpcbind.Kill(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop rpcbind: %w", err))
		}
	}
	if n := r.stopTracing(); n > maxConnectEvents {
		r.em.emit(event.Event{Kind: event.KindStep, Step: event.StepTracer, Msg: fmt.Sprintf("%d connect records in all; the first %d are on the timeline", n, maxConnectEvents)})
	}
	if r.dp != nil {
		if err := r.dp.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("remove datapath: %w", err))
		}
	}
	for _, p := range r.pods {
		if err := p.Delete(); err != nil {
			errs = append(errs, err)
		}
	}
	flushConntrack()
	if r.export != "" {
		if err := unix.Unmount(r.export, unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", r.export, err))
		}
	}
	if err := r.node.Teardown(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		r.em.fail(event.StepTeardown, err)
	}
	if tainted {
		r.em.step(event.StepTeardownTainted, "probe %d is still blocked in the kernel after a forced unmount", r.probe.seq)
		return true
	}
	r.em.step(event.StepTeardown, "cell resources removed")
	return false
}

// waitListening waits until the backend's server listens on port in its pod. It looks at the
// pod's sockets rather than connecting, so the check leaves no trace in the evidence.
func waitListening(ctx context.Context, proc *nfs.Process, port uint16) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := observe.Listening(proc.Pid(), port)
		if ok {
			return nil
		}
		select {
		case <-proc.Done():
			return fmt.Errorf("the server exited: %v", proc.ExitErr())
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("%w (last check: %v)", ctx.Err(), err)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// startTracing attaches the kernel_connect tracer. A kernel without kprobes still runs the cell:
// the tracer is evidence, not a step the verdict needs.
func (r *cellRun) startTracing() string {
	ctx, cancel := context.WithCancel(context.Background())
	r.stopTrace = cancel
	tr, err := connecttrace.Start(connecttrace.Config{WatchPort: uint16(r.cell.Port)})
	if err != nil {
		return fmt.Sprintf("kernel_connect tracer unavailable (%v); reconnect targets come from sockets and the socket-LB hook", err)
	}
	r.tracer = tr
	r.traceWG.Add(1)
	go func() {
		defer r.traceWG.Done()
		_ = tr.Read(ctx, func(x connecttrace.Connect) {
			r.emitConnect(event.Mono(x.Mono), &event.ConnectObs{Source: "kprobe:kernel_connect", Input: x.Addr.String(), Comm: x.Comm})
		})
	}()
	return fmt.Sprintf("tracing the addresses handed to %s for port %d", connecttrace.DefaultFunction, r.cell.Port)
}

// traceHook streams the socket-LB hook's connect events, when the datapath has them.
func (r *cellRun) traceHook() {
	hs, ok := r.dp.(datapath.HookEventSource)
	if !ok || r.stopTrace == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	prev := r.stopTrace
	r.stopTrace = func() { prev(); cancel() }
	r.traceWG.Add(1)
	go func() {
		defer r.traceWG.Done()
		_ = hs.ReadHookEvents(ctx, func(h socklb.HookEvent) {
			out := ""
			if h.Out.IsValid() {
				out = h.Out.String()
			}
			r.emitConnect(event.Mono(h.Mono), &event.ConnectObs{Source: "socket-lb:" + h.Hook, Input: h.In.String(), Output: out, Action: h.Action})
		})
	}()
}

func (r *cellRun) emitConnect(at event.Mono, obs *event.ConnectObs) {
	if r.traced.Add(1) > maxConnectEvents {
		return
	}
	r.em.emit(event.Event{Mono: at, Kind: event.KindObserve, Connect: obs})
}

// stopTracing stops the readers, detaches the tracer and returns how many records came.
func (r *cellRun) stopTracing() int64 {
	if r.stopTrace != nil {
		r.stopTrace()
	}
	r.traceWG.Wait()
	if r.tracer != nil {
		_ = r.tracer.Close()
		r.tracer = nil
	}
	return r.traced.Load()
}

// portList renders the service's ports for progress lines: "2049/tcp, 20048/tcp".
func portList(ports []datapath.Port) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = fmt.Sprintf("%d/%s", p.Port, p.Protocol)
	}
	return strings.Join(s, ", ")
}

// flushConntrack empties the node's connection tracking table. Every cell reuses the same VIP,
// pod IPs and (SUNRPC binds reserved ports) often the same client port, so a conntrack entry
// left by an earlier cell could NAT the next cell's connection to a dead pod: each cell starts
// from a clean node. Without conntrack loaded there is nothing to flush.
func flushConntrack() {
	_ = netlink.ConntrackTableFlush(netlink.ConntrackTable)
}

func setLoopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	return nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
