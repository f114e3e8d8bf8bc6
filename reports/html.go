package reports

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"

	"github.com/nfslab/nfslab/lab/event"
)

// HTMLFile is the name of the HTML report inside a run directory.
const HTMLFile = "report.html"

// maxAttemptRows bounds the reconnect table of a cell; result.json has every record.
const maxAttemptRows = 60

//go:embed html.tmpl
var htmlSource string

// WriteHTML writes dir/report.html: one self-contained page (no scripts, no fetches: inline CSS
// and SVG, and a Content-Security-Policy that forbids loading anything) with the verdict table
// and, per cell, its timeline drawn to scale and the evidence behind the verdict.
func WriteHTML(dir string, r *Result) error {
	if r == nil {
		return errors.New("write report.html: no result")
	}
	var b bytes.Buffer
	if err := renderHTML(&b, r); err != nil {
		return fmt.Errorf("write report.html: %w", err)
	}
	return writeAtomic(dir, HTMLFile, b.Bytes())
}

func renderHTML(w io.Writer, r *Result) error {
	tmpl, err := template.New(HTMLFile).Parse(htmlSource)
	if err != nil {
		return fmt.Errorf("parse the page template: %w", err)
	}
	return tmpl.Execute(w, newHTMLPage(r))
}

// htmlPage is what the template renders: everything is computed here, the template only lays
// it out.
type htmlPage struct {
	Scenario, RunID, Verdict string
	Pass                     bool
	Started, Took, Host      string
	Passed, Total            int
	Cells                    []htmlCell
	// Missing are the scenario's cells that no merged result held, introduced by MissingText.
	Missing     []string
	MissingText string
}

type htmlCell struct {
	Anchor                             string
	ID, Kernel, Datapath, NFS, Fault   string
	Verdict, Expected, Reason, Error   string
	Pass, Recovered                    bool
	Mark, Recovery, ProbeTimeout       string
	VIP, BackendA, BackendB            string
	MountBefore, MountAfter            string
	ReconnectTargets                   []htmlAddr
	AskedOld, InstrumentFailures       []string
	Timeline                           timelineSVG
	Attempts                           []attemptRow
	MoreAttempts                       int
	Connects                           []connectCount
	Window                             *Window
	KernelLog                          []string
	KernelBuild, KernelRelease, Source string
	Start                              string
	Cilium                             []ciliumFact
}

// htmlAddr is an address with the role it plays in the cell (backend A, backend B, the VIP).
type htmlAddr struct {
	Addr, Role, Class string
}

// attemptRow is one record of where the client reconnected after the fault.
type attemptRow struct {
	At            string
	SeenBy        string
	HandedIn      string
	WentTo        htmlAddr
	Detail        string
	SecondsOffset float64
}

type connectCount struct {
	Source, Caller, In, Out, Action string
	N                               int
}

func newHTMLPage(r *Result) htmlPage {
	p := htmlPage{
		Scenario: r.Scenario, RunID: r.RunID, Pass: r.Pass, Verdict: passText(r),
		Passed: passed(r), Total: len(r.Cells),
		Host: hostText(r.Host), Missing: r.MissingCells,
	}
	if len(r.MissingCells) > 0 {
		p.MissingText = missingText(r)
	}
	if !r.StartedAt.IsZero() {
		p.Started = r.StartedAt.Format(time.RFC3339)
		if r.FinishedAt.After(r.StartedAt) {
			p.Took = r.FinishedAt.Sub(r.StartedAt).Round(time.Second).String()
		}
	}
	for i, c := range r.Cells {
		p.Cells = append(p.Cells, newHTMLCell(i, c))
	}
	return p
}

func hostText(h Host) string {
	parts := []string{"accel " + or(h.Accel, "unknown")}
	if h.Kernel != "" {
		parts = append(parts, "host kernel "+h.Kernel)
	}
	if h.QEMU != "" {
		parts = append(parts, h.QEMU)
	}
	return strings.Join(parts, ", ")
}

