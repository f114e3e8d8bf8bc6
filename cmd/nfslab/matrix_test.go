package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/scenarios"
)

func TestMatrixCmd(t *testing.T) {
	dir := t.TempDir()
	// 65 kernels × 2 datapaths × 2 NFS versions: more jobs than one GitHub matrix takes.
	var kernels []string
	for i := range 65 {
		kernels = append(kernels, fmt.Sprintf("/k/%d/bzImage", i))
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte("name: big\nmatrix:\n  kernels: ["+strings.Join(kernels, ", ")+"]\n  datapaths: [kube-proxy, socket-lb]\n  nfs: [\"4.1\", \"4.2\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: bad\nmatrix: {kernels: [debian-stock], datapaths: [ipvs]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cells := func(ref string) []scenario.Cell {
		s, err := scenario.Load(ref, scenarios.FS)
		if err != nil {
			t.Fatal(err)
		}
		return s.Cells()
	}

	t.Run("github", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"matrix", "-o", "github"}, &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		if n := strings.Count(stdout.String(), "\n"); n != 1 {
			t.Errorf("%d lines, want one (for $GITHUB_OUTPUT)", n)
		}
		var m struct {
			Include []map[string]string `json:"include"`
		}
		dec := json.NewDecoder(&stdout)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		want := cells("default")
		if len(m.Include) != len(want) || len(want) != 2 {
			t.Fatalf("%d entries, want the default scenario's 2 cells", len(m.Include))
		}
		for i, c := range want {
			got := m.Include[i]
			exp := map[string]string{"id": c.ID, "slug": strings.ReplaceAll(c.ID, "/", "_"), "scenario": "default",
				"kernel": c.Kernel, "cluster": "netns", "datapath": c.Datapath, "nfs": c.NFS, "fault": c.Fault, "expected": c.Expected}
			if !reflect.DeepEqual(got, exp) {
				t.Errorf("entry %d: %v, want %v", i, got, exp)
			}
		}
	})
	t.Run("json", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"matrix", "--scenario", "fidelity", "-o", "json"}, &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		var m struct {
			Scenario string        `json:"scenario"`
			Cells    []matrixEntry `json:"cells"`
		}
		if err := json.Unmarshal(stdout.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		if want := matrixEntries("fidelity", cells("fidelity")); m.Scenario != "fidelity" || !reflect.DeepEqual(m.Cells, want) {
			t.Errorf("got %+v\nwant %+v", m, want)
		}
		if m.Cells[3].ID != "vulnerable-6.1/socket-lb/4.1/delete-pod" || m.Cells[3].Expected != "bug-reproduced" {
			t.Errorf("last cell %+v, want the vulnerable socket-LB cell expecting the bug", m.Cells[3])
		}
	})
	t.Run("json takes any size", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if code := run([]string{"matrix", "--scenario", big}, &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		if n := strings.Count(stdout.String(), `"id"`); n != 260 {
			t.Errorf("%d cells, want 260", n)
		}
	})

	errs := []struct {
		name string
		args []string
		want []string
	}{
		{"unknown output", []string{"matrix", "-o", "yaml"}, []string{`-o "yaml"`, "github or json"}},
		{"unknown scenario", []string{"matrix", "--scenario", "nope"}, []string{`"nope"`}},
		{"invalid scenario", []string{"matrix", "--scenario", bad}, []string{bad, "matrix.datapaths[0]", "ipvs"}},
		{"too many jobs for GitHub", []string{"matrix", "--scenario", big, "-o", "github"}, []string{"260 cells", "at most 256"}},
		{"arguments", []string{"matrix", "fidelity"}, []string{"unknown command"}},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tt.args, &stdout, &stderr); code != exitUsage {
				t.Errorf("exit %d, want %d", code, exitUsage)
			}
			if stdout.Len() != 0 {
				t.Errorf("printed %q on bad input", stdout.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q lacks %q", stderr.String(), w)
				}
			}
		})
	}
}

