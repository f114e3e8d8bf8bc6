package lab

// This file turns a cell's timeline into its report entry: the verdict (decided by
// lab/verdict from the evidence) and the addresses, phases and timings beside it.

import (
	"github.com/nfslab/nfslab/lab/agent"
	"github.com/nfslab/nfslab/lab/cluster/vm"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/kernel"
	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/lab/verdict"
	"github.com/nfslab/nfslab/reports"
)

// finishCells turns the timelines of the first n cells into report cells with verdicts.
func finishCells(cells []scenario.Cell, timeline map[int][]event.Event, k kernel.Kernel, machine *vm.VM, start reports.Start, res *reports.Result, n int) {
	for i, c := range cells {
		rc := Judge(c, timeline[c.Index], i < n)
		rc.KernelRelease = machine.Hello.KernelRelease
		rc.KernelBuild = k.Build
		rc.Start = &start
		res.Cells[c.Index] = rc
	}
}

// Judge decides a cell's verdict from its timeline and fills its report entry. complete says
// whether the agent finished the cell; an unfinished cell is judged on what it had. A cell whose
// lab failed a check of its setup (agent.LabFailure: the datapath in effect was not the cell's)
// is inconclusive and does not pass, whatever it expected.
func Judge(c scenario.Cell, events []event.Event, complete bool) reports.Cell {
	rc := pendingCell(c)
	rc.Events = events
	ev := verdict.Collect(c.Port, events)
	d := verdict.Decide(ev, true)
	labFailed := false
	if ld, ok := agent.LabFailure(events); ok {
		d, labFailed = ld, true
	}
	if !complete && d.Verdict != verdict.Recovered && d.Verdict != verdict.BugReproduced && !labFailed {
		last := "before its first step"
		for _, e := range events {
			if e.Kind == event.KindStep {
				last = "after " + string(e.Step)
			}
		}
		d = verdict.Decision{Verdict: verdict.Inconclusive, Reason: "the cell was cut short " + last, Final: true, Code: verdict.CodeCutShort}
	}
	rc.Verdict, rc.Reason, rc.ReasonCode = string(d.Verdict), d.Reason, string(d.Code)
	rc.Pass = reports.Passes(rc) // never for a lab failure: its code says so
	// The addresses are the ones the cluster reported on the timeline.
	rc.VIP, rc.BackendA, rc.BackendB = ev.VIP, ev.OldBackend, ev.NewBackend
	rc.ReconnectTargets = ev.ReconnectTargets
	rc.AskedOld = ev.AskedOld
	rc.InstrumentFailures = ev.InstrumentFailures
	if ev.FirstIOOKAfter != nil {
		s := ev.FirstIOOKAfter.Seconds()
		rc.RecoverySeconds = &s
	}
	var first, prev event.Mono
	for _, e := range events {
		if first == 0 {
			first, prev = e.Mono, e.Mono
		}
		switch {
		case e.Mount != nil && e.Phase == event.PhaseBefore:
			rc.MountAddrBefore = e.Mount.Addr
		case e.Mount != nil && e.Phase == event.PhaseAfter:
			rc.MountAddrAfter = e.Mount.Addr
		case e.Kernel != nil:
			rc.KernelLog = append(rc.KernelLog, e.Kernel.Line)
		case e.Kind == event.KindStep:
			rc.Phases[string(e.Step)] = round3(e.Mono.Sub(prev).Seconds())
			prev = e.Mono
		case e.Kind == event.KindError && rc.Error == "":
			rc.Error = e.Msg
		case e.Window != nil && e.Window.Seconds > 0:
			w := e.Window
			rc.NoEndpointWindow = &reports.Window{
				Seconds: round3(w.Seconds), ConnectAttempts: w.ConnectAttempts, Refused: w.Refused,
				AttemptsPerSecond: round3(float64(w.ConnectAttempts) / w.Seconds),
				KernelLogLines:    w.KernelLogLines, KernelLogPerSecond: round3(float64(w.KernelLogLines) / w.Seconds),
				SocketLBWithoutEnds: c.SocketLBNoBackend,
			}
		}
	}
	return rc
}

// NewResult is the result of a run of s before any of its cells ran: the scenario's name and
// identity (its hash, and every cell of its matrix with what it expects, even when s is
// narrowed to one cell by SelectCell), and a pending cell for each cell the run has.
func NewResult(s *scenario.Scenario) *reports.Result {
	res := &reports.Result{Schema: reports.Schema, Scenario: s.Name, ScenarioHash: s.Hash(), Timings: map[string]float64{}}
	for _, c := range s.AllCells() {
		res.ScenarioCells = append(res.ScenarioCells, reports.ScenarioCell{ID: c.ID, Expected: c.Expected, ExpectedReason: c.ExpectedReason})
	}
	for _, c := range s.Cells() {
		res.Cells = append(res.Cells, pendingCell(c))
	}
	return res
}

func pendingCell(c scenario.Cell) reports.Cell {
	return reports.Cell{
		ID: c.ID, Kernel: c.Kernel, Cluster: c.Cluster, Datapath: c.Datapath, Cilium: c.Cilium, Protocol: c.Protocol, NFS: c.NFS, Fault: c.Fault,
		Verdict: string(verdict.Inconclusive), Expected: c.Expected, ExpectedReason: c.ExpectedReason, Reason: "not run", ReasonCode: string(verdict.CodeNotRun),
		ProbeTimeout:     c.Timeouts.Probe.Seconds(),
		ReconnectTargets: []string{}, KernelLog: []string{}, Phases: map[string]float64{}, Events: []event.Event{},
	}
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }
