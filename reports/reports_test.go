package reports

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab/event"
)

func f64(v float64) *float64 { return &v }

func sample() *Result {
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	return &Result{
		Schema:     Schema,
		RunID:      "20250301-120000-fidelity",
		Scenario:   "fidelity",
		StartedAt:  start,
		FinishedAt: start.Add(95 * time.Second),
		Host:       Host{Accel: "tcg", QEMU: "QEMU emulator version 7.2.0", Kernel: "6.18.0"},
		// The scenario's cells: these two and stuckCell's.
		ScenarioHash: "sha256:0f1d",
		ScenarioCells: []ScenarioCell{
			{ID: "debian-stock/socket-lb/4.1/delete-pod", Expected: "recovered"},
			{ID: "bzImage/socket-lb/4.1/delete-pod", Expected: "bug-reproduced"},
			{ID: "vulnerable-6.1/socket-lb/4.1/delete-pod", Expected: "recovered"},
		},
		Cells: []Cell{
			{
				ID: "debian-stock/socket-lb/4.1/delete-pod", Kernel: "debian-stock", KernelRelease: "6.1.0-56-amd64",
				Datapath: "socket-lb", NFS: "4.1", Fault: "delete-pod",
				Verdict: "recovered", Expected: "recovered", Pass: true, Reason: "I/O recovered 0.87s after backend B became ready", ReasonCode: "io-recovered",
				VIP: "10.96.0.50", BackendA: "10.0.0.11", BackendB: "10.0.0.12",
				MountAddrBefore: "10.96.0.50", MountAddrAfter: "10.96.0.50", RecoverySeconds: f64(0.8712),
				ReconnectTargets: []string{"10.0.0.12"},
				KernelLog:        []string{"nfs: server 10.96.0.50 not responding, still trying", "nfs: server 10.96.0.50 OK"},
				Phases:           map[string]float64{"mounted": 1.5, "backend-b-ready": 2.25},
				Events: []event.Event{
					{Mono: 10e9, Cell: 0, Kind: event.KindStep, Step: event.StepTopology},
					{Mono: 12.5e9, Cell: 0, Kind: event.KindStep, Step: event.StepMounted},
					{Mono: 13e9, Cell: 0, Kind: event.KindObserve, Phase: event.PhaseBefore, Mount: &event.MountObs{Addr: "10.96.0.50"}},
					{Mono: 16e9, Cell: 0, Kind: event.KindStep, Step: event.StepBackendBReady},
					{Mono: 16.87e9, Cell: 0, Kind: event.KindObserve, Probe: &event.ProbeObs{Seq: 3, OK: true, Seconds: 0.4, StartNS: 16.47e9, FinishNS: 16.87e9}},
					{Mono: 17e9, Cell: 0, Kind: event.KindCellDone, Verdict: &event.VerdictRecord{Verdict: "recovered", Reason: "io ok"}},
				},
			},
			{
				ID: "bzImage/socket-lb/4.1/delete-pod", Kernel: "/build/vuln/arch/x86/boot/bzImage", KernelRelease: "6.1.192",
				Datapath: "socket-lb", NFS: "4.1", Fault: "delete-pod",
				Verdict: "failed", Expected: "bug-reproduced", Pass: false,
				Reason: "I/O stuck 60.00s after backend B became ready; no reconnect seen", ReasonCode: "io-stuck",
				VIP: "10.96.0.50", BackendA: "10.0.0.11", BackendB: "10.0.0.12",
				Error: "a | pipe\nand a newline",
				Events: []event.Event{
					{Mono: 5e9, Cell: 1, Kind: event.KindStep, Step: event.StepTopology},
					{Mono: 7e9, Cell: 1, Kind: event.KindError, Step: event.StepMounted, Msg: "mount: timed out"},
				},
			},
		},
		Pass: false,
	}
}

func TestJSONRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		r    *Result
	}{
		{"full", sample()},
		{"empty lists", &Result{Schema: Schema, RunID: "x", Scenario: "s", Cells: []Cell{{ID: "a/b/c/d"}}}},
		{"no cells", &Result{RunID: "x", Scenario: "s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			before, _ := json.Marshal(tt.r)
			if err := WriteJSON(dir, tt.r); err != nil {
				t.Fatal(err)
			}
			if after, _ := json.Marshal(tt.r); !bytes.Equal(before, after) {
				t.Error("WriteJSON changed its input")
			}
			got, err := ReadJSON(filepath.Join(dir, JSONFile))
			if err != nil {
				t.Fatal(err)
			}
			if want := normalized(tt.r); !reflect.DeepEqual(got, want) {
				t.Errorf("round trip\ngot  %+v\nwant %+v", got, want)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("directory holds %d files, want only result.json", len(entries))
			}
		})
	}
}

