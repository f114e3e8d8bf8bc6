package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/nfslab/nfslab/lab/event"
)

// nfslab demo, inside the VM: the job's one cell runs as in nfslab run, but it waits for the
// presenter before the fault, before backend B and before the teardown, and the presenter has a
// shell on the node meanwhile. The presenter says "go on" with nfslab-next in the shell or
// NextKey on the host's keyboard (a Control from the host), and leaves by leaving the shell.

// ShellPortName is the virtio-serial port of the presenter's shell: a terminal's bytes, both
// ways.
const ShellPortName = "nfslab.shell"

// The keys the host's terminal relay keeps for itself: the presenter's "go on", and leaving
// the shell even while a command in it hangs on the mount.
const (
	NextKey      = 0x1d // Ctrl-]
	NextKeyName  = "Ctrl-]"
	LeaveKey     = 0x1c // Ctrl-\
	LeaveKeyName = "Ctrl-\\"
)

// Demo is a demo job's terminal: its type and size.
type Demo struct {
	Term string `json:"term,omitempty"` // $TERM of the presenter's terminal
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
}

// Control is a message from the host during a demo: one JSON line on the agent's port.
type Control struct {
	Next  bool `json:"next,omitempty"`  // the presenter pressed NextKey
	Leave bool `json:"leave,omitempty"` // the presenter pressed LeaveKey: end the shell
	// Rows and Cols, when both are set, are the terminal's new size.
	Rows uint16 `json:"rows,omitempty"`
	Cols uint16 `json:"cols,omitempty"`
}

// errHostGone ends a demo whose host closed the agent's port.
var errHostGone = errors.New("the host closed the connection")

// serveDemo runs a demo job: its one cell, held at the presenter's word, with the presenter's
// shell. controls is the rest of the host's lines after the job.
func serveDemo(ctx context.Context, log *slog.Logger, em *emitter, job Job, controls *bufio.Scanner) error {
	if len(job.Cells) != 1 {
		err := fmt.Errorf("a demo job runs one cell, got %d", len(job.Cells))
		em.emit(event.Event{Kind: event.KindError, Msg: err.Error()})
		em.emit(event.Event{Kind: event.KindBye, Msg: "cannot run the demo: " + err.Error()})
		return err
	}
	c := job.Cells[0]
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	port, err := openPort(ctx, ShellPortName)
	if err != nil {
		em.emit(event.Event{Kind: event.KindError, Msg: err.Error()})
		em.emit(event.Event{Kind: event.KindBye, Msg: "cannot run the demo: " + err.Error()})
		return err
	}
	defer port.Close()
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the agent binary: %w", err)
	}
	shell := newDemoShell(port, c, *job.Demo, self, log)
	gate := newDemoGate(demoSteps(c), shell.exited)
	go func() {
		<-shell.exited
		cancel(errPresenterLeft)
	}()
	go func() {
		readControls(controls, gate, shell, log)
		cancel(errHostGone)
	}()
	stopNext, err := serveNext(ctx, gate, log)
	if err != nil {
		log.Warn("nfslab-next will not work", "err", err)
	} else {
		defer stopNext()
	}

	p, err := netnsParts(c, em)
	if err != nil {
		em.beginCell(c.Index)
		em.fail(event.StepTopology, err)
		em.emit(event.Event{Kind: event.KindCellDone, Verdict: &event.VerdictRecord{Verdict: "failed", Reason: "setup: " + err.Error()}})
		em.endCell()
		em.emit(event.Event{Kind: event.KindBye, Msg: "demo done"})
		return em.err
	}
	r := newCellRun(c, em, log.With("cell", c.ID), p)
	r.gate = func(ctx context.Context, s event.Step) error {
		// The shell opens when the lab first waits for the presenter: set up, or failed.
		if err := shell.start(); err != nil {
			if s == event.StepTeardown { // after the cell's end: said nowhere else
				em.fail(s, err)
			}
			return err
		}
		err := gate.wait(ctx, s)
		if s == event.StepTeardown {
			shell.stop() // nothing of the presenter's may hold the mount
		}
		return err
	}
	r.run(ctx)
	em.emit(event.Event{Kind: event.KindBye, Msg: "demo done"})
	return em.err
}

// readControls applies the host's control lines until the host closes the port.
func readControls(sc *bufio.Scanner, gate *demoGate, shell *demoShell, log *slog.Logger) {
	for sc.Scan() {
		var ctl Control
		if err := json.Unmarshal(sc.Bytes(), &ctl); err != nil {
			log.Warn("bad control line from the host", "err", err)
			continue
		}
		if ctl.Next {
			log.Info("presenter: " + gate.request())
		}
		if ctl.Leave {
			log.Info("presenter: leave the shell")
			go shell.stop()
		}
		if ctl.Rows > 0 && ctl.Cols > 0 {
			shell.resize(ctl.Rows, ctl.Cols)
		}
	}
}
