package lab

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nfslab/nfslab/lab/event"
)

// progress prints one line per step for people watching a run, with the time since the run began.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w, start: time.Now()}
}

func (p *progress) say(format string, args ...any) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "[%6.1fs] %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
}

// event prints the events people care about while a cell runs: steps, errors, stuck probes,
// and the cell's end. Observations go to the report, not the terminal.
func (p *progress) event(cell string, ev event.Event) {
	switch ev.Kind {
	case event.KindStep:
		p.say("  %s: %s: %s", cell, ev.Step, ev.Msg)
	case event.KindError:
		if cell == "" {
			p.say("  agent error: %s", ev.Msg)
		} else {
			p.say("  %s: FAILED %s: %s", cell, ev.Step, ev.Msg)
		}
	case event.KindCellDone:
		if ev.Verdict != nil {
			p.say("  %s: verdict %s (%s)", cell, ev.Verdict.Verdict, ev.Verdict.Reason)
		}
	case event.KindBye:
		p.say("vm: agent done: %s", ev.Msg)
	case event.KindObserve:
		if ev.Kernel != nil {
			p.say("  %s: kernel: %s", cell, ev.Kernel.Line)
		}
	}
}
