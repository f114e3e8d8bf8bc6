package doctor

import (
	"bytes"
	"strings"
	"testing"

	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/scenarios"
)

// TestRequiredFixesNameLabCells checks each required fix's claim against the built-in
// scenarios: a shown_by cell exists and is expected to reproduce the bug (a kernel without the
// fix hangs there); a not_shown fix names a scenario whose cells of the kernel lacking only that
// fix are expected to recover.
func TestRequiredFixesNameLabCells(t *testing.T) {
	expected := func(scen string) map[string]string {
		t.Helper()
		s, err := scenario.Load(scen, scenarios.FS)
		if err != nil {
			t.Fatalf("scenario %s: %v", scen, err)
		}
		out := map[string]string{}
		for _, c := range s.Cells() {
			out[c.ID] = c.Expected
		}
		return out
	}
	for _, f := range loadTable(t).Fixes {
		if !f.Required {
			continue
		}
		switch {
		case f.ShownBy != "":
			scen, cell, _ := strings.Cut(f.ShownBy, ":")
			cell = strings.TrimSpace(cell)
			got, ok := expected(strings.TrimSpace(scen))[cell]
			if !ok {
				t.Errorf("%s: shown_by %q: the scenario has no such cell", f.ID, f.ShownBy)
			} else if got != "bug-reproduced" {
				t.Errorf("%s: shown_by %q: the cell expects %s, want bug-reproduced", f.ID, f.ShownBy, got)
			}
		case f.ID == "msg_namelen":
			cells := expected("namelen")
			for _, id := range []string{"namelen-6.1/socket-lb/4.1/delete-pod", "namelen-6.1/socket-lb/3-udp/delete-pod"} {
				if cells[id] != "recovered" {
					t.Errorf("%s: not_shown rests on %s recovering; the namelen scenario expects %q", f.ID, id, cells[id])
				}
			}
		default:
			t.Errorf("%s: required and not shown by a cell: pin the cells its not_shown names here", f.ID)
		}
	}
}

// TestTextNamesLabEvidence checks that doctor's text output says, for a kernel lacking a
// required fix, which cell hangs without it or why it is listed though none does.
func TestTextNamesLabEvidence(t *testing.T) {
	rep := loadTable(t).AssessString("6.6.0")
	if rep.Verdict != NotFixed {
		t.Fatalf("6.6.0: %s (%s), want not-fixed", rep.Verdict, rep.Reason)
	}
	var out bytes.Buffer
	if err := WriteText(&out, KernelOnly(rep)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"kernel_connect: hangs without it: nfslab run --scenario fidelity --cell vulnerable-6.1/socket-lb/4.1/delete-pod",
		"msg_namelen: no lab cell hangs without it: namelen-6.1",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("text output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRequiredFixNeedsLabEvidence(t *testing.T) {
	for name, yaml := range map[string]string{
		"neither": `fixes: [{id: a, commit: "1", title: t, required: true}]`,
		"both":    `fixes: [{id: a, commit: "1", title: t, required: true, shown_by: "s: k/d/4.1/f", not_shown: why}]`,
		"bad ref": `fixes: [{id: a, commit: "1", title: t, required: true, shown_by: "fidelity"}]`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseTable([]byte(yaml + "\nlines:\n  - {line: mainline, kind: mainline, rows: [{fix: a, first: \"6.6-rc5\", source: s}]}\n"))
			if err == nil || !strings.Contains(err.Error(), "shown_by") {
				t.Errorf("ParseTable error = %v, want one about shown_by", err)
			}
		})
	}
}
