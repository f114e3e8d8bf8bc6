package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/reports"
	"github.com/nfslab/nfslab/scenarios"
)

// oneCellResult is a result as `nfslab run --scenario default --cell ID` writes it: the
// scenario's identity and one cell, with its verdict.
func oneCellResult(t *testing.T, runID, id, verdict string) *reports.Result {
	t.Helper()
	res, _ := shard(t, "default", id)
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	res.RunID, res.StartedAt, res.FinishedAt, res.Host = runID, start, start.Add(20*time.Second), reports.Host{Accel: "tcg"}
	c := &res.Cells[0]
	c.Verdict, c.ReasonCode, c.Reason = verdict, "io-recovered", "because"
	if verdict != "recovered" {
		c.ReasonCode = "io-stuck"
	}
	c.VIP, c.BackendA, c.BackendB = "10.96.0.50", "10.0.0.11", "10.0.0.12"
	c.Events = []event.Event{
		{Mono: 1e9, Kind: event.KindStep, Step: event.StepTopology},
		{Mono: 3e9, Kind: event.KindStep, Step: event.StepBackendBReady, Phase: event.PhaseAfter},
	}
	c.Pass = reports.Passes(*c)
	res.Pass = c.Pass
	return res
}

// shard is the result `nfslab run --scenario ref --cell id` starts from (lab.NewResult), its
// one cell not run yet, and that cell as the run has it.
func shard(t *testing.T, ref, id string) (*reports.Result, scenario.Cell) {
	t.Helper()
	s, err := scenario.Load(ref, scenarios.FS)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SelectCell(id); err != nil {
		t.Fatal(err)
	}
	return lab.NewResult(s), s.Cells()[0]
}

func TestReportMergeCmd(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, r *reports.Result) string {
		t.Helper()
		d := filepath.Join(dir, name)
		if err := reports.WriteJSON(d, r); err != nil {
			t.Fatal(err)
		}
		return d
	}
	kp := write("kp", oneCellResult(t, "r1", "debian-stock/kube-proxy/4.1/delete-pod", "recovered"))
	sl := write("sl", oneCellResult(t, "r2", "debian-stock/socket-lb/4.1/delete-pod", "recovered"))
	slFailed := write("sl-failed", oneCellResult(t, "r3", "debian-stock/socket-lb/4.1/delete-pod", "failed"))
	v9 := filepath.Join(dir, "v9.json")
	if err := os.WriteFile(v9, []byte(`{"schema":"nfslab.result/v9","scenario":"default","cells":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
		out    string // the merged reports' directory, when some are written
	}{
		{name: "pass", args: []string{"report", "merge", kp, sl, "--out", filepath.Join(dir, "m1")}, code: 0, out: filepath.Join(dir, "m1"),
			stdout: []string{"merged 2 result(s), 2 cell(s)", "kube-proxy", "socket-lb", "2/2 cells got their expected verdict: PASS"}},
		{name: "a cell did not pass", args: []string{"report", "merge", kp, slFailed, "--out", filepath.Join(dir, "m2")}, code: 1, out: filepath.Join(dir, "m2"),
			stdout: []string{"1/2 cells got their expected verdict: FAIL"}},
		{name: "same cell twice", args: []string{"report", "merge", kp, sl, slFailed, "--out", filepath.Join(dir, "m3")}, code: 2,
			stderr: []string{"cell debian-stock/socket-lb/4.1/delete-pod is in both " + filepath.Join(sl, "result.json") + " and " + filepath.Join(slFailed, "result.json")}},
		{name: "other schema", args: []string{"report", "merge", kp, v9, "--out", filepath.Join(dir, "m4")}, code: 2,
			stderr: []string{v9, `schema "nfslab.result/v9", want "nfslab.result/v2"`}},
		{name: "output over an input", args: []string{"report", "merge", kp, sl, "--out", sl}, code: 2,
			stderr: []string{"--out " + sl + " holds " + filepath.Join(sl, "result.json")}},
		{name: "missing input", args: []string{"report", "merge", filepath.Join(dir, "nope"), "--out", filepath.Join(dir, "m5")}, code: 2,
			stderr: []string{"nope", "no such file"}},
		{name: "no input", args: []string{"report", "merge"}, code: 2, stderr: []string{"requires at least 1 arg"}},
		{name: "unwritable output", args: []string{"report", "merge", kp, "--out", filepath.Join(notDir, "sub")}, code: 3,
			stderr: []string{filepath.Join(notDir, "sub")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tt.args, &stdout, &stderr); code != tt.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout.String(), stderr.String())
			}
			for _, w := range tt.stdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			for _, w := range tt.stderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
			if tt.out == "" {
				if tt.code == 2 {
					for _, a := range tt.args {
						if strings.HasPrefix(a, filepath.Join(dir, "m")) {
							if _, err := os.Stat(a); err == nil {
								t.Errorf("bad input, yet %s was created", a)
							}
						}
					}
				}
				return
			}
			for _, f := range []string{reports.JSONFile, reports.MarkdownFile, reports.HTMLFile, reports.JUnitFile} {
				if _, err := os.Stat(filepath.Join(tt.out, f)); err != nil {
					t.Errorf("merged reports: %v", err)
				}
			}
			res, err := reports.ReadJSON(filepath.Join(tt.out, reports.JSONFile))
			if err != nil {
				t.Fatal(err)
			}
			if res.RunID != "r1+r2" && res.RunID != "r1+r3" || len(res.Cells) != 2 || res.Cells[1].Events[0].Cell != 1 {
				t.Errorf("merged result: run %s, %d cells", res.RunID, len(res.Cells))
			}
		})
	}
}
