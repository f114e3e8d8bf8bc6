package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/nfslab/nfslab/lab"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/reports"
)

// recoveredTimeline is a cell's timeline that lab.Judge finds recovered.
func recoveredTimeline() []event.Event {
	return []event.Event{
		{Mono: 1e9, Kind: event.KindStep, Step: event.StepTopology},
		{Mono: 2e9, Kind: event.KindStep, Step: event.StepBaselineIO},
		{Mono: 3e9, Kind: event.KindStep, Step: event.StepFaultInjected},
		{Mono: 4e9, Kind: event.KindStep, Step: event.StepBackendBReady, Phase: event.PhaseAfter},
		{Mono: 5e9, Kind: event.KindObserve, Phase: event.PhaseAfter, Probe: &event.ProbeObs{Seq: 1, OK: true, StartNS: 4.5e9, FinishNS: 5e9}},
	}
}

// writeShard writes, under dir, the result `nfslab run --scenario ref --cell id` would write
// for a cell with this timeline: lab.NewResult, the cell judged by lab.Judge.
func writeShard(t *testing.T, dir, ref, id string, events []event.Event) {
	t.Helper()
	res, c := shard(t, ref, id)
	res.RunID = "run-" + slug(id)
	res.Cells[0] = lab.Judge(c, events, true)
	res.Pass = res.Cells[0].Pass
	if err := reports.WriteJSON(dir, res); err != nil {
		t.Fatal(err)
	}
}

// workflowMerge returns the arguments of the report job's `nfslab report merge` in
// examples/github-actions.yml, which reads the artifacts from results/ and writes merged/.
func workflowMerge(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../examples/github-actions.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if _, cmd, ok := strings.Cut(line, "run: ./bin/nfslab report merge"); ok {
			return append([]string{"report", "merge"}, strings.Fields(cmd)...)
		}
	}
	t.Fatal("examples/github-actions.yml runs no nfslab report merge")
	return nil
}

// TestFanoutMissingArtefact is the CI fan-out of examples/github-actions.yml without VMs: the
// matrix job's `nfslab matrix -o github`, one artifact directory per cell job where the report
// job downloads them (results/nfslab-<slug>), one of them lost (the job crashed before writing
// its result, or uploaded nothing), and the report job's own `nfslab report merge` line, which
// must fail (exit 1) naming the missing cell — unless --allow-partial says the subset was meant,
// and then the summary says which cell did not run.
func TestFanoutMissingArtefact(t *testing.T) {
	mergeArgs := workflowMerge(t)
	t.Chdir(t.TempDir())
	var stdout, stderr bytes.Buffer
	if code := run([]string{"matrix", "--scenario", "default", "-o", "github"}, &stdout, &stderr); code != 0 {
		t.Fatalf("nfslab matrix: exit %d: %s", code, stderr.String())
	}
	var m struct {
		Include []matrixEntry `json:"include"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &m); err != nil || len(m.Include) < 2 {
		t.Fatalf("nfslab matrix -o github: %v, %d cells", err, len(m.Include))
	}
	for _, job := range m.Include {
		writeShard(t, filepath.Join("results", "nfslab-"+job.Slug), job.Scenario, job.ID, recoveredTimeline())
	}
	merge := func(extra ...string) (int, string) {
		var stdout, stderr bytes.Buffer
		code := run(append(slices.Clone(mergeArgs), extra...), &stdout, &stderr)
		return code, stdout.String() + stderr.String()
	}
	if code, out := merge(); code != 0 {
		t.Fatalf("every artifact there: %v: exit %d, want 0\n%s", mergeArgs, code, out)
	}

	lost := m.Include[len(m.Include)-1]
	if err := os.RemoveAll(filepath.Join("results", "nfslab-"+lost.Slug)); err != nil {
		t.Fatal(err)
	}
	code, out := merge()
	if code != 1 || !strings.Contains(out, "Missing: 1 cell(s) of the scenario have no result") || !strings.Contains(out, lost.ID) {
		t.Errorf("one artifact deleted: %v: exit %d, want 1 naming %s\n%s", mergeArgs, code, lost.ID, out)
	}
	res, err := reports.ReadJSON(filepath.Join("merged", reports.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	if res.Pass || !reflect.DeepEqual(res.MissingCells, []string{lost.ID}) || len(res.Cells) != len(m.Include)-1 {
		t.Errorf("merged result: pass %v, missing %q, %d cells", res.Pass, res.MissingCells, len(res.Cells))
	}

	code, out = merge("--allow-partial")
	if code != 0 || !strings.Contains(out, "Not run: 1 cell(s) of the scenario, left out of this partial merge (--allow-partial)") || !strings.Contains(out, lost.ID) {
		t.Errorf("--allow-partial: exit %d, want 0 listing %s as not run\n%s", code, lost.ID, out)
	}
}

// TestMergeLabFailure: a cell that expects failed (NFSv3 over UDP on Debian's kernel, which has
// no UDP transport) passes when the kernel refused the mount as the scenario says, and is a lab
// failure (exit 3), never an expected failed, when the lab broke before the question.
func TestMergeLabFailure(t *testing.T) {
	const id = "debian-stock/kube-proxy/3-udp/delete-pod"
	setup := []event.Event{{Mono: 1e9, Kind: event.KindStep, Step: event.StepTopology}}
	refused := append(setup, event.Event{Mono: 2e9, Kind: event.KindError, Step: event.StepMounted, Errno: "EINVAL",
		Msg: "mount 10.96.0.50:/export on /mnt/nfs (nfs, \"vers=3,proto=udp\"): invalid argument: NFS over UDP is compiled out of this kernel"})
	tests := []struct {
		name   string
		events []event.Event
		code   int
		out    string
	}{
		{"the kernel refused the mount", refused, 0, "1/1 cells got their expected verdict: PASS"},
		{"ganesha did not start", append(setup, event.Event{Mono: 2e9, Kind: event.KindError, Step: event.StepBackendServing, Msg: "ganesha exited"}), 3,
			"the lab itself failed in 1 cell(s), which got no verdict about the system under test: " + id + " (setup-error: backend-a-serving)"},
		{"the mount timed out", append(setup, event.Event{Mono: 2e9, Kind: event.KindError, Step: event.StepMounted, Msg: "mount: abandoned: context deadline exceeded"}), 3,
			id + " (setup-error: mounted)"},
		{"the kernel refused the mount otherwise", append(setup, event.Event{Mono: 2e9, Kind: event.KindError, Step: event.StepMounted, Errno: "ETIMEDOUT", Msg: "timed out"}), 1,
			"0/1 cells got their expected verdict: FAIL"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeShard(t, filepath.Join(dir, "results", "one"), "nfs-versions", id, tt.events)
			var stdout, stderr bytes.Buffer
			code := run([]string{"report", "merge", filepath.Join(dir, "results"), "--allow-partial", "--out", filepath.Join(dir, "merged")}, &stdout, &stderr)
			if code != tt.code || !strings.Contains(stdout.String()+stderr.String(), tt.out) {
				t.Errorf("case %d: exit %d, want %d with %q\n%s%s", i, code, tt.code, tt.out, stdout.String(), stderr.String())
			}
		})
	}
}