func newHTMLCell(i int, c Cell) htmlCell {
	roles := addrRoles{vip: c.VIP, a: c.BackendA, b: c.BackendB}
	hc := htmlCell{
		Anchor: fmt.Sprintf("cell-%d", i),
		ID:     c.ID, Kernel: kernelText(c), Datapath: datapathText(c), NFS: c.NFS, Fault: c.Fault,
		Verdict: c.Verdict, Expected: c.Expected, Reason: or(c.Reason, "no reason recorded"), Error: c.Error,
		Pass: c.Pass, Mark: mark(c), Recovery: htmlRecovery(c), Recovered: c.RecoverySeconds != nil, ProbeTimeout: fmt.Sprintf("%gs", c.ProbeTimeout),
		VIP: or(c.VIP, "?"), BackendA: or(c.BackendA, "?"), BackendB: or(c.BackendB, "?"),
		MountBefore: or(c.MountAddrBefore, "—"), MountAfter: or(c.MountAddrAfter, "—"),
		Timeline:  newTimeline(c.Events, roles),
		Window:    c.NoEndpointWindow,
		KernelLog: c.KernelLog,
		AskedOld:  c.AskedOld, InstrumentFailures: c.InstrumentFailures,
		KernelBuild: c.KernelBuild, KernelRelease: c.KernelRelease, Source: c.Kernel,
		Start: startText(c), Cilium: ciliumFacts(c.Events),
	}
	for _, t := range c.ReconnectTargets {
		hc.ReconnectTargets = append(hc.ReconnectTargets, roles.of(t))
	}
	hc.Attempts = reconnectAttempts(c.Events, roles)
	if len(hc.Attempts) > maxAttemptRows {
		hc.MoreAttempts = len(hc.Attempts) - maxAttemptRows
		hc.Attempts = hc.Attempts[:maxAttemptRows]
	}
	for _, r := range connectSummary(c.Events, event.PhaseAfter) {
		hc.Connects = append(hc.Connects, connectCount{Source: r.source, Caller: r.caller, In: r.in, Out: r.out, Action: r.action, N: r.n})
	}
	return hc
}

// addrRoles names the addresses of a cell.
type addrRoles struct{ vip, a, b string }

// of classifies an address ("10.0.0.11:2049" or "10.0.0.11") by the role of its IP.
func (r addrRoles) of(addr string) htmlAddr {
	ip := hostOf(addr)
	switch {
	case ip == "":
		return htmlAddr{Addr: "—", Class: "none"}
	case r.a != "" && ip == r.a:
		return htmlAddr{Addr: addr, Role: "backend A", Class: "addr-a"}
	case r.b != "" && ip == r.b:
		return htmlAddr{Addr: addr, Role: "backend B", Class: "addr-b"}
	case r.vip != "" && ip == r.vip:
		return htmlAddr{Addr: addr, Role: "VIP", Class: "addr-vip"}
	}
	return htmlAddr{Addr: addr, Role: "other", Class: "addr-other"}
}

// hostOf strips a ":port" from an IPv4 address (IPv6 "[…]:port" too).
func hostOf(addr string) string {
	if strings.HasPrefix(addr, "[") {
		if i := strings.Index(addr, "]"); i > 0 {
			return addr[1:i]
		}
	}
	if strings.Count(addr, ":") == 1 {
		return addr[:strings.Index(addr, ":")]
	}
	return addr
}

// reconnectAttempts lists, in order, what the tracers saw connecting after the fault and the
// kernel's NFS sockets that appeared after it.
func reconnectAttempts(events []event.Event, roles addrRoles) []attemptRow {
	origin, _ := span(events)
	var rows []attemptRow
	prev := map[string]bool{}
	for _, e := range events {
		at := e.Mono.Sub(origin).Seconds()
		switch {
		case e.Connect != nil && e.Phase == event.PhaseAfter:
			c := e.Connect
			to := c.Output
			if to == "" {
				to = c.Input
			}
			detail := strings.TrimSpace(c.Action + " by " + c.Caller())
			rows = append(rows, attemptRow{At: fmt.Sprintf("%.3f", at), SecondsOffset: at, SeenBy: c.Source, HandedIn: c.Input, WentTo: roles.of(to), Detail: detail})
		case e.Failed != nil && e.Phase == event.PhaseAfter:
			f := e.Failed
			rows = append(rows, attemptRow{At: fmt.Sprintf("%.3f", at), SecondsOffset: at, SeenBy: f.Source, HandedIn: f.Input, WentTo: htmlAddr{Addr: "—", Role: "refused: " + f.Errno, Class: "none"}, Detail: "failed with " + f.Errno + " by " + f.Caller()})
		case e.Sockets != nil:
			seen := map[string]bool{}
			for _, s := range e.Sockets.Sockets {
				key := s.Local + ">" + s.Remote
				seen[key] = true
				if e.Phase == event.PhaseAfter && !prev[key] {
					rows = append(rows, attemptRow{At: fmt.Sprintf("%.3f", at), SecondsOffset: at, SeenBy: "kernel socket", HandedIn: "from " + s.Local, WentTo: roles.of(s.Remote), Detail: s.State})
				}
			}
			prev = seen
		}
	}
	return rows
}

// htmlRecovery is a cell's recovery time, or "—" when I/O did not recover.
func htmlRecovery(c Cell) string {
	if c.RecoverySeconds == nil {
		return "—"
	}
	return fmt.Sprintf("%.2f s", *c.RecoverySeconds)
}
