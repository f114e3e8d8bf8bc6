package reports

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The usual JUnit XML shape, declared independently of the writer: what a CI system reads.
type jSuites struct {
	XMLName  xml.Name `xml:"testsuites"`
	Tests    string   `xml:"tests,attr"`
	Failures string   `xml:"failures,attr"`
	Errors   string   `xml:"errors,attr"`
	Skipped  string   `xml:"skipped,attr"`
	Time     string   `xml:"time,attr"`
	Suites   []jSuite `xml:"testsuite"`
}

type jSuite struct {
	Name      string  `xml:"name,attr"`
	Tests     string  `xml:"tests,attr"`
	Failures  string  `xml:"failures,attr"`
	Errors    string  `xml:"errors,attr"`
	Skipped   string  `xml:"skipped,attr"`
	Time      string  `xml:"time,attr"`
	Timestamp string  `xml:"timestamp,attr"`
	Cases     []jCase `xml:"testcase"`
}

type jCase struct {
	Name      string    `xml:"name,attr"`
	Classname string    `xml:"classname,attr"`
	Time      string    `xml:"time,attr"`
	Failure   *jProblem `xml:"failure"`
	Error     *jProblem `xml:"error"`
	Skipped   *struct{} `xml:"skipped"`
	SystemOut string    `xml:"system-out"`
}

type jProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// checkJUnitShape walks the document and fails on any element or missing attribute that the
// usual JUnit schema does not have at that place.
func checkJUnitShape(t *testing.T, doc []byte) {
	t.Helper()
	allowed := map[string][]string{
		"":           {"testsuites"},
		"testsuites": {"testsuite"},
		"testsuite":  {"properties", "testcase", "system-out", "system-err"},
		"properties": {"property"},
		"testcase":   {"failure", "error", "skipped", "system-out", "system-err"},
	}
	required := map[string][]string{
		"testsuites": {"tests", "failures", "errors", "skipped", "time"},
		"testsuite":  {"name", "tests", "failures", "errors", "skipped", "time"},
		"testcase":   {"name", "classname", "time"},
		"failure":    {"message", "type"},
		"error":      {"message", "type"},
		"property":   {"name", "value"},
	}
	d := xml.NewDecoder(bytes.NewReader(doc))
	var stack []string
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("junit.xml is not well-formed XML: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			parent := ""
			if len(stack) > 0 {
				parent = stack[len(stack)-1]
			}
			name := tok.Name.Local
			if !slices.Contains(allowed[parent], name) {
				t.Errorf("<%s> inside <%s>", name, parent)
			}
			for _, a := range required[name] {
				if !slices.ContainsFunc(tok.Attr, func(x xml.Attr) bool { return x.Name.Local == a }) {
					t.Errorf("<%s> without %s", name, a)
				}
			}
			for _, a := range tok.Attr {
				if a.Name.Local == "time" {
					if v, err := strconv.ParseFloat(a.Value, 64); err != nil || v < 0 {
						t.Errorf("<%s time=%q> is not a duration in seconds", name, a.Value)
					}
				}
			}
			stack = append(stack, name)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		}
	}
}