func TestJSONLayout(t *testing.T) {
	dir := t.TempDir()
	if err := WriteJSON(dir, &Result{RunID: "x", Cells: []Cell{{ID: "c"}}}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		"{\n  \"schema\": \"nfslab.result/v2\",\n  \"run_id\": \"x\",",
		`"scenario_cells": []`, `"missing_cells": []`, `"reason_code": ""`,
		`"recovery_seconds": null`, `"reconnect_targets": []`, `"kernel_log": []`, `"phases": {}`, `"events": []`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("result.json lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, `"error"`) {
		t.Error("empty error written")
	}
	// Fields keep the model's order.
	if strings.Index(s, `"schema"`) > strings.Index(s, `"cells"`) || strings.Index(s, `"cells"`) > strings.Index(s, `"pass": false`) {
		t.Error("fields out of order")
	}
}

func TestReadJSONErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct{ name, path, want string }{
		{"missing", filepath.Join(dir, "none.json"), "no such file"},
		{"not json", write("bad.json", "{"), "unexpected end"},
		{"other schema", write("v3.json", `{"schema":"nfslab.result/v3"}`), `schema "nfslab.result/v3", want "nfslab.result/v2"`},
		{"older schema", write("v1.json", `{"schema":"nfslab.result/v1"}`), `schema "nfslab.result/v1", written by an older nfslab: it lacks the scenario's cell list and hash`},
		{"no schema", write("none2.json", `{}`), `schema ""`},
	}
	for _, tt := range tests {
		if _, err := ReadJSON(tt.path); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
	// Fields added by later versions of the same schema are ignored.
	if r, err := ReadJSON(write("newer.json", `{"schema":"nfslab.result/v2","run_id":"r","new_field":1}`)); err != nil || r.RunID != "r" {
		t.Errorf("newer fields: %v", err)
	}
	if err := WriteJSON(dir, nil); err == nil {
		t.Error("WriteJSON(nil) succeeded")
	}
	if err := WriteJSON(filepath.Join(write("file", ""), "sub"), sample()); err == nil {
		t.Error("WriteJSON under a file succeeded")
	}
}

func TestMarkdown(t *testing.T) {
	dir := t.TempDir()
	if err := WriteMarkdown(dir, sample()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, MarkdownFile))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		"# nfslab: fidelity — FAIL",
		"- Run: `20250301-120000-fidelity`",
		"- Host: accel tcg, kernel 6.18.0, QEMU emulator version 7.2.0",
		"took 1m35s",
		"- Cells: 1 of 2 got their expected verdict",
		"| debian-stock (6.1.0-56-amd64) | socket-lb | 4.1 | delete-pod | ✔ recovered | recovered | 0.87 | 10.96.0.50 → 10.96.0.50 | 10.0.0.12 |",
		"| bzImage (6.1.192) | socket-lb | 4.1 | delete-pod | ✘ failed | bug-reproduced | — | — → — | — |",
		"## ✔ debian-stock/socket-lb/4.1/delete-pod",
		"| 0.00 | topology-ready |",
		"| 2.50 | mounted |",
		"| 6.00 | backend-b-ready |",
		"| 7.00 | agent verdict: recovered |",
		"| 2.00 | error in mounted: mount: timed out |",
		"nfs: server 10.96.0.50 OK",
		`Error: a \| pipe and a newline`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("summary.md lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(s)
	}
	if err := WriteMarkdown(dir, nil); err == nil {
		t.Error("WriteMarkdown(nil) succeeded")
	}
}

