package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/scenario"
)

// errPresenterLeft ends a demo cell whose presenter left the shell before its last step.
var errPresenterLeft = errors.New("the presenter left the shell")

// gateStep is a step a demo cell takes only on the presenter's word.
type gateStep struct {
	step event.Step
	what string // what the step does, in the presenter's words
}

// demoSteps are the steps of c the presenter takes, in the order the cell reaches them.
func demoSteps(c scenario.Cell) []gateStep {
	return []gateStep{
		{event.StepFaultInjected, fmt.Sprintf("kill backend A (fault %s)", c.Fault)},
		{event.StepBackendBReady, "bring backend B up and point the service at it"},
	}
}

// demoGate holds a demo cell before each of its steps until the presenter says "go on"
// (request), and before its teardown until the presenter leaves the shell (left closes). A
// "go on" given before the cell reaches its step is kept for it.
type demoGate struct {
	steps []gateStep
	next  chan struct{} // one token per "go on", at most one per step
	left  <-chan struct{}

	mu    sync.Mutex
	asked int // "go on"s given so far
}

func newDemoGate(steps []gateStep, left <-chan struct{}) *demoGate {
	return &demoGate{steps: steps, next: make(chan struct{}, len(steps)), left: left}
}

// request is the presenter's "go on": it releases the next step and says which.
func (g *demoGate) request() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.asked == len(g.steps) {
		return "nothing left to step (both steps are taken); leave the shell (exit or Ctrl-D) to tear the lab down"
	}
	s := g.steps[g.asked]
	g.asked++
	g.next <- struct{}{} // never blocks: the channel holds a token per step
	return fmt.Sprintf("next (%d of %d): %s", g.asked, len(g.steps), s.what)
}

// wait is the cell runner's gate (cellRun.gate): it returns when the cell may take step s.
func (g *demoGate) wait(ctx context.Context, s event.Step) error {
	if s == event.StepTeardown {
		select {
		case <-g.left:
		case <-ctx.Done():
		}
		return nil
	}
	gated := false
	for _, st := range g.steps {
		gated = gated || st.step == s
	}
	if !gated {
		return nil
	}
	select {
	case <-g.next:
		return nil
	case <-g.left:
		return errPresenterLeft
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