func TestJUnit(t *testing.T) {
	r := sample()
	r.Cells = append(r.Cells, stuckCell(),
		Cell{ID: "debian-stock/kube-proxy/4.1/delete-pod", Verdict: "inconclusive", Expected: "recovered", Reason: "not run"})
	r.Cells[1].InstrumentFailures = []string{"sockets: read /proc/net/tcp: EIO"}
	dir := t.TempDir()
	if err := WriteJUnit(dir, r); err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(dir, JUnitFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(doc, []byte(`<?xml version="1.0" encoding="UTF-8"?>`)) {
		t.Error("no XML declaration")
	}
	checkJUnitShape(t, doc)
	var got jSuites
	if err := xml.Unmarshal(doc, &got); err != nil {
		t.Fatal(err)
	}
	if got.Tests != "4" || got.Failures != "1" || got.Errors != "2" || got.Skipped != "0" || len(got.Suites) != 1 {
		t.Fatalf("testsuites tests=%s failures=%s errors=%s skipped=%s with %d suites, want 4/1/2/0 and 1",
			got.Tests, got.Failures, got.Errors, got.Skipped, len(got.Suites))
	}
	s := got.Suites[0]
	if s.Name != "fidelity" || s.Tests != "4" || s.Failures != "1" || s.Errors != "2" || s.Timestamp != "2025-03-01T12:00:00" {
		t.Errorf("testsuite %+v", s)
	}
	// 7 s + 2 s + 9.1 s + 0 s of timelines
	if s.Time != "18.100" || got.Time != s.Time {
		t.Errorf("time %s (suites %s), want 18.100", s.Time, got.Time)
	}

	tests := []struct {
		id, time  string
		kind      string // "", "failure" or "error"
		message   string
		text, out []string
	}{
		{id: "debian-stock/socket-lb/4.1/delete-pod", time: "7.000", out: []string{"+  0.000 s  topology-ready", "+  7.000 s  agent verdict: recovered"}},
		{id: "bzImage/socket-lb/4.1/delete-pod", time: "2.000", kind: "error",
			message: "expected bug-reproduced, got failed: I/O stuck 60.00s after backend B became ready; no reconnect seen",
			text: []string{"error:             a | pipe and a newline", "reconnect targets: none seen", "recovery:          I/O did not recover",
				"instrument failed: sockets: read /proc/net/tcp: EIO"},
			out: []string{"+  2.000 s  error in mounted: mount: timed out"}},
		{id: "vulnerable-6.1/socket-lb/4.1/delete-pod", time: "9.100", kind: "failure",
			message: "expected recovered, got bug-reproduced: I/O stuck 5.00s after backend B became ready; reconnects went to backend A 10.0.0.11",
			text: []string{
				"service:           VIP 10.96.0.50, backend A 10.0.0.11 → backend B 10.0.0.12",
				"mount addr:        10.96.0.50 before the fault, 10.96.0.50 after",
				"reconnect targets: 10.0.0.11 (backend A)",
				"asked for A:       kprobe:kernel_connect was handed 10.0.0.11:2049\nasked for A:       socket-lb:connect4 was handed 10.0.0.11:2049\n",
				"after the fault:   kprobe:kernel_connect handed 10.0.0.11:2049 by the kernel ×2",
				"after the fault:   socket-lb:connect4 handed 10.0.0.11:2049 by the kernel, returned 10.0.0.11:2049 (non-vip) ×2",
				"kernel log (1 lines, the last 1):\n  nfs: server 10.96.0.50 not responding, timed out",
			},
			out: []string{"+  9.050 s  io-stuck"}},
		{id: "debian-stock/kube-proxy/4.1/delete-pod", time: "0.000", kind: "error",
			message: "expected recovered, got inconclusive: not run (the cell did not run)"},
	}
	if len(s.Cases) != len(tests) {
		t.Fatalf("%d testcases, want %d", len(s.Cases), len(tests))
	}
	for i, tt := range tests {
		c := s.Cases[i]
		t.Run(tt.id, func(t *testing.T) {
			if c.Name != tt.id || c.Classname != "fidelity" || c.Time != tt.time {
				t.Errorf("testcase %s classname %s time %s, want %s fidelity %s", c.Name, c.Classname, c.Time, tt.id, tt.time)
			}
			var p *jProblem
			switch tt.kind {
			case "failure":
				p = c.Failure
				if c.Error != nil || p == nil || p.Type != "verdict-mismatch" {
					t.Fatalf("failure %+v error %+v, want a verdict-mismatch failure", c.Failure, c.Error)
				}
			case "error":
				p = c.Error
				if c.Failure != nil || p == nil || p.Type != "lab-error" {
					t.Fatalf("failure %+v error %+v, want a lab-error", c.Failure, c.Error)
				}
			default:
				if c.Failure != nil || c.Error != nil {
					t.Fatalf("a passing cell has failure %+v error %+v", c.Failure, c.Error)
				}
			}
			if p != nil {
				if p.Message != tt.message {
					t.Errorf("message %q\nwant    %q", p.Message, tt.message)
				}
				for _, w := range tt.text {
					if !strings.Contains(p.Text, w) {
						t.Errorf("failure text lacks %q:\n%s", w, p.Text)
					}
				}
			}
			for _, w := range tt.out {
				if !strings.Contains(c.SystemOut, w) {
					t.Errorf("system-out lacks %q:\n%s", w, c.SystemOut)
				}
			}
		})
	}
}

func TestJUnitEdgeCases(t *testing.T) {
	tests := []struct {
		name string
		r    *Result
	}{
		{"no cells", &Result{Scenario: "s", RunID: "r"}},
		{"control characters", &Result{Scenario: "s\x01", Cells: []Cell{{ID: "a/b/c/d", Verdict: "failed", Expected: "recovered",
			Reason: "bad \x00\x1b[31m bytes ]]> <x>", KernelLog: []string{"\x07bell"}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := junitXML(tt.r)
			if err != nil {
				t.Fatal(err)
			}
			checkJUnitShape(t, b)
			var got jSuites
			if err := xml.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if got.Tests != strconv.Itoa(len(tt.r.Cells)) {
				t.Errorf("tests=%s, want %d", got.Tests, len(tt.r.Cells))
			}
		})
	}
	if err := WriteJUnit(t.TempDir(), nil); err == nil {
		t.Error("WriteJUnit(nil) succeeded")
	}
}
