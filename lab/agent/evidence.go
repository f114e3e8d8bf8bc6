package agent

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nfslab/nfslab/lab/datapath"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/nfs"
	"github.com/nfslab/nfslab/lab/observe/connecttrace"
	"github.com/nfslab/nfslab/lab/socklb"
)

// The cell's instruments: the connect tracers, the samplers of the node's sockets and of the
// socket-LB's counters, and the mount's /proc/mounts line. An instrument that fails, loses
// records or cannot see the client's connects says so on the timeline (event.InstrumentObs), so
// no verdict rests on its silence.

// ConnectTracer streams the addresses handed to a kernel connect function, and its calls that
// failed (connecttrace.Tracer).
type ConnectTracer interface {
	Read(ctx context.Context, out func(connecttrace.Connect)) error
	Lost() (uint64, error)
	// ReturnsTraced is why the failed calls are not traced, nil when they are.
	ReturnsTraced() error
	Close() error
}

// Instrument names on the timeline.
const (
	instrKprobe     = "kprobe:" + connecttrace.DefaultFunction
	instrKretprobe  = "kretprobe:" + connecttrace.DefaultFunction
	instrHookEvents = "socket-lb:hook-events"
	instrHookStats  = "socket-lb:counters"
	instrSockets    = "sockets"
	instrMounts     = "proc-mounts"
	instrConntrack  = "conntrack-flush"
	// instrConnects are the connect records themselves: past maxConnectEvents a cell keeps
	// counting them but no longer puts them on the timeline.
	instrConnects = "connect-records"
)

// instrument records an instrument's failure once, when it starts failing.
func (r *cellRun) instrument(name string, err error) {
	r.instrMu.Lock()
	was := r.failing[name]
	r.failing[name] = err != nil
	r.instrMu.Unlock()
	if err != nil && !was {
		r.em.emit(event.Event{Kind: event.KindObserve, Instr: &event.InstrumentObs{Name: name, Error: err.Error()}})
	}
}

// lost records that an instrument dropped records, when its count grew; why says how, when the
// count alone does not.
func (r *cellRun) lost(name string, n uint64, why string) {
	r.instrMu.Lock()
	grew := n > r.lastLost[name]
	if grew {
		r.lastLost[name] = n
	}
	r.instrMu.Unlock()
	if grew {
		r.em.emit(event.Event{Kind: event.KindObserve, Instr: &event.InstrumentObs{Name: name, Error: why, Lost: n}})
	}
}

// countLosses records the records every tracer dropped so far: the kprobe's and the hook's full
// ring buffers, and the connect records past the cell's cap. A count that cannot be read is a
// failure of its instrument.
func (r *cellRun) countLosses() {
	if r.tracer != nil {
		n, err := r.tracer.Lost()
		if err != nil {
			err = fmt.Errorf("read the lost-record count: %w", err)
		}
		r.instrument(instrKprobe, err)
		if err == nil {
			r.lost(instrKprobe, n, "")
		}
	}
	if n := r.traced.Load() - maxConnectEvents; n > 0 {
		r.lost(instrConnects, uint64(n), fmt.Sprintf("past the cap of %d connect records per cell", maxConnectEvents))
	}
}

// sightGrace is how long checkSight gives the kprobe's reader to deliver the mount's records.
const sightGrace = time.Second

// checkSight records that the kprobe cannot see the client's connects: it was attached, yet
// handed none of the connects that set up the mount. A CIFS client without "smb: use
// kernel_connect() and kernel_bind()" calls the socket's connect itself, and SUNRPC over UDP
// sends to its server without connecting: the kprobe's silence about their reconnects means
// nothing.
func (r *cellRun) checkSight() {
	if r.tracer == nil {
		return
	}
	// The reader may not have taken the mount's records from the ring buffer yet.
	for deadline := time.Now().Add(sightGrace); r.kprobeSeen.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if r.kprobeSeen.Load() > 0 {
		return
	}
	r.em.emit(event.Event{Kind: event.KindObserve, Instr: &event.InstrumentObs{Name: instrKprobe,
		Error: fmt.Sprintf("blind: handed none of the connects that set up the mount to port %d: the client's connects do not go through %s()", r.cell.Port, connecttrace.DefaultFunction)}})
}

// startTracing attaches the kernel_connect tracer. A kernel without kprobes still runs the cell
// (the socket-LB hook and the sockets remain), but the tracer's absence is on the timeline.
func (r *cellRun) startTracing() string {
	ctx, cancel := context.WithCancel(context.Background())
	r.stopTrace = cancel
	tr, err := r.parts.tracer(uint16(r.cell.Port))
	if err != nil {
		r.instrument(instrKprobe, fmt.Errorf("unavailable: %w", err))
		return fmt.Sprintf("kernel_connect tracer unavailable (%v); reconnect targets come from sockets and the socket-LB hook", err)
	}
	r.tracer = tr
	r.traceWG.Add(1)
	go func() {
		defer r.traceWG.Done()
		err := tr.Read(ctx, func(x connecttrace.Connect) {
			if x.Returned {
				r.emitFailed(event.Mono(x.Mono), &event.ConnectFailed{Source: instrKretprobe, Input: x.Addr.String(), Errno: unix.ErrnoName(x.Errno), Comm: x.Comm})
				return
			}
			r.kprobeSeen.Add(1)
			// kernel_connect() has in-kernel callers only: connect(2) does not go through it.
			r.emitConnect(event.Mono(x.Mono), &event.ConnectObs{Source: instrKprobe, Input: x.Addr.String(), Kernel: true, Comm: x.Comm})
		})
		if err != nil && ctx.Err() == nil {
			r.instrument(instrKprobe, err)
		}
	}()
	what := fmt.Sprintf("tracing the addresses handed to %s for port %d", connecttrace.DefaultFunction, r.cell.Port)
	if err := tr.ReturnsTraced(); err != nil {
		return what + fmt.Sprintf(" (not its failed calls: %v)", err)
	}
	return what + " and its calls that fail"
}

// traceHook streams the socket-LB hook's connect events, when the datapath has them.
func (r *cellRun) traceHook() {
	hs, ok := r.datapath.(datapath.HookEventSource)
	if !ok || r.stopTrace == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	prev := r.stopTrace
	r.stopTrace = func() { prev(); cancel() }
	r.traceWG.Add(1)
	go func() {
		defer r.traceWG.Done()
		err := hs.ReadHookEvents(ctx, func(h socklb.HookEvent) {
			out := ""
			if h.Out.IsValid() {
				out = h.Out.String()
			}
			r.emitConnect(event.Mono(h.Mono), &event.ConnectObs{Source: "socket-lb:" + h.Hook, Input: h.In.String(), Output: out, Action: h.Action,
				Kernel: h.KernelSocket, PID: h.PID, Comm: h.Comm})
		})
		if err != nil && ctx.Err() == nil {
			r.instrument(instrHookEvents, err)
		}
	}()
}

func (r *cellRun) emitConnect(at event.Mono, obs *event.ConnectObs) {
	if r.traced.Add(1) > maxConnectEvents {
		return
	}
	r.em.emit(event.Event{Mono: at, Kind: event.KindObserve, Connect: obs})
}

// emitFailed puts a failed kernel connect call on the timeline, within the connect records'
// bound.
func (r *cellRun) emitFailed(at event.Mono, obs *event.ConnectFailed) {
	if r.traced.Add(1) > maxConnectEvents {
		return
	}
	r.em.emit(event.Event{Mono: at, Kind: event.KindObserve, Failed: obs})
}

// stopTracing stops the readers, records the records they lost and detaches the tracer.
func (r *cellRun) stopTracing() {
	if r.stopTrace != nil {
		r.stopTrace()
	}
	r.traceWG.Wait()
	r.countLosses()
	if r.tracer != nil {
		_ = r.tracer.Close()
		r.tracer = nil
	}
}

// sample records the kernel's sockets to the NFS port and the hook counters when they changed,
// and any records the tracers lost. A sockets record carries the time its read began, not the
// time it was emitted: a socket new in it was created after the previous read began (SinceNS).
func (r *cellRun) sample() {
	at := now()
	socks, err := r.node.KernelSockets(uint16(r.cell.Port))
	r.instrument(instrSockets, err)
	if err == nil {
		if !reflect.DeepEqual(socks, r.lastSockets) {
			r.lastSockets = socks
			r.em.emit(event.Event{Mono: at, Kind: event.KindObserve, Sockets: &event.SocketsObs{Sockets: socks, SinceNS: r.lastSample}})
		}
		r.lastSample = at
	}
	if in, ok := r.datapath.(datapath.Instrumented); ok && r.installed {
		h, err := in.HookStats()
		r.instrument(instrHookStats, err)
		if err == nil {
			r.lost(instrHookEvents, h.LostEvents, "")
			if r.lastHook == nil || *r.lastHook != h {
				r.lastHook = &h
				r.em.emit(event.Event{Kind: event.KindObserve, Hook: &h})
			}
		}
	}
	r.countLosses()
}

// refused is the socket-LB hook's count of refused connects (0 for other datapaths).
func (r *cellRun) refused() uint64 {
	if in, ok := r.datapath.(datapath.Instrumented); ok {
		if h, err := in.HookStats(); err == nil {
			return h.Refused
		}
	}
	return 0
}

// observeMount records the mount's /proc/mounts line (its addr= is recorded, never decided on).
func (r *cellRun) observeMount() {
	m, err := r.node.MountEntry()
	r.instrument(instrMounts, err)
	if err != nil {
		return
	}
	r.em.emit(event.Event{Kind: event.KindObserve, Mount: &event.MountObs{Source: m.Source, FSType: m.FSType, Addr: nfs.AddrOf(m), Options: m.Options}})
}
