package reports

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestStartText(t *testing.T) {
	taken := time.Date(2026, 12, 5, 20, 40, 59, 0, time.UTC)
	tests := []struct {
		start *Start
		want  []string
	}{
		{nil, nil},
		{&Start{Mode: StartRestored, Seconds: 5.5, Snapshot: "booted/3a778b0ee625", SnapshotTaken: &taken, ClockSkewSeconds: -39.87, ClockSet: true, Reseeded: true},
			[]string{"restored in 5.5 s from snapshot booted/3a778b0ee625 (taken 2026-12-05T20:40:59Z)", "guest clock -39.9 s off the host's, set to it", "reseeded"}},
		{&Start{Mode: StartRestored, Seconds: 14, Snapshot: "cluster-ready/0123456789ab", ClockSkewSeconds: -600},
			[]string{"restored in 14.0 s from snapshot cluster-ready/0123456789ab", "-600.0 s off the host's, left to run on"}},
		{&Start{Mode: StartCold, Seconds: 11, Snapshot: "booted/3a778b0ee625"},
			[]string{"booted cold in 11.0 s, snapshot booted/3a778b0ee625 taken of it"}},
		{&Start{Mode: StartCold, Seconds: 11}, []string{"booted cold in 11.0 s; guest clock"}},
	}
	for _, tt := range tests {
		got := startText(Cell{Start: tt.start})
		if (got == "") != (tt.want == nil) {
			t.Errorf("startText(%+v) = %q", tt.start, got)
		}
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("startText(%+v) = %q, want it to say %q", tt.start, got, w)
			}
		}
	}
	// Every report says it.
	r := &Result{Cells: []Cell{{ID: "c", Start: tests[1].start}}}
	for name, render := range map[string]func() string{
		"markdown": func() string { var b bytes.Buffer; markdown(&b, r); return b.String() },
		"junit":    func() string { return evidenceText(r.Cells[0]) },
		"html":     func() string { return newHTMLCell(0, r.Cells[0]).Start },
	} {
		if !strings.Contains(render(), "restored in 5.5 s") {
			t.Errorf("the %s report does not say the VM was restored", name)
		}
	}
}
