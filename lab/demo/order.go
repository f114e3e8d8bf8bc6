package demo

import (
	"slices"
	"time"

	"github.com/nfslab/nfslab/lab/event"
)

// Hold is how long the screen holds an event before showing it: long enough for the records
// of one moment to arrive, short enough to look live.
const Hold = 150 * time.Millisecond

// Orderer puts the events of one moment in the order they happened inside the VM before they
// are shown. The agent's instruments report through separate channels (the kernel_connect
// kprobe and the socket-LB hook each have their own ring buffer), so the hook's record of a
// connect can arrive before the kprobe's record of the call that ran the hook; every event
// carries the VM's monotonic time, and a burst is shown sorted by it.
type Orderer struct {
	held   []event.Event
	oldest time.Time // when the first held event arrived
}

// Add holds ev, which arrived at now.
func (o *Orderer) Add(ev event.Event, now time.Time) {
	if len(o.held) == 0 {
		o.oldest = now
	}
	o.held = append(o.held, ev)
}

// Wait is how long until the held events are due (0: now); false when none is held.
func (o *Orderer) Wait(now time.Time) (time.Duration, bool) {
	if len(o.held) == 0 {
		return 0, false
	}
	return max(0, Hold-now.Sub(o.oldest)), true
}

// Due returns the held events in the VM's order once the first of them has been held for
// Hold (or at once with force), and nil before.
func (o *Orderer) Due(now time.Time, force bool) []event.Event {
	if len(o.held) == 0 || (!force && now.Sub(o.oldest) < Hold) {
		return nil
	}
	out := o.held
	o.held = nil
	slices.SortStableFunc(out, func(a, b event.Event) int {
		switch {
		case a.Mono < b.Mono:
			return -1
		case a.Mono > b.Mono:
			return 1
		}
		return 0
	})
	return out
}