func TestSummary(t *testing.T) {
	tests := []struct {
		name string
		r    *Result
		want []string
	}{
		{"sample", sample(), []string{
			"fidelity  run 20250301-120000-fidelity  accel tcg",
			"KERNEL", "RECONNECTS",
			"debian-stock (6.1.0-56-amd64)  socket-lb  4.1  delete-pod  ✔ recovered",
			"0.87s", "10.96.0.50 → 10.96.0.50",
			"✘ bzImage/socket-lb/4.1/delete-pod: I/O stuck 60.00s after backend B became ready; no reconnect seen",
			"1/2 cells got their expected verdict: FAIL",
		}},
		{"pass", &Result{Scenario: "s", Pass: true, Cells: []Cell{{ID: "a", Pass: true, Verdict: "recovered"}}}, []string{"1/1 cells got their expected verdict: PASS"}},
		{"nil", nil, []string{"no result"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			Summary(&b, tt.r)
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("summary lacks %q:\n%s", w, b.String())
				}
			}
		})
	}
}

func TestConnectSummary(t *testing.T) {
	c := func(phase event.Phase, src, in, out, action string) event.Event {
		return event.Event{Kind: event.KindObserve, Phase: phase, Connect: &event.ConnectObs{Source: src, Input: in, Output: out, Action: action, Kernel: true, Comm: "kworker/u4:1"}}
	}
	byProcess := c(event.PhaseAfter, "socket-lb", "10.0.0.11:2049", "10.0.0.11:2049", "non-vip")
	byProcess.Connect.Kernel, byProcess.Connect.PID, byProcess.Connect.Comm = false, 812, "curl"
	events := []event.Event{
		c(event.PhaseBefore, "kprobe:kernel_connect", "10.96.0.50:2049", "", ""),
		c(event.PhaseAfter, "kprobe:kernel_connect", "10.0.0.11:2049", "", ""),
		c(event.PhaseAfter, "socket-lb", "10.0.0.11:2049", "10.0.0.11:2049", "non-vip"),
		byProcess,
		c(event.PhaseAfter, "kprobe:kernel_connect", "10.0.0.11:2049", "", ""),
		{Kind: event.KindStep, Step: event.StepIOStuck, Phase: event.PhaseAfter},
	}
	refused := event.Event{Kind: event.KindObserve, Phase: event.PhaseAfter, Failed: &event.ConnectFailed{Source: "kretprobe:kernel_connect", Input: "10.96.0.50:2049", Errno: "EPERM", Comm: "kworker/u4:1"}}
	events = append(events, refused, refused)
	got := connectSummary(events, event.PhaseAfter)
	want := []connectRow{
		{source: "kprobe:kernel_connect", caller: "the kernel", in: "10.0.0.11:2049", n: 2},
		{source: "socket-lb", caller: "the kernel", in: "10.0.0.11:2049", out: "10.0.0.11:2049", action: "non-vip", n: 1},
		{source: "socket-lb", caller: "process 812 (curl)", in: "10.0.0.11:2049", out: "10.0.0.11:2049", action: "non-vip", n: 1},
		{source: "kretprobe:kernel_connect", caller: "the kernel (kworker/u4:1)", in: "10.96.0.50:2049", action: "failed: EPERM", n: 2},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("connectSummary = %+v, want %+v", got, want)
	}
}

// TestConnectEvidence: a cell that reached its fault shows the connects after it; one that ended
// before it (its mount of the VIP timed out) shows those before it.
func TestConnectEvidence(t *testing.T) {
	connect := func(phase event.Phase, in string) event.Event {
		return event.Event{Kind: event.KindObserve, Phase: phase, Connect: &event.ConnectObs{Source: "kprobe:kernel_connect", Input: in, Kernel: true, Comm: "kworker/u4:0"}}
	}
	tests := []struct {
		name     string
		events   []event.Event
		wantIn   string
		wantN    int
		wantWhen string
	}{
		{"after the fault", []event.Event{connect(event.PhaseBefore, "10.96.0.50:2049"), connect(event.PhaseAfter, "10.244.0.1:2049")},
			"10.244.0.1:2049", 1, "after the fault"},
		{"the cell ended before its fault", []event.Event{connect(event.PhaseBefore, "10.96.0.50:2049"), connect(event.PhaseBefore, "10.96.0.50:2049")},
			"10.96.0.50:2049", 2, "before the fault (the cell ended before it)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, when := connectEvidence(tt.events)
			if len(rows) != 1 || rows[0].in != tt.wantIn || rows[0].n != tt.wantN || when != tt.wantWhen {
				t.Errorf("connectEvidence = %+v, %q; want one row of %s ×%d, %q", rows, when, tt.wantIn, tt.wantN, tt.wantWhen)
			}
		})
	}
}
