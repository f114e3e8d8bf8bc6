package lab

import (
	"strings"
	"testing"

	"github.com/nfslab/nfslab/lab/event"
)

// TestUnfitAfter: the host's decision that the next cell of a kernel group needs a fresh VM,
// from the timeline of the cell that ran before it.
func TestUnfitAfter(t *testing.T) {
	step := func(s event.Step, msg string) event.Event {
		return event.Event{Kind: event.KindStep, Step: s, Msg: msg}
	}
	fail := func(s event.Step, msg string) event.Event {
		return event.Event{Kind: event.KindError, Step: s, Msg: msg}
	}
	done := event.Event{Kind: event.KindCellDone, Verdict: &event.VerdictRecord{Verdict: "recovered"}}
	tests := []struct {
		name   string
		events []event.Event
		unfit  bool
		why    string // the reason must say this
	}{
		{name: "clean teardown", events: []event.Event{step(event.StepIORecovered, ""), done, step(event.StepTeardown, "cell resources removed")}},
		{name: "a setup failure, clean teardown", events: []event.Event{fail(event.StepMounted, "mount: timed out"), done, step(event.StepTeardown, "cell resources removed")}},
		{name: "teardown not ended yet", events: []event.Event{done, fail(event.StepTeardown, "remove datapath: detach socket-LB link: EBUSY")}},
		{
			name:   "teardown failed",
			events: []event.Event{done, fail(event.StepTeardown, "remove datapath: detach socket-LB link: EBUSY"), step(event.StepTeardownTainted, "the teardown failed; the VM runs no other cell")},
			unfit:  true, why: "its teardown failed: remove datapath: detach socket-LB link: EBUSY",
		},
		{
			name:   "teardown failed, ended as before (an agent that still says done)",
			events: []event.Event{done, fail(event.StepTeardown, "delete namespace nfslab-c0: still terminating"), step(event.StepTeardown, "cell resources removed")},
			unfit:  true, why: "still terminating",
		},
		{
			name:   "I/O stuck in the kernel",
			events: []event.Event{step(event.StepIOStuck, ""), done, step(event.StepTeardownTainted, "probe 7 is still blocked in the kernel after a forced unmount; the VM runs no other cell")},
			unfit:  true, why: "probe 7 is still blocked",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			why, unfit := unfitAfter(tt.events)
			if unfit != tt.unfit || !strings.Contains(why, tt.why) {
				t.Errorf("unfitAfter = %q, %v; want %v saying %q", why, unfit, tt.unfit, tt.why)
			}
		})
	}
}
