package reports

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nfslab/nfslab/lab/event"
)

// WriteMarkdown writes dir/summary.md: the run, a table with one row per cell, and per cell
// its evidence, with its timeline and kernel log folded. It is GitHub-flavoured Markdown, fit
// for $GITHUB_STEP_SUMMARY.
func WriteMarkdown(dir string, r *Result) error {
	if r == nil {
		return errors.New("write summary.md: no result")
	}
	var b bytes.Buffer
	markdown(&b, r)
	return writeAtomic(dir, MarkdownFile, b.Bytes())
}

func markdown(w *bytes.Buffer, r *Result) {
	fmt.Fprintf(w, "# nfslab: %s — %s\n\n", md(r.Scenario), passText(r))
	fmt.Fprintf(w, "- Scenario: `%s`\n", code(r.Scenario))
	fmt.Fprintf(w, "- Run: `%s`\n", code(r.RunID))
	if !r.StartedAt.IsZero() {
		line := "- Started: " + r.StartedAt.Format(time.RFC3339)
		if r.FinishedAt.After(r.StartedAt) {
			line += fmt.Sprintf(", took %s", r.FinishedAt.Sub(r.StartedAt).Round(time.Second))
		}
		fmt.Fprintln(w, line)
	}
	fmt.Fprintf(w, "- Host: accel %s", or(r.Host.Accel, "unknown"))
	if r.Host.Kernel != "" {
		fmt.Fprintf(w, ", kernel %s", md(r.Host.Kernel))
	}
	if r.Host.QEMU != "" {
		fmt.Fprintf(w, ", %s", md(r.Host.QEMU))
	}
	fmt.Fprintf(w, "\n- Cells: %d of %d got their expected verdict\n", passed(r), len(r.Cells))
	if len(r.MissingCells) > 0 {
		fmt.Fprintf(w, "- %s: ", missingText(r))
		for i, id := range r.MissingCells {
			if i > 0 {
				fmt.Fprint(w, ", ")
			}
			fmt.Fprintf(w, "`%s`", code(id))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)

	if len(r.Cells) == 0 {
		fmt.Fprintln(w, "No cells ran.")
		return
	}
	fmt.Fprintln(w, "| kernel | datapath | nfs | fault | verdict | expected | recovery (s) | mount addr before → after | reconnect targets |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---:|---|---|")
	for _, c := range r.Cells {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s %s | %s | %s | %s → %s | %s |\n",
			md(kernelText(c)), md(datapathText(c)), md(c.NFS), md(c.Fault), mark(c), md(c.Verdict), md(c.Expected),
			recovery(c), md(or(c.MountAddrBefore, "—")), md(or(c.MountAddrAfter, "—")), md(or(strings.Join(c.ReconnectTargets, ", "), "—")))
	}
	fmt.Fprintln(w, "\nRecovery is measured from backend B becoming ready to the end of the first good I/O probe. "+
		"The mount addr is the addr= of /proc/mounts: it is written when the transport is created and cannot show an "+
		"overwritten server address, so verdicts rest on the I/O probes and the reconnect targets instead.")

	for _, c := range r.Cells {
		fmt.Fprintf(w, "\n## %s %s\n\n", mark(c), md(c.ID))
		expected := md(c.Expected)
		if c.ExpectedReason != "" {
			expected += fmt.Sprintf(" for `%s`", code(c.ExpectedReason))
		}
		fmt.Fprintf(w, "**%s** (expected %s): %s\n", md(c.Verdict), expected, md(or(c.Reason, "no reason recorded")))
		switch {
		case LabFailed(c):
			fmt.Fprintf(w, "\nReason code: `%s` — the lab itself failed in this cell, which never counts as an expected verdict.\n", code(c.ReasonCode))
		case c.ReasonCode != "":
			fmt.Fprintf(w, "\nReason code: `%s`\n", code(c.ReasonCode))
		}
		if c.Error != "" {
			fmt.Fprintf(w, "\nError: %s\n", md(c.Error))
		}
		fmt.Fprintf(w, "\nBackends %s → %s behind %s.\n", md(or(c.BackendA, "?")), md(or(c.BackendB, "?")), md(or(c.VIP, "?")))
		if st := startText(c); st != "" {
			fmt.Fprintf(w, "\nVM: %s.\n", md(st))
		}
		for _, f := range ciliumFacts(c.Events) {
			fmt.Fprintf(w, "\n%s: %s.\n", f.Name, md(f.Text))
		}
		if rows, when := connectEvidence(c.Events); len(rows) > 0 {
			fmt.Fprintf(w, "\nConnect attempts %s (what the tracers saw):\n\n| seen by | caller | handed in | returned | action | count |\n|---|---|---|---|---|---:|\n", when)
			for _, r := range rows {
				fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %d |\n", md(r.source), md(r.caller), md(r.in), md(or(r.out, "—")), md(or(r.action, "—")), r.n)
			}
		}
		if win := c.NoEndpointWindow; win != nil {
			fmt.Fprintf(w, "\nNo-endpoint window: %.1f s, %d connect attempts (%.1f/s; %d refused by socket-LB, mode %s), %d kernel log lines (%.1f/s).\n",
				win.Seconds, win.ConnectAttempts, win.AttemptsPerSecond, win.Refused, md(win.SocketLBWithoutEnds), win.KernelLogLines, win.KernelLogPerSecond)
		}
		// The long parts are folded (<details>), so that the summary stays short where it is
		// shown inline, as in GitHub's $GITHUB_STEP_SUMMARY.
		if tl := timeline(c.Events); len(tl) > 0 {
			fmt.Fprintf(w, "\n<details><summary>Timeline (%d steps)</summary>\n\n| +s | step |\n|---:|---|\n", len(tl))
			for _, t := range tl {
				fmt.Fprintf(w, "| %.2f | %s |\n", t.at, md(t.what))
			}
			fmt.Fprintln(w, "\n</details>")
		} else {
			fmt.Fprintln(w, "\nNo timeline recorded.")
		}
		if n := len(c.KernelLog); n > 0 {
			from := max(0, n-maxMarkdownLogLines)
			fmt.Fprintf(w, "\n<details><summary>Kernel log (%d lines)</summary>\n\n", n)
			if from > 0 {
				fmt.Fprintf(w, "The last %d lines; result.json has all of them.\n\n", n-from)
			}
			fmt.Fprintln(w, "```")
			for _, l := range c.KernelLog[from:] {
				fmt.Fprintln(w, strings.ReplaceAll(l, "```", "'''"))
			}
			fmt.Fprintln(w, "```\n\n</details>")
		}
	}
}

