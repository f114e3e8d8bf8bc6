package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nfslab/nfslab/lab/agent"
	"github.com/nfslab/nfslab/lab/cluster/vm"
	"github.com/nfslab/nfslab/lab/demo"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/kernel"
	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/lab/tty"
	"github.com/nfslab/nfslab/reports"
)

// DemoOptions configure nfslab demo.
type DemoOptions struct {
	// Options as for Run; Scenario must hold exactly one cell (Scenario.SelectCell). Progress
	// is unused: everything goes to Out.
	Options
	In   *os.File // the presenter's keyboard
	Out  *os.File // the presenter's screen
	Term string   // the presenter's $TERM, for the shell in the VM
}

// Demo brings the one cell of opts.Scenario up in a VM and hands the presenter a shell on its
// node. The cell stops before the fault and again before backend B until the presenter says
// "go on" (nfslab-next in the shell, or agent.NextKey), then probes and is judged as in Run,
// while its events stream to the screen in plain words. When the presenter leaves the shell
// (or presses agent.LeaveKey) the cell is torn down, the VM powers off and its work directory goes, as after a run. Demo
// returns the cell judged from its timeline (inconclusive if it was left before its verdict).
func Demo(ctx context.Context, opts DemoOptions) (reports.Cell, error) {
	opts.setDefaults()
	cells := opts.Scenario.Cells()
	if len(cells) != 1 {
		return reports.Cell{}, &InputError{Err: fmt.Errorf("a demo runs one cell; the selection has %d", len(cells))}
	}
	c := cells[0]
	rc := pendingCell(c)
	p := newProgress(opts.Out, opts.Style)
	res := &reports.Result{Timings: map[string]float64{}}
	if err := kernel.Preflight(c.Kernel); err != nil {
		return rc, &InputError{Err: err}
	}
	r, err := newRunner(ctx, opts.Options, p, res, netnsMachine())
	if err != nil {
		return rc, err
	}
	defer os.RemoveAll(r.work)
	work := filepath.Join(r.work, "k0")
	k, initrd, err := r.kernelImage(ctx, work, c.Kernel)
	if err != nil {
		return rc, err
	}
	booted, err := r.boot(ctx, k, initrd, work, machineSetup{}, agent.ShellPortName)
	if err != nil {
		return rc, err
	}
	defer booted.release()
	machine := booted.VM

	d := agent.Demo{Term: opts.Term}
	if rows, cols, ok := demo.Size(opts.Out); ok {
		d.Rows, d.Cols = rows, cols
	}
	if err := sendJob(machine, agent.Job{Cells: cells, Demo: &d}); err != nil {
		return rc, labErr("kernel %s: %w", k.Name, err)
	}
	// Lines end as a terminal in raw mode needs whenever the screen is one, in CI too.
	style := opts.Style
	style.Terminal = tty.IsTerminal(opts.Out)
	screen := demo.NewScreen(opts.Out, style)
	screen.Say(demo.Line{Text: fmt.Sprintf("setting up %s; the shell opens when the lab waits for you", c.ID)})
	control := func(say string, c agent.Control) {
		screen.Say(demo.Line{Text: say})
		if err := machine.Send(c); err != nil {
			screen.Say(demo.Line{Text: err.Error(), Color: tty.Red})
		}
	}
	s := &demo.Session{
		In: opts.In, Out: opts.Out, Screen: screen, Shell: machine.Port(agent.ShellPortName),
		Kept: map[byte]func(){
			agent.NextKey:  func() { control(agent.NextKeyName+": next step", agent.Control{Next: true}) },
			agent.LeaveKey: func() { control(agent.LeaveKeyName+": leaving the shell", agent.Control{Leave: true}) },
		},
		Resize: func(rows, cols uint16) { _ = machine.Send(agent.Control{Rows: rows, Cols: cols}) },
	}
	go s.Run()
	defer s.Close()
	return followDemo(ctx, machine, screen, c, k)
}

// followDemo shows the agent's events until it says bye, and judges the cell at its end.
func followDemo(ctx context.Context, machine *vm.VM, screen *demo.Screen, c scenario.Cell, k kernel.Kernel) (reports.Cell, error) {
	type next struct {
		ev  event.Event
		err error
	}
	events := make(chan next)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			ev, err := machine.Next(ctx)
			select {
			case events <- next{ev, err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()

	f := &demoFollower{screen: screen, cell: c, kernel: k, machine: machine, rc: pendingCell(c)}
	var order demo.Orderer
	for {
		var due <-chan time.Time
		if wait, ok := order.Wait(time.Now()); ok {
			due = time.After(wait)
		}
		select {
		case n := <-events:
			if n.err != nil {
				f.show(order.Due(time.Now(), true))
				if ctx.Err() != nil {
					return f.rc, labErr("kernel %s: the demo was interrupted", k.Name)
				}
				return f.rc, labErr("kernel %s: lost the agent: %w; the VM console said:\n%s", k.Name, n.err, consoleTail(machine.ConsoleLog))
			}
			f.record(n.ev)
			order.Add(n.ev, time.Now())
			if n.ev.Kind == event.KindCellDone || n.ev.Kind == event.KindBye {
				if done, err := f.show(order.Due(time.Now(), true)); done {
					return f.rc, err
				}
			}
		case <-due:
			if done, err := f.show(order.Due(time.Now(), false)); done {
				return f.rc, err
			}
		}
	}
}

// demoFollower is what followDemo knows of the cell so far.
type demoFollower struct {
	screen   *demo.Screen
	cell     scenario.Cell
	kernel   kernel.Kernel
	machine  *vm.VM
	timeline []event.Event // the cell's events as they arrived, up to its end
	judged   bool
	rc       reports.Cell
}

// record adds ev to the cell's timeline and judges the cell at its end, as Run does.
func (f *demoFollower) record(ev event.Event) {
	if f.judged || ev.Cell < 0 {
		return
	}
	f.timeline = append(f.timeline, ev)
	if ev.Kind == event.KindCellDone {
		f.judged = true
		f.rc = Judge(f.cell, f.timeline, true)
		f.rc.KernelRelease, f.rc.KernelBuild = f.machine.Hello.KernelRelease, f.kernel.Build
	}
}

// show writes events to the screen; done is true after the agent's bye (with why the demo
// failed, if it did).
func (f *demoFollower) show(events []event.Event) (done bool, err error) {
	for _, ev := range events {
		if l, ok := demo.Describe(ev); ok {
			f.screen.Say(l)
		}
		switch ev.Kind {
		case event.KindCellDone:
			rc := f.rc
			f.screen.Say(demo.Line{Text: fmt.Sprintf("verdict %s (expected %s): %s", rc.Verdict, rc.Expected, rc.Reason), Color: verdictColor(rc.Verdict)})
			f.screen.Say(demo.Line{Text: "the lab stays up until you leave the shell (exit or Ctrl-D), which tears it down"})
		case event.KindBye:
			if !f.machine.WaitExit(10 * time.Second) {
				f.screen.Say(demo.Line{Text: "the VM did not power off within 10 s: stopping it", Color: tty.Red})
			}
			if !f.judged {
				return true, labErr("kernel %s: the agent ended the demo before its cell: %s", f.kernel.Name, ev.Msg)
			}
			return true, nil
		}
	}
	return false, nil
}
