package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nfslab/nfslab/reports"
)

// matrixJob is the part of an `nfslab matrix -o github` entry a CI job uses.
type matrixJob struct {
	ID       string `json:"id"`
	Slug     string `json:"slug"`
	Scenario string `json:"scenario"`
}

// verdictRow is a row of the verdict table: what must not depend on where a cell ran.
type verdictRow struct {
	ID, Kernel, Datapath, NFS, Fault, Verdict, Expected string
	Pass                                                bool
}

func verdictTable(r *reports.Result) []verdictRow {
	var rows []verdictRow
	for _, c := range r.Cells {
		rows = append(rows, verdictRow{c.ID, c.Kernel, c.Datapath, c.NFS, c.Fault, c.Verdict, c.Expected, c.Pass})
	}
	return rows
}

// nfslabOut runs a quick nfslab command (no VM) and returns its standard output and exit code.
func nfslabOut(ctx context.Context, t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("nfslab %s:\n%s%s", strings.Join(args, " "), stdout.String(), stderr.String())
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return stdout.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("nfslab %v: %v", args, err)
	}
	return stdout.String(), 0
}

// TestFanout is the CI fan-out round trip of issue #8: expand the default scenario with
// `nfslab matrix`, run two of its cells apart with `nfslab run --cell` (as two CI jobs would),
// merge their report directories with `nfslab report merge`, and check that the merged verdict
// table is the one a run of both cells together gets — and that the merge fails (exit 1), naming
// the cell, when one job's artifact is lost (issue #14).
func TestFanout(t *testing.T) {
	requireE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	bin := buildNfslab(t)
	root, tmp := t.TempDir(), t.TempDir()

	out, code := nfslabOut(ctx, t, bin, "matrix", "-o", "github")
	if code != 0 {
		t.Fatalf("nfslab matrix: exit %d", code)
	}
	var m struct {
		Include []matrixJob `json:"include"`
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("nfslab matrix -o github: %v", err)
	}
	if len(m.Include) != 2 {
		t.Fatalf("the default scenario expands to %d cells, want 2", len(m.Include))
	}

	// One job per cell, each with its own report directory, as CI artifacts are downloaded.
	artifacts := filepath.Join(root, "artifacts")
	for _, job := range m.Include {
		dir := filepath.Join(artifacts, "nfslab-"+job.Slug)
		if code := runNfslab(ctx, t, bin, tmp, "run", "--scenario", job.Scenario, "--cell", job.ID, "--report-dir", dir); code != 0 {
			t.Fatalf("nfslab run --cell %s: exit %d, want 0", job.ID, code)
		}
		for _, f := range []string{reports.JSONFile, reports.MarkdownFile, reports.HTMLFile, reports.JUnitFile} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Errorf("run --cell %s: %v", job.ID, err)
			}
		}
		res, err := reports.ReadJSON(filepath.Join(dir, reports.JSONFile))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Cells) != 1 || res.Cells[0].ID != job.ID {
			t.Fatalf("run --cell %s ran %d cells: %+v", job.ID, len(res.Cells), verdictTable(res))
		}
	}

	merged := filepath.Join(root, "merged")
	if _, code := nfslabOut(ctx, t, bin, "report", "merge", artifacts, "--out", merged); code != 0 {
		t.Fatalf("nfslab report merge: exit %d, want 0", code)
	}
	// A job whose artifact is lost (it crashed before writing its result, or uploaded nothing)
	// must fail the report job, naming the cell; --allow-partial accepts a deliberate subset.
	lost := m.Include[len(m.Include)-1]
	partial := filepath.Join(root, "partial")
	if err := os.MkdirAll(partial, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, job := range m.Include[:len(m.Include)-1] {
		if err := os.Rename(filepath.Join(artifacts, "nfslab-"+job.Slug), filepath.Join(partial, "nfslab-"+job.Slug)); err != nil {
			t.Fatal(err)
		}
	}
	if out, code := nfslabOut(ctx, t, bin, "report", "merge", partial, "--out", filepath.Join(root, "merged-partial")); code != 1 || !strings.Contains(out, lost.ID) {
		t.Errorf("nfslab report merge with the artifact of %s lost: exit %d, want 1 naming it", lost.ID, code)
	}
	if out, code := nfslabOut(ctx, t, bin, "report", "merge", partial, "--allow-partial", "--out", filepath.Join(root, "merged-allowed")); code != 0 || !strings.Contains(out, "Not run: 1 cell(s)") {
		t.Errorf("nfslab report merge --allow-partial with the artifact of %s lost: exit %d, want 0 listing it as not run", lost.ID, code)
	}
	together := filepath.Join(root, "together")
	if code := runNfslab(ctx, t, bin, tmp, "run", "--report-dir", together); code != 0 {
		t.Fatalf("nfslab run: exit %d, want 0", code)
	}

	got, err := reports.ReadJSON(filepath.Join(merged, reports.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	want, err := reports.ReadJSON(filepath.Join(together, reports.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	// Each side's verdicts are the ground truth's, not only each other's.
	for _, c := range append(slices.Clone(got.Cells), want.Cells...) {
		checkVerdict(t, c)
	}
	if !reflect.DeepEqual(verdictTable(got), verdictTable(want)) || got.Pass != want.Pass {
		t.Errorf("merged verdict table (pass %v)\n%+v\nwant, as run together (pass %v)\n%+v", got.Pass, verdictTable(got), want.Pass, verdictTable(want))
	}
	for i, c := range got.Cells {
		for _, e := range c.Events {
			if e.Cell != i {
				t.Fatalf("merged cell %d has an event of cell %d", i, e.Cell)
			}
		}
		t.Logf("%s: %s (%s), recovery %v s merged / %v s together, reconnects %v / %v", c.ID, c.Verdict, c.Reason,
			deref(c.RecoverySeconds), deref(want.Cells[i].RecoverySeconds), c.ReconnectTargets, want.Cells[i].ReconnectTargets)
	}

	// The other merged reports name the same cells.
	doc, err := os.ReadFile(filepath.Join(merged, reports.JUnitFile))
	if err != nil {
		t.Fatal(err)
	}
	var junit struct {
		Tests  int `xml:"tests,attr"`
		Suites []struct {
			Cases []struct {
				Name string `xml:"name,attr"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(doc, &junit); err != nil {
		t.Fatalf("merged junit.xml: %v", err)
	}
	page, err := os.ReadFile(filepath.Join(merged, reports.HTMLFile))
	if err != nil {
		t.Fatal(err)
	}
	if junit.Tests != len(want.Cells) || len(junit.Suites) != 1 || len(junit.Suites[0].Cases) != len(want.Cells) {
		t.Fatalf("merged junit.xml: %+v", junit)
	}
	for i, c := range want.Cells {
		if junit.Suites[0].Cases[i].Name != c.ID {
			t.Errorf("junit testcase %d is %s, want %s", i, junit.Suites[0].Cases[i].Name, c.ID)
		}
		if !bytes.Contains(page, []byte(`data-cell="`+c.ID+`"`)) {
			t.Errorf("merged report.html has no row for %s", c.ID)
		}
	}
}

func deref(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}
