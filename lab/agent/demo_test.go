package agent

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/verdict"
)

// The demo's gate alone, then the cell runner held by it, against the fakes of cell_test.go.

func TestDemoGate(t *testing.T) {
	type op struct {
		request bool       // the presenter's "go on" (else: the cell waits at step)
		step    event.Step // the step the cell waits at
		leave   bool       // the presenter leaves the shell first
		cancel  bool       // the context ends first
		want    string     // request: a substring of the answer; wait: "pass", "block" or an error
	}
	tests := []struct {
		name string
		ops  []op
	}{
		{"a step waits for its go-on", []op{
			{step: event.StepFaultInjected, want: "block"},
			{request: true, want: "next (1 of 2): kill backend A (fault delete-pod)"},
			{step: event.StepFaultInjected, want: "pass"},
			{step: event.StepBackendBReady, want: "block"},
			{request: true, want: "next (2 of 2): bring backend B up"},
			{step: event.StepBackendBReady, want: "pass"},
			{request: true, want: "nothing left to step"},
		}},
		{"go-ons given early are kept, one per step", []op{
			{request: true, want: "1 of 2"},
			{request: true, want: "2 of 2"},
			{request: true, want: "nothing left"},
			{step: event.StepFaultInjected, want: "pass"},
			{step: event.StepBackendBReady, want: "pass"},
		}},
		{"steps the presenter does not take pass", []op{
			{step: event.StepMounted, want: "pass"},
			{step: event.StepStaleEndpoint, want: "pass"},
		}},
		{"the teardown waits until the presenter leaves", []op{
			{request: true, want: "1 of 2"},
			{request: true, want: "2 of 2"},
			{step: event.StepTeardown, want: "block"},
			{step: event.StepTeardown, leave: true, want: "pass"},
		}},
		{"leaving ends a waiting step", []op{
			{step: event.StepFaultInjected, leave: true, want: errPresenterLeft.Error()},
		}},
		{"a cancelled context ends a waiting step with its cause", []op{
			{step: event.StepBackendBReady, cancel: true, want: "host gone"},
			{step: event.StepTeardown, cancel: true, want: "pass"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			left := make(chan struct{})
			g := newDemoGate(demoSteps(testCell()), left)
			for i, o := range tt.ops {
				if o.request {
					if got := g.request(); !strings.Contains(got, o.want) {
						t.Fatalf("op %d: request answered %q, want %q in it", i, got, o.want)
					}
					continue
				}
				ctx, cancel := context.WithCancelCause(context.Background())
				if o.cancel {
					cancel(errors.New("host gone"))
				}
				if o.leave {
					close(left)
				}
				done := make(chan error, 1)
				go func() { done <- g.wait(ctx, o.step) }()
				select {
				case err := <-done:
					got := "pass"
					if err != nil {
						got = err.Error()
					}
					if got != o.want {
						t.Errorf("op %d: wait(%s) = %s, want %s", i, o.step, got, o.want)
					}
				case <-time.After(100 * time.Millisecond):
					if o.want != "block" {
						t.Errorf("op %d: wait(%s) blocked, want %s", i, o.step, o.want)
					}
					cancel(nil)
					<-done
				}
				cancel(nil)
			}
		})
	}
}

// waitFor polls until cond holds, or fails the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCellHeldByDemoGate(t *testing.T) {
	w := &world{}
	left := make(chan struct{})
	g := newDemoGate(demoSteps(testCell()), left)
	type result struct {
		events []event.Event
		d      verdict.Decision
	}
	done := make(chan result, 1)
	go func() {
		ev, d := runCellGated(t, w, testCell(), g.wait)
		done <- result{ev, d}
	}()
	called := func(what string) func() bool {
		return func() bool { return slices.Contains(w.calls(), what) }
	}
	// Set up, mounted, and held before the fault.
	waitFor(t, 5*time.Second, "mounted", called("node.Mount 10.96.133.7"))
	time.Sleep(300 * time.Millisecond)
	if c := w.calls(); slices.Contains(c, "kill nfs-0") {
		t.Fatalf("backend A was killed before the presenter said so: %q", c)
	}
	g.request()
	waitFor(t, 5*time.Second, "backend A killed", called("cluster.Publish([])"))
	time.Sleep(300 * time.Millisecond)
	if n := countOf(w.calls(), "cluster.StartBackend"); n != 1 {
		t.Fatalf("backend B started before the presenter said so (%d starts): %q", n, w.calls())
	}
	g.request()
	waitFor(t, 5*time.Second, "backend B pointed at", called("cluster.Publish([10.244.0.9])"))
	// The verdict is in, and the lab stays up until the presenter leaves.
	time.Sleep(500 * time.Millisecond)
	if c := w.calls(); slices.Contains(c, "node.Unmount") {
		t.Fatalf("torn down while the presenter was still in the shell: %q", c)
	}
	close(left)
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the cell did not end after the presenter left")
	}
	if r.d.Verdict != verdict.Recovered {
		t.Errorf("verdict %s (%s), want recovered", r.d.Verdict, r.d.Reason)
	}
	want := []event.Step{event.StepBaselineIO, event.StepFaultInjected, event.StepBackendBReady, event.StepIORecovered, event.StepTeardown}
	if !inOrder(stepsOf(r.events), want) {
		t.Errorf("steps %v, want in order %v", stepsOf(r.events), want)
	}
	if !inOrder(w.calls(), []string{"kill nfs-0", "cluster.StartBackend", "node.Unmount", "datapath.Close", "cluster.Teardown"}) {
		t.Errorf("calls %q", w.calls())
	}
}

