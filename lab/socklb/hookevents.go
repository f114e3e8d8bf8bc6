package socklb

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/nfslab/nfslab/lab/internal/bpfring"
)

// HookEvent is one invocation of the connect4 or sendmsg4 program that
// concerned a VIP or Config.WatchPort: what the hook received and what it
// handed back to the kernel.
type HookEvent struct {
	// Mono is when the hook ran: CLOCK_MONOTONIC in nanoseconds
	// (bpf_ktime_get_ns), the clock of the agent's event timestamps.
	Mono int64
	// Hook is HookConnect4 or HookSendmsg4.
	Hook string
	// In is the destination the hook received. For the kernel's own
	// sockets this is the address the caller passed to kernel_connect():
	// on a vulnerable kernel, SUNRPC's own copy of the server address.
	In netip.AddrPort
	// Out is the destination after the hook: the backend for
	// ActionRewrite, In for ActionPassThrough and ActionNonVIP, and the
	// zero AddrPort for ActionRefuse.
	Out netip.AddrPort
	// Action is one of ActionRewrite, ActionRefuse, ActionPassThrough and
	// ActionNonVIP.
	Action string
	// KernelSocket is true when no process created the socket with
	// socket(2) while the programs were attached: the kernel's own sockets
	// (SUNRPC's transport, the CIFS client's), which are created without
	// running the cgroup sock_create hook. A socket a process opened before
	// Attach is reported as a kernel socket too; the lab attaches before it
	// starts anything that connects to the watched port.
	KernelSocket bool
	// PID is the process ID (thread group ID) of the task that was running
	// when the hook ran, and Comm its name: a kworker for SUNRPC's
	// reconnects, the process itself for a connect(2). The kernel may send
	// on its own socket from a process's context (SUNRPC over UDP sends
	// from the task that waits for the call), so PID and Comm name the
	// task, not the socket's owner.
	PID  uint32
	Comm string
}

// The values of HookEvent.Action.
const (
	// ActionRewrite: the destination was a VIP and was rewritten to its
	// backend.
	ActionRewrite = "rewrite"
	// ActionRefuse: the destination was a VIP without a backend whose
	// Service has Refuse set; the call failed with EPERM.
	ActionRefuse = "refuse"
	// ActionPassThrough: the destination was a VIP without a backend and
	// went through unchanged.
	ActionPassThrough = "pass-through"
	// ActionNonVIP: the destination was not a VIP but its port is
	// Config.WatchPort (the instrument behind Stats.NonVIP).
	ActionNonVIP = "non-vip"
)

// The values of HookEvent.Hook.
const (
	HookConnect4 = "connect4" // cgroup/connect4: connect() of TCP and UDP sockets
	HookSendmsg4 = "sendmsg4" // cgroup/sendmsg4: sendmsg() of unconnected UDP sockets
)

// ReadHookEvents calls out for each hook event, in the order the hooks ran,
// until ctx ends or the LB is closed. When ctx ends, the events already in
// the ring buffer are delivered first and ctx.Err() is returned; when Close
// stops it, it returns nil. The ring buffer holds about 6500 events; events
// that find it full are dropped and counted in Stats.LostHookEvents. Call it
// from one goroutine at a time; out runs on the calling goroutine.
func (lb *LB) ReadHookEvents(ctx context.Context, out func(HookEvent)) error {
	lb.mu.Lock()
	closed, rd := lb.closed, lb.events
	lb.mu.Unlock()
	if closed {
		return fmt.Errorf("read socket-LB hook events: %w", ErrClosed)
	}
	return bpfring.Read(ctx, rd, "read socket-LB hook events", decodeHookRecord, out)
}