// maxMarkdownLogLines bounds the kernel log quoted per cell: GitHub takes at most 1 MiB of
// step summary.
const maxMarkdownLogLines = 40

// Summary prints the run as a plain-text table for a terminal: one row per cell, then the
// reason of each cell that did not get its expected verdict.
func Summary(w io.Writer, r *Result) {
	if r == nil {
		fmt.Fprintln(w, "no result")
		return
	}
	fmt.Fprintf(w, "%s  run %s  accel %s\n\n", r.Scenario, r.RunID, or(r.Host.Accel, "unknown"))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KERNEL\tDATAPATH\tNFS\tFAULT\tVERDICT\tEXPECTED\tRECOVERY\tMOUNT ADDR\tRECONNECTS")
	for _, c := range r.Cells {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s %s\t%s\t%s\t%s → %s\t%s\n",
			oneLine(kernelText(c)), oneLine(datapathText(c)), oneLine(c.NFS), oneLine(c.Fault), mark(c), oneLine(c.Verdict), oneLine(c.Expected),
			recoveryText(c), oneLine(or(c.MountAddrBefore, "-")), oneLine(or(c.MountAddrAfter, "-")), oneLine(or(strings.Join(c.ReconnectTargets, ","), "-")))
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, c := range r.Cells {
		if !c.Pass {
			what := oneLine(or(c.Reason, c.Error))
			if LabFailed(c) {
				what = "the lab failed (" + oneLine(c.ReasonCode) + "): " + what
			}
			fmt.Fprintf(w, "✘ %s: %s\n", oneLine(c.ID), what)
		}
	}
	if len(r.MissingCells) > 0 {
		fmt.Fprintf(w, "%s:\n", missingText(r))
		for _, id := range r.MissingCells {
			fmt.Fprintf(w, "  %s\n", oneLine(id))
		}
	}
	fmt.Fprintf(w, "%d/%d cells got their expected verdict: %s\n", passed(r), len(r.Cells), passText(r))
}

