package agent

import (
	"context"
	"fmt"
	"reflect"

	"github.com/nfslab/nfslab/lab/datapath"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/nfs"
	"github.com/nfslab/nfslab/lab/observe/connecttrace"
	"github.com/nfslab/nfslab/lab/socklb"
)

// The cell's instruments: the connect tracers, the samplers of the node's sockets and of the
// socket-LB's counters, and the mount's /proc/mounts line. An instrument that fails or loses
// records says so on the timeline (event.InstrumentObs), so no verdict rests on its silence.

// ConnectTracer streams the addresses handed to a kernel connect function (connecttrace.Tracer).
type ConnectTracer interface {
	Read(ctx context.Context, out func(connecttrace.Connect)) error
	Lost() (uint64, error)
	Close() error
}

// Instrument names on the timeline.
const (
	instrKprobe     = "kprobe:" + connecttrace.DefaultFunction
	instrHookEvents = "socket-lb:hook-events"
	instrHookStats  = "socket-lb:counters"
	instrSockets    = "sockets"
	instrMounts     = "proc-mounts"
	instrConntrack  = "conntrack-flush"
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

// lost records that an instrument dropped records, when its count grew.
func (r *cellRun) lost(name string, n uint64) {
	r.instrMu.Lock()
	grew := n > r.lastLost[name]
	if grew {
		r.lastLost[name] = n
	}
	r.instrMu.Unlock()
	if grew {
		r.em.emit(event.Event{Kind: event.KindObserve, Instr: &event.InstrumentObs{Name: name, Lost: n}})
	}
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
			r.emitConnect(event.Mono(x.Mono), &event.ConnectObs{Source: instrKprobe, Input: x.Addr.String(), Comm: x.Comm})
		})
		if err != nil && ctx.Err() == nil {
			r.instrument(instrKprobe, err)
		}
	}()
	return fmt.Sprintf("tracing the addresses handed to %s for port %d", connecttrace.DefaultFunction, r.cell.Port)
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
			r.emitConnect(event.Mono(h.Mono), &event.ConnectObs{Source: "socket-lb:" + h.Hook, Input: h.In.String(), Output: out, Action: h.Action})
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

// stopTracing stops the readers, detaches the tracer and returns how many records came.
func (r *cellRun) stopTracing() int64 {
	if r.stopTrace != nil {
		r.stopTrace()
	}
	r.traceWG.Wait()
	if r.tracer != nil {
		if n, err := r.tracer.Lost(); err == nil {
			r.lost(instrKprobe, n)
		}
		_ = r.tracer.Close()
		r.tracer = nil
	}
	return r.traced.Load()
}

// sample records the kernel's sockets to the NFS port and the hook counters when they changed,
// and any records the tracers lost.
func (r *cellRun) sample() {
	at := now()
	socks, err := r.node.KernelSockets(uint16(r.cell.Port))
	r.instrument(instrSockets, err)
	if err == nil {
		if !reflect.DeepEqual(socks, r.lastSockets) {
			r.lastSockets = socks
			r.em.emit(event.Event{Kind: event.KindObserve, Sockets: &event.SocketsObs{Sockets: socks, SinceNS: r.lastSample}})
		}
		r.lastSample = at
	}
	if in, ok := r.datapath.(datapath.Instrumented); ok && r.installed {
		h, err := in.HookStats()
		r.instrument(instrHookStats, err)
		if err == nil {
			r.lost(instrHookEvents, h.LostEvents)
			if r.lastHook == nil || *r.lastHook != h {
				r.lastHook = &h
				r.em.emit(event.Event{Kind: event.KindObserve, Hook: &h})
			}
		}
	}
	if r.tracer != nil {
		n, err := r.tracer.Lost()
		if err == nil {
			r.lost(instrKprobe, n)
		}
	}
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