func TestDemoPresenterLeavesBeforeTheFault(t *testing.T) {
	w := &world{}
	left := make(chan struct{})
	g := newDemoGate(demoSteps(testCell()), left)
	go func() {
		for !slices.Contains(w.calls(), "node.Mount 10.96.133.7") {
			time.Sleep(10 * time.Millisecond)
		}
		close(left)
	}()
	events, d := runCellGated(t, w, testCell(), g.wait)
	if slices.Contains(w.calls(), "kill nfs-0") {
		t.Errorf("backend A was killed: %q", w.calls())
	}
	if !slices.ContainsFunc(events, func(e event.Event) bool {
		return e.Kind == event.KindError && e.Step == event.StepFaultInjected && e.Msg == errPresenterLeft.Error()
	}) {
		t.Errorf("no error saying the presenter left on the timeline")
	}
	if d.Verdict == verdict.Recovered || d.Verdict == verdict.BugReproduced {
		t.Errorf("verdict %s without a fault", d.Verdict)
	}
	if !inOrder(w.calls(), []string{"node.Unmount", "datapath.Close", "cluster.Teardown"}) {
		t.Errorf("not torn down: %q", w.calls())
	}
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

func TestBashrc(t *testing.T) {
	c := testCell()
	rc := bashrc(c)
	for _, want := range []string{". /etc/bash.bashrc", c.ID, "/mnt/nfslab/c0", "mount | grep nfs", nextCommand, NextKeyName, LeaveKeyName, "exit"} {
		if !strings.Contains(rc, want) {
			t.Errorf("bashrc lacks %q:\n%s", want, rc)
		}
	}
}

func TestAnswerTo(t *testing.T) {
	g := newDemoGate(demoSteps(testCell()), make(chan struct{}))
	if got := answerTo("next", g); !strings.Contains(got, "kill backend A") {
		t.Errorf("answer to next: %q", got)
	}
	if got := answerTo("skip", g); !strings.Contains(got, "unknown request") {
		t.Errorf("answer to skip: %q", got)
	}
	if got := answerTo("next", g); !strings.Contains(got, "backend B") {
		t.Errorf("second answer to next: %q", got)
	}
}
