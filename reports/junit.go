package reports

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"

	"github.com/nfslab/nfslab/lab/event"
)

// JUnitFile is the name of the JUnit XML report inside a run directory.
const JUnitFile = "junit.xml"

// maxJUnitLogLines bounds the kernel log quoted in a failure; result.json has all of it.
const maxJUnitLogLines = 20

// The JUnit XML shape CI systems read (GitLab, Jenkins, GitHub test-report actions): testsuites
// → testsuite → testcase with an optional failure or error.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
	Skipped   *junitProblem `xml:"skipped,omitempty"`
	SystemOut *junitText    `xml:"system-out,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",innerxml"` // escaped by xmlText
}

type junitText struct {
	Text string `xml:",innerxml"` // escaped by xmlText
}

// xmlText escapes s as XML character data, keeping its line breaks readable (encoding/xml
// would write them as &#xA;). Characters XML cannot hold become U+FFFD.
func xmlText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // a strings.Builder does not fail
	return strings.ReplaceAll(b.String(), "&#xA;", "\n")
}

// WriteJUnit writes dir/junit.xml: one testsuite (the scenario) with one testcase per cell,
// named by the cell's ID. A cell that did not get its expected verdict is a failure whose
// message says expected vs got with the key evidence, or an error when the lab itself failed
// in it (or never ran it). A cell of the scenario that no merged result held is a testcase with
// an error of type "missing" (skipped, after --allow-partial). A testcase's time is the span of
// the cell's timeline.
func WriteJUnit(dir string, r *Result) error {
	if r == nil {
		return errors.New("write junit.xml: no result")
	}
	b, err := junitXML(r)
	if err != nil {
		return fmt.Errorf("write junit.xml: %w", err)
	}
	return writeAtomic(dir, JUnitFile, b)
}

func junitXML(r *Result) ([]byte, error) {
	suite := junitSuite{Name: r.Scenario, Properties: []junitProperty{
		{"run_id", r.RunID}, {"accel", r.Host.Accel}, {"qemu", r.Host.QEMU}, {"host_kernel", r.Host.Kernel},
	}}
	if !r.StartedAt.IsZero() {
		suite.Timestamp = r.StartedAt.UTC().Format("2006-01-02T15:04:05")
	}
	var total float64
	for _, c := range r.Cells {
		first, last := span(c.Events)
		secs := last.Sub(first).Seconds()
		total += secs
		tc := junitCase{Name: c.ID, Classname: r.Scenario, Time: fmt.Sprintf("%.3f", secs)}
		if out := timelineText(c); out != "" {
			tc.SystemOut = &junitText{Text: xmlText(out)}
		}
		if !c.Pass {
			p := &junitProblem{Message: problemMessage(c), Text: xmlText(evidenceText(c))}
			if c.Error != "" || len(c.Events) == 0 || LabFailed(c) {
				p.Type = "lab-error"
				tc.Error = p
				suite.Errors++
			} else {
				p.Type = "verdict-mismatch"
				tc.Failure = p
				suite.Failures++
			}
		}
		suite.Cases = append(suite.Cases, tc)
	}
	// The scenario's cells that no merged result held: an error, or skipped when the merge
	// was told to accept a subset.
	for _, id := range r.MissingCells {
		tc := junitCase{Name: id, Classname: r.Scenario, Time: "0.000"}
		if r.Partial {
			tc.Skipped = &junitProblem{Message: "not run: left out of a partial merge (--allow-partial)", Type: "not-run"}
			suite.Skipped++
		} else {
			tc.Error = &junitProblem{Message: "not run: no merged result holds this cell of the scenario", Type: "missing"}
			suite.Errors++
		}
		suite.Cases = append(suite.Cases, tc)
	}
	suite.Tests = len(suite.Cases)
	suite.Time = fmt.Sprintf("%.3f", total)
	doc := junitSuites{
		Name: "nfslab", Tests: suite.Tests, Failures: suite.Failures, Errors: suite.Errors, Skipped: suite.Skipped, Time: suite.Time,
		Suites: []junitSuite{suite},
	}
	b, err := xml.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), append(b, '\n')...), nil
}

// problemMessage is a failure's one-line message: expected vs got, and why.
func problemMessage(c Cell) string {
	msg := fmt.Sprintf("expected %s, got %s: %s", or(c.Expected, "?"), or(c.Verdict, "?"), oneLine(or(c.Reason, "no reason recorded")))
	if len(c.Events) == 0 {
		msg += " (the cell did not run)"
	}
	return msg
}

// evidenceText is the key evidence of a cell, one fact a line.
func evidenceText(c Cell) string {
	var b bytes.Buffer
	line := func(k, v string) { fmt.Fprintf(&b, "%-18s %s\n", k+":", oneLine(v)) }
	line("verdict", fmt.Sprintf("%s (expected %s)", c.Verdict, c.Expected))
	line("reason", or(c.Reason, "none recorded"))
	if c.Error != "" {
		line("error", c.Error)
	}
	line("kernel", strings.TrimSpace(kernelText(c)+" "+c.KernelBuild))
	if st := startText(c); st != "" {
		line("vm", st)
	}
	line("service", fmt.Sprintf("VIP %s, backend A %s → backend B %s", or(c.VIP, "?"), or(c.BackendA, "?"), or(c.BackendB, "?")))
	line("mount addr", fmt.Sprintf("%s before the fault, %s after", or(c.MountAddrBefore, "—"), or(c.MountAddrAfter, "—")))
	roles := addrRoles{vip: c.VIP, a: c.BackendA, b: c.BackendB}
	var targets []string
	for _, t := range c.ReconnectTargets {
		a := roles.of(t)
		targets = append(targets, a.Addr+" ("+a.Role+")")
	}
	line("reconnect targets", or(strings.Join(targets, ", "), "none seen"))
	for _, a := range c.AskedOld {
		line("asked for A", a)
	}
	for _, f := range c.InstrumentFailures {
		line("instrument failed", f)
	}
	if c.RecoverySeconds != nil {
		line("recovery", fmt.Sprintf("%.2f s after backend B was ready", *c.RecoverySeconds))
	} else {
		line("recovery", "I/O did not recover")
	}
	for _, r := range connectSummary(c.Events, event.PhaseAfter) {
		what := r.source + " handed " + r.in + " by " + r.caller
		if r.out != "" {
			what += ", returned " + r.out
		}
		if r.action != "" {
			what += " (" + r.action + ")"
		}
		line("after the fault", fmt.Sprintf("%s ×%d", what, r.n))
	}
	if n := len(c.KernelLog); n > 0 {
		from := max(0, n-maxJUnitLogLines)
		fmt.Fprintf(&b, "kernel log (%d lines, the last %d):\n", n, n-from)
		for _, l := range c.KernelLog[from:] {
			fmt.Fprintf(&b, "  %s\n", oneLine(l))
		}
	}
	return b.String()
}

// timelineText is a cell's steps with their time since its first record.
func timelineText(c Cell) string {
	var b bytes.Buffer
	for _, s := range timeline(c.Events) {
		fmt.Fprintf(&b, "+%7.3f s  %s\n", s.at, oneLine(s.what))
	}
	return b.String()
}
