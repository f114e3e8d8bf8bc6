package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nfslab/nfslab/lab/event"
)

// A guest kernel under TCG can wedge: once, while a kind node container started, the VM's RCU
// grace-period kthread was starved for good ("rcu_preempt kthread starved for N jiffies", every
// minute on the console) while the agent said nothing more, and the run would have waited out
// the cluster's 30-minute deadline. Another time (a Cilium cell, Cilium's agent compiling its
// datapath) the agent fell silent for 16 minutes with nothing on the console at all, where it
// reports every 30 s, and the VM's budget was hours. The stall watch reads the VM's console and
// the agent's silence and ends such a VM early, so that the group can boot a fresh one.

const (
	// stallLimit is how long the console may keep reporting kernel stalls, with no word from
	// the agent, before the VM counts as wedged. Stalls that pass (a busy moment under TCG)
	// are reported once or twice and the agent goes on.
	stallLimit = 5 * time.Minute
	// silenceLimit is how long the agent may say nothing at all before the VM counts as
	// wedged, whatever its console says. Its longest steps report at least every two minutes
	// (a kind cluster's creation: the node's state every 120 s; Cilium's waits and the warm-up
	// pod every 30 s; a cell's probes every few seconds, a stuck mount's included).
	silenceLimit = 15 * time.Minute
	// stallPoll is how often the console is read.
	stallPoll = 10 * time.Second
)

// wedgedError is the cause of a VM context ended by the stall watch: a kernel that kept
// reporting stalls, or (silent) an agent that said nothing for silenceLimit.
type wedgedError struct {
	since  time.Duration
	line   string
	silent bool
}

func (e *wedgedError) Error() string {
	if e.silent {
		return fmt.Sprintf("the VM stopped answering: its agent said nothing for %s (the console's last line: %q)", e.since.Round(time.Second), e.line)
	}
	return fmt.Sprintf("the VM's kernel stalled: its console reported stalls for %s with no word from the agent (last: %q)", e.since.Round(time.Second), e.line)
}

// stallTracker decides, from the console's text and the agent's events as they come, whether
// a VM is wedged. It is pure logic; watchStalls feeds it.
type stallTracker struct {
	mu    sync.Mutex
	first time.Time // the first stall line since the agent last spoke; zero when none
	line  string    // the last stall line
	spoke time.Time // when the agent last spoke (or the watch began)
	last  string    // the console's last line
}

// newStallTracker starts tracking at now, as if the agent had just spoken.
func newStallTracker(now time.Time) *stallTracker { return &stallTracker{spoke: now} }

// console takes new console text read at now.
func (t *stallTracker) console(now time.Time, text string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	// The console lines of a kernel that stopped scheduling work. Not the hung-task warning: a
	// task blocked on a hard NFS mount is what some cells are about.
	markers := []string{"rcu_preempt detected stalls", "kthread starved for", "soft lockup - CPU#"}
	for _, l := range strings.Split(text, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			t.last = l
		}
		for _, m := range markers {
			if strings.Contains(l, m) {
				if t.first.IsZero() {
					t.first = now
				}
				t.line = strings.TrimSpace(l)
			}
		}
	}
}

// guestProgress says whether an event from the agent shows the guest making progress: any but a
// kernel log line it relays. A kernel locked up in the very path a mount waits on reports
// its soft lockups to the log, and the agent, alive beside it, relays them for as long as
// the lockup lasts: those lines are the kernel's word, not the agent's.
func guestProgress(ev event.Event) bool { return ev.Kernel == nil }

// agentSpoke notes an event from the agent at now: the guest is making progress.
func (t *stallTracker) agentSpoke(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.first, t.spoke = time.Time{}, now
}

// wedged says whether the console has reported stalls for stalls or longer with no word from
// the agent since the first, or the agent has said nothing for silence.
func (t *stallTracker) wedged(now time.Time, stalls, silence time.Duration) (*wedgedError, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case !t.first.IsZero() && now.Sub(t.first) >= stalls:
		return &wedgedError{since: now.Sub(t.first), line: t.line}, true
	case !t.spoke.IsZero() && now.Sub(t.spoke) >= silence:
		return &wedgedError{since: now.Sub(t.spoke), line: t.last, silent: true}, true
	}
	return nil, false
}

// vmWatch is a VM's context that the stall watch ends early, with a *wedgedError as its cause,
// when the VM wedges.
type vmWatch struct {
	ctx    context.Context
	stalls *stallTracker // spoken to on each of the agent's events
	// stop ends the watch alone (a kept cluster's agent waits, silent); release ends ctx too.
	stop, release func()
}

// newVMWatch watches the VM whose console log is at console, under ctx.
func newVMWatch(ctx context.Context, console string) vmWatch {
	vctx, wedge := context.WithCancelCause(ctx)
	wctx, stop := context.WithCancel(vctx)
	t := newStallTracker(time.Now())
	go watchStalls(wctx, console, t, wedge)
	return vmWatch{ctx: vctx, stalls: t, stop: stop, release: func() { stop(); wedge(context.Canceled) }}
}

// watchStalls reads the console log at path as it grows until ctx ends, and calls wedge when t
// says the VM is wedged.
func watchStalls(ctx context.Context, path string, t *stallTracker, wedge func(error)) {
	tick := time.NewTicker(stallPoll)
	defer tick.Stop()
	var offset int64
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			text, next, err := readFrom(path, offset)
			if err != nil {
				continue // the console may not exist yet; a read error is retried
			}
			offset = next
			t.console(now, text)
			if w, ok := t.wedged(now, stallLimit, silenceLimit); ok {
				wedge(w)
				return
			}
		}
	}
}

// readFrom returns what the file at path holds from offset on (at most 1 MiB), and the offset
// after it.
func readFrom(path string, offset int64) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", offset, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return "", offset, err
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil && !errors.Is(err, io.EOF) {
		return "", offset, err
	}
	return string(b), offset + int64(len(b)), nil
}