// missingText introduces the scenario's cells that no merged result held.
func missingText(r *Result) string {
	if r.Partial {
		return fmt.Sprintf("Not run: %d cell(s) of the scenario, left out of this partial merge (--allow-partial)", len(r.MissingCells))
	}
	return fmt.Sprintf("✘ Missing: %d cell(s) of the scenario have no result (a job that crashed or uploaded nothing?)", len(r.MissingCells))
}

type step struct {
	at   float64
	what string
}

// timeline lists a cell's steps and errors with their time since the cell's first event.
func timeline(events []event.Event) []step {
	if len(events) == 0 {
		return nil
	}
	first := events[0].Mono
	for _, e := range events {
		first = min(first, e.Mono)
	}
	var out []step
	for _, e := range events {
		at := e.Mono.Sub(first).Seconds()
		switch e.Kind {
		case event.KindStep:
			out = append(out, step{at, string(e.Step)})
		case event.KindError:
			what := "error"
			if e.Step != "" {
				what += " in " + string(e.Step)
			}
			out = append(out, step{at, what + ": " + e.Msg})
		case event.KindCellDone:
			if e.Verdict != nil {
				out = append(out, step{at, "agent verdict: " + e.Verdict.Verdict})
			}
		}
	}
	return out
}

func passed(r *Result) int {
	n := 0
	for _, c := range r.Cells {
		if c.Pass {
			n++
		}
	}
	return n
}

func passText(r *Result) string {
	if r.Pass {
		return "PASS"
	}
	return "FAIL"
}

func mark(c Cell) string {
	if c.Pass {
		return "✔"
	}
	return "✘"
}

