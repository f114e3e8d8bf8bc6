// Package connecttrace records the addresses the kernel hands to a connect
// function: by default kernel_connect(), which SUNRPC calls as
// kernel_connect(sock, xs_addr(xprt), …) every time an NFS mount
// (re)connects to its server: the instrument that tells whether SUNRPC itself
// asked for the old backend.
//
// On a kernel without 0bdf399342c5 ("net: Avoid address overwrite in
// kernel_connect") the socket-LB connect4 hook rewrites SUNRPC's own copy of
// the server address, so after the first connect the mount's reconnects are
// handed the first backend's address instead of the VIP; on a fixed kernel
// every reconnect is handed the VIP. This package shows which of the two
// happens, independently of the socket-LB's own instruments.
//
// A kprobe program (written with github.com/cilium/ebpf/asm: no clang, no
// BTF) reads the function's second argument, a struct sockaddr *, keeps
// AF_INET addresses whose port is Config.WatchPort, and sends them with the
// time and the current task's comm to user space through a BPF ring buffer.
// A return probe adds a record for each such call that failed, with its
// error: EPERM when a BPF connect hook refused the address (Cilium's
// socket-LB does so for a service without a backend), which SUNRPC turns
// into ECONNREFUSED without a word in the kernel log.
// It needs Linux 6.1 or newer built with CONFIG_KPROBES, CONFIG_KPROBE_EVENTS,
// CONFIG_BPF_EVENTS and CONFIG_PERF_EVENTS (the BPF interpreter is enough),
// on x86-64.
package connecttrace

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/nfslab/nfslab/lab/internal/bpfring"
)

// DefaultFunction is the function traced when Config.Function is empty.
const DefaultFunction = "kernel_connect"

// Config says what to trace.
type Config struct {
	// Function is the kernel function to probe. Its second argument must
	// be a struct sockaddr * (kernel_connect, inet_stream_connect, …).
	// Empty means DefaultFunction.
	Function string
	// WatchPort keeps only addresses with this port (the NFS port, 2049).
	// Zero keeps every AF_INET address.
	WatchPort uint16
}

// Connect is one call of the traced function with an AF_INET address: its
// entry, or its failed return.
type Connect struct {
	// Mono is when the function was entered: CLOCK_MONOTONIC in
	// nanoseconds (bpf_ktime_get_ns), the clock of the agent's events.
	Mono int64
	// Addr is the address the caller handed to the function.
	Addr netip.AddrPort
	// Comm is the calling task's name, e.g. "kworker/u4:2" for SUNRPC's
	// reconnect worker.
	Comm string
	// Returned marks the record of the call's return, when it failed: Mono
	// is then when it returned, and Errno why (EPERM: a BPF connect hook
	// refused the address, as Cilium's does for a service without a
	// backend). A call that succeeds or is under way (EINPROGRESS) has its
	// entry record only.
	Returned bool
	Errno    syscall.Errno
}

// Tracer is an attached connect tracer. Its methods are safe for concurrent
// use, but Read must be called from one goroutine at a time. Close must be
// called on every exit path.
type Tracer struct {
	mu    sync.Mutex
	coll  *ebpf.Collection
	links []link.Link     // the kprobe, then the return probe
	rd    *ringbuf.Reader // its own locking
	// noReturns is why the return probe could not be attached: the entries
	// are traced all the same (ReturnsTraced).
	noReturns error
	closed    bool
}

// ErrClosed is returned (wrapped) by methods called after Close.
var ErrClosed = errors.New("connect tracer is closed")

// Start loads the program and its maps, attaches it as a kprobe to
// cfg.Function and opens the ring buffer. Records are buffered in the kernel
// (about 6500 of them) until Read takes them.
func Start(cfg Config) (*Tracer, error) {
	if cfg.Function == "" {
		cfg.Function = DefaultFunction
	}
	spec, err := collectionSpec()
	if err != nil {
		return nil, fmt.Errorf("connect tracer for %s: %w", cfg.Function, err)
	}
	coll, err := ebpf.NewCollection(spec)
	var noReturns error
	if err != nil {
		// The entries are the instrument; the return probe only adds to it.
		noReturns = fmt.Errorf("load the return probe: %w", err)
		delete(spec.Programs, progRetName)
		if coll, err = ebpf.NewCollection(spec); err != nil {
			return nil, fmt.Errorf("load connect tracer for %s: %w", cfg.Function, err)
		}
	}
	if err := coll.Maps[mapCfg].Update(uint32(0), encodeConfig(cfg), ebpf.UpdateAny); err != nil {
		coll.Close()
		return nil, fmt.Errorf("set connect tracer watch port %d: %w", cfg.WatchPort, err)
	}
	rd, err := ringbuf.NewReader(coll.Maps[mapRing])
	if err != nil {
		coll.Close()
		return nil, fmt.Errorf("open connect tracer ring buffer: %w", err)
	}
	l, err := link.Kprobe(cfg.Function, coll.Programs[progName], nil)
	if err != nil {
		_ = rd.Close()
		coll.Close()
		return nil, fmt.Errorf("attach connect tracer kprobe to %s: %w", cfg.Function, err)
	}
	t := &Tracer{coll: coll, links: []link.Link{l}, rd: rd, noReturns: noReturns}
	if ret := coll.Programs[progRetName]; ret != nil {
		if rl, err := link.Kretprobe(cfg.Function, ret, nil); err != nil {
			t.noReturns = fmt.Errorf("attach connect tracer return probe to %s: %w", cfg.Function, err)
		} else {
			t.links = append(t.links, rl)
		}
	}
	return t, nil
}

// ReturnsTraced returns nil when the tracer records the function's failed
// returns, else why it does not (its entries are traced either way).
func (t *Tracer) ReturnsTraced() error { return t.noReturns }

// Read calls out for each record, in the order the function was called,
// until ctx ends or the tracer is closed. When ctx ends, the records already
// in the ring buffer are delivered first and ctx.Err() is returned; when
// Close stops it, it returns nil. out runs on the calling goroutine.
func (t *Tracer) Read(ctx context.Context, out func(Connect)) error {
	t.mu.Lock()
	closed, rd := t.closed, t.rd
	t.mu.Unlock()
	if closed {
		return fmt.Errorf("read connect trace: %w", ErrClosed)
	}
	return bpfring.Read(ctx, rd, "read connect trace", decodeRecord, out)
}

// Lost returns how many records were dropped because the ring buffer was
// full.
func (t *Tracer) Lost() (uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return 0, fmt.Errorf("read connect tracer lost count: %w", ErrClosed)
	}
	var n uint64
	if err := t.coll.Maps[mapLost].Lookup(uint32(0), &n); err != nil {
		return 0, fmt.Errorf("read connect tracer lost count: %w", err)
	}
	return n, nil
}

// Close detaches the probe, stops Read and closes the ring buffer, maps and
// program. It is safe to call more than once; later calls return nil.
func (t *Tracer) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	var errs []error
	for _, l := range t.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach connect tracer: %w", err))
		}
	}
	if err := t.rd.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close connect tracer ring buffer: %w", err))
	}
	t.coll.Close()
	return errors.Join(errs...)
}
