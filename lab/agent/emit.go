package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/nfslab/nfslab/lab/event"
)

// emitter writes events as JSON lines to the host and keeps the current cell's timeline, which
// the agent's own early verdict is computed from.
type emitter struct {
	mu       sync.Mutex
	enc      *json.Encoder
	log      *slog.Logger
	cell     int // current cell, -1 between cells
	phase    event.Phase
	timeline []event.Event
	err      error // first write error: the host is gone
	// While holding (a cell's snapshot point), events are kept in held instead of being sent:
	// nothing is half-way to the host when the VM's state is saved. heldFrom is the length
	// of the timeline then.
	holding  bool
	held     []event.Event
	heldFrom int
}

func newEmitter(w io.Writer, log *slog.Logger) *emitter {
	return &emitter{enc: json.NewEncoder(w), log: log, cell: -1}
}

// now reads CLOCK_MONOTONIC.
func now() event.Mono {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return event.Mono(ts.Nano())
}

// beginCell starts recording a new cell's timeline.
func (e *emitter) beginCell(i int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cell, e.phase, e.timeline = i, event.PhaseBefore, nil
}

// endCell stops attributing events to a cell.
func (e *emitter) endCell() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cell, e.phase = -1, ""
}

func (e *emitter) setPhase(p event.Phase) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.phase = p
}

// emit stamps ev with the time, the current cell and phase, records it, and sends it.
func (e *emitter) emit(ev event.Event) event.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ev.Mono == 0 {
		ev.Mono = now()
	}
	ev.Cell = e.cell
	if ev.Phase == "" {
		ev.Phase = e.phase
	}
	if e.cell >= 0 {
		e.timeline = append(e.timeline, ev)
	}
	e.log.Info(describe(ev))
	if e.holding {
		e.held = append(e.held, ev)
		return ev
	}
	e.send(ev)
	return ev
}

// send writes ev to the host; the caller holds mu.
func (e *emitter) send(ev event.Event) {
	if e.err == nil {
		if err := e.enc.Encode(ev); err != nil {
			e.err = fmt.Errorf("send event to host: %w", err)
		}
	}
}

// hold sends ev, outside any cell's timeline, as the last event before the host saves the
// VM's state, and keeps the events after it until release.
func (e *emitter) hold(ev event.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ev.Mono, ev.Cell = now(), e.cell
	e.log.Info(describe(ev))
	e.send(ev)
	e.holding, e.held, e.heldFrom = true, nil, len(e.timeline)
}

// release sends the events kept since hold, after the current cell's earlier events when
// replay says so, and sends as events come again.
func (e *emitter) release(replay bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if replay {
		for _, ev := range e.timeline[:e.heldFrom] {
			e.send(ev)
		}
	}
	for _, ev := range e.held {
		e.send(ev)
	}
	e.holding, e.held = false, nil
}

// emitRun sends ev as the run's, not the current cell's, and records nothing.
func (e *emitter) emitRun(ev event.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ev.Mono, ev.Cell = now(), -1
	e.log.Info(describe(ev))
	if e.holding {
		e.held = append(e.held, ev)
		return
	}
	e.send(ev)
}

// events returns a copy of the current cell's timeline.
func (e *emitter) events() []event.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]event.Event(nil), e.timeline...)
}

func (e *emitter) step(s event.Step, format string, args ...any) event.Event {
	return e.emit(event.Event{Kind: event.KindStep, Step: s, Msg: fmt.Sprintf(format, args...)})
}

// fail records that step s failed with err, with the errno err carries, if any (a mount(2)
// the kernel refused).
func (e *emitter) fail(s event.Step, err error) {
	ev := event.Event{Kind: event.KindError, Step: s, Msg: err.Error()}
	var errno unix.Errno
	if errors.As(err, &errno) && errno != 0 {
		ev.Errno = unix.ErrnoName(errno)
	}
	e.emit(ev)
}

// describe renders an event for the VM console (for people reading console.log; never parsed).
func describe(ev event.Event) string {
	b, _ := json.Marshal(ev)
	return string(b)
}