// kernelText names a cell's kernel: a path by its file name, with the release when known.
func kernelText(c Cell) string {
	k := c.Kernel
	if strings.ContainsAny(k, `/\`) {
		k = filepath.Base(k)
	}
	if c.KernelRelease != "" {
		k += " (" + c.KernelRelease + ")"
	}
	return k
}

// datapathText is the datapath column: the datapath, prefixed with the cluster form for a cell
// that did not run on the netns form ("kind: kube-proxy"), so the two forms' rows differ.
// startText says how the cell's VM came up: booted cold or restored from a snapshot, how long
// that took, and what the agent found of the guest's clock; "" when not recorded.
func startText(c Cell) string {
	st := c.Start
	if st == nil {
		return ""
	}
	var s string
	switch st.Mode {
	case StartRestored:
		s = fmt.Sprintf("restored in %.1f s from snapshot %s", st.Seconds, st.Snapshot)
		if st.SnapshotTaken != nil {
			s += " (taken " + st.SnapshotTaken.UTC().Format(time.RFC3339) + ")"
		}
	default:
		s = fmt.Sprintf("booted cold in %.1f s", st.Seconds)
		if st.Snapshot != "" {
			s += ", snapshot " + st.Snapshot + " taken of it"
		}
	}
	s += fmt.Sprintf("; guest clock %+.1f s off the host's", st.ClockSkewSeconds)
	if st.ClockSet {
		s += ", set to it"
	} else {
		s += ", left to run on"
	}
	if st.Reseeded {
		s += "; guest RNG reseeded"
	}
	return s
}

// ciliumFact is one line about real Cilium in a cell's report: its install, or its own service
// table for the VIP.
type ciliumFact struct{ Name, Text string }

// ciliumFacts describes real Cilium from a cell's events: the install of the cluster it ran on
// (version, datapath, how long after the apply its datapath was ready, what the agent says of its
// kube-proxy replacement, its programs at the VM's root cgroup), and the service table the agent
// had for the VIP before and after the fault. None for a cell without Cilium.
func ciliumFacts(events []event.Event) []ciliumFact {
	var out []ciliumFact
	var before, after string
	for _, e := range events {
		switch {
		case e.Cluster != nil && e.Cluster.Cilium != nil:
			ci := e.Cluster.Cilium
			text := fmt.Sprintf("%s (%s), its datapath ready %.0f s after the apply", ci.Version, ci.Datapath, ci.ReadySeconds)
			if ci.KubeProxyReplacement != "" {
				text += "; KubeProxyReplacement: " + strings.Join(strings.Fields(ci.KubeProxyReplacement), " ")
			}
			if ci.RootPrograms != "" {
				text += "; " + ci.RootPrograms
			}
			out = append(out, ciliumFact{"Cilium", text})
		case e.Service != nil && e.Service.Cilium != "":
			if e.Phase == event.PhaseAfter {
				after = e.Service.Cilium
			} else {
				before = e.Service.Cilium
			}
		}
	}
	if before != "" || after != "" {
		out = append(out, ciliumFact{"Cilium's service table for the VIP", fmt.Sprintf("%s before the fault, %s after", or(before, "not read"), or(after, "not read"))})
	}
	return out
}

// datapathText is the cell's datapath as the tables show it: with its cluster form when that is
// not netns, and with its Cilium version when it is real Cilium ("kind: cilium@v1.19.7").
func datapathText(c Cell) string {
	d := c.Datapath
	if c.Cilium != "" {
		d += "@" + c.Cilium
	}
	if c.Cluster != "" && c.Cluster != "netns" {
		return c.Cluster + ": " + d
	}
	return d
}

func recovery(c Cell) string {
	if c.RecoverySeconds == nil {
		return "—"
	}
	return fmt.Sprintf("%.2f", *c.RecoverySeconds)
}

func recoveryText(c Cell) string {
	if c.RecoverySeconds == nil {
		return "-"
	}
	return fmt.Sprintf("%.2fs", *c.RecoverySeconds)
}

func or(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// md makes text safe inside a Markdown table cell or paragraph.
func md(s string) string {
	return strings.NewReplacer("|", `\|`, "\r\n", " ", "\n", " ", "\r", " ", "<", "&lt;", ">", "&gt;").Replace(s)
}

// code makes text safe inside `…`.
func code(s string) string { return strings.ReplaceAll(oneLine(s), "`", "'") }

func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ", "\t", " ").Replace(s)
}

type connectRow struct {
	source, caller, in, out, action string
	n                               int
}

// callerOf says who made a connect, for counting: the kernel, or the process by ID and name.
func callerOf(c *event.ConnectObs) string {
	if c.Kernel {
		return "the kernel"
	}
	return c.Caller()
}

// connectEvidence is the connect attempts a cell's report shows, and when they were made: those
// after the fault, or, in a cell that ended before its fault (a mount of the ClusterIP that
// timed out), those before it — the kernel's connects to the VIP that nothing rewrote.
func connectEvidence(events []event.Event) ([]connectRow, string) {
	for _, e := range events {
		if e.Phase == event.PhaseAfter {
			return connectSummary(events, event.PhaseAfter), "after the fault"
		}
	}
	return connectSummary(events, event.PhaseBefore), "before the fault (the cell ended before it)"
}

// connectSummary counts a phase's connect records by what was seen and who made the call, in
// first-seen order: after the fault on the vulnerable kernel, kernel_connect() handed the dead
// pod's IP. Only the kernel's own connects are evidence; a process's are listed as such. A kernel
// connect that failed at once is a row of its own ("failed: EPERM": a connect hook refused it).
func connectSummary(events []event.Event, phase event.Phase) []connectRow {
	var rows []connectRow
	idx := map[connectRow]int{}
	for _, e := range events {
		if e.Phase != phase {
			continue
		}
		var k connectRow
		switch {
		case e.Connect != nil:
			k = connectRow{source: e.Connect.Source, caller: callerOf(e.Connect), in: e.Connect.Input, out: e.Connect.Output, action: e.Connect.Action}
		case e.Failed != nil:
			k = connectRow{source: e.Failed.Source, caller: e.Failed.Caller(), in: e.Failed.Input, action: "failed: " + e.Failed.Errno}
		default:
			continue
		}
		i, ok := idx[k]
		if !ok {
			i = len(rows)
			idx[k] = i
			rows = append(rows, k)
		}
		rows[i].n++
	}
	return rows
}