func TestMatrixEntries(t *testing.T) {
	cells := []scenario.Cell{
		{ID: "a/b/4.1/f", Kernel: "a"},
		{ID: "a_b/4.1/f"},
		{ID: "k ü/d/3/f"},
	}
	var slugs []string
	for _, e := range matrixEntries("s.yaml", cells) {
		slugs = append(slugs, e.Slug)
		if e.Scenario != "s.yaml" {
			t.Errorf("%s: scenario %q", e.ID, e.Scenario)
		}
	}
	if want := []string{"a_b_4.1_f-0", "a_b_4.1_f-1", "k___d_3_f"}; !reflect.DeepEqual(slugs, want) {
		t.Errorf("slugs %q, want %q", slugs, want)
	}
}

// TestExampleWorkflow checks that examples/github-actions.yml agrees with the CLI: every nfslab
// command it runs exists and takes the flags it is given, and every matrix field it uses is one
// that `nfslab matrix -o github` prints.
func TestExampleWorkflow(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", "github-actions.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var wf struct {
		Jobs map[string]struct {
			Steps []struct {
				Run string `json:"run"`
			} `json:"steps"`
		} `json:"jobs"`
	}
	if err := yaml.Unmarshal(data, &wf); err != nil {
		t.Fatalf("examples/github-actions.yml: %v", err)
	}
	entry := matrixEntries("default", []scenario.Cell{{ID: "debian-stock/socket-lb/4.1/delete-pod", Kernel: "debian-stock"}})[0]
	fields := map[string]string{}
	b, _ := json.Marshal(entry)
	if err := json.Unmarshal(b, &fields); err != nil {
		t.Fatal(err)
	}
	for _, ref := range regexp.MustCompile(`[^.\w]matrix\.([a-z_]+)`).FindAllStringSubmatch(string(data), -1) {
		if _, ok := fields[ref[1]]; !ok {
			t.Errorf("the workflow uses matrix.%s, which nfslab matrix does not print", ref[1])
		}
	}
	expand := strings.NewReplacer("${{ matrix.scenario }}", entry.Scenario, "${{ matrix.id }}", entry.ID, "${{ matrix.slug }}", entry.Slug, "$SCENARIO", "default", `"`, "")
	var commands int
	for name, job := range wf.Jobs {
		for _, step := range job.Steps {
			for _, line := range strings.Split(step.Run, "\n") {
				_, cmdline, ok := strings.Cut(line, "./bin/nfslab ")
				if !ok {
					continue
				}
				cmdline, _, _ = strings.Cut(cmdline, ")") // inside $(…)
				args := strings.Fields(expand.Replace(cmdline))
				root := newRootCmd(io.Discard, io.Discard)
				sub, rest, err := root.Find(args)
				if err != nil || sub == root {
					t.Errorf("job %s: nfslab %s: no such command (%v)", name, cmdline, err)
					continue
				}
				if err := sub.ParseFlags(rest); err != nil {
					t.Errorf("job %s: nfslab %s: %v", name, cmdline, err)
				}
				commands++
			}
		}
	}
	if commands != 3 {
		t.Errorf("found %d nfslab commands in the workflow, want 3 (matrix, run --cell, report merge)", commands)
	}
}

// TestRunUnknownCell: an unknown --cell is bad input, reported with the valid IDs before
// anything is created.
func TestRunUnknownCell(t *testing.T) {
	reportDir := filepath.Join(t.TempDir(), "r")
	var stdout, stderr bytes.Buffer
	code := run([]string{"run", "--scenario", "fidelity", "--datapath", "socket-lb", "--cell", "debian-stock/kube-proxy/4.1/delete-pod", "--report-dir", reportDir}, &stdout, &stderr)
	if code != exitUsage {
		t.Errorf("exit %d, want %d", code, exitUsage)
	}
	for _, w := range []string{`--cell: no cell "debian-stock/kube-proxy/4.1/delete-pod" in scenario fidelity`,
		"\n  debian-stock/socket-lb/4.1/delete-pod\n  vulnerable-6.1/socket-lb/4.1/delete-pod"} {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("stderr %q lacks %q", stderr.String(), w)
		}
	}
	if _, err := os.Stat(reportDir); err == nil {
		t.Error("the report directory was created for bad input")
	}
}
