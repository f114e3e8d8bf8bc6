package reports

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// split turns a run into one result per cell, as `nfslab run --cell` would have written them:
// each cell alone, its events numbered 0.
func split(r *Result) []*Result {
	var out []*Result
	for i, c := range r.Cells {
		one := *r
		one.RunID = r.RunID + "-" + string(rune('a'+i))
		one.StartedAt = r.StartedAt.Add(time.Duration(i) * time.Minute)
		one.FinishedAt = one.StartedAt.Add(30 * time.Second)
		one.Pass = c.Pass
		one.Timings = map[string]float64{"total": float64(10 + i), "image": 1}
		c.Events = append(c.Events[:0:0], c.Events...)
		for j := range c.Events {
			c.Events[j].Cell = 0
		}
		one.Cells = []Cell{c}
		out = append(out, &one)
	}
	return out
}

func sources(rs ...*Result) []Source {
	var out []Source
	for i, r := range rs {
		out = append(out, Source{Path: filepath.Join("job"+string(rune('1'+i)), JSONFile), Result: r})
	}
	return out
}

func TestMerge(t *testing.T) {
	whole := sample()
	whole.Cells = append(whole.Cells, stuckCell())
	for j := range whole.Cells[2].Events {
		whole.Cells[2].Events[j].Cell = 2
	}
	parts := split(whole)
	parts[1].Host = Host{Accel: "kvm", QEMU: whole.Host.QEMU, Kernel: "6.12.0"}
	before, _ := json.Marshal(parts)

	got, err := Merge(sources(parts...), MergeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := json.Marshal(parts); !bytes.Equal(before, after) {
		t.Error("Merge changed its sources")
	}
	// The cells are those of the run that had them together, events numbered as there.
	if !reflect.DeepEqual(got.Cells, whole.Cells) {
		t.Errorf("merged cells differ from the run's:\n got %+v\nwant %+v", got.Cells, whole.Cells)
	}
	var a, b bytes.Buffer
	Summary(&a, got)
	Summary(&b, whole)
	if tableOf(a.String()) != tableOf(b.String()) {
		t.Errorf("verdict table\n%s\nwant\n%s", tableOf(a.String()), tableOf(b.String()))
	}
	want := &Result{
		Schema: Schema, RunID: "20250301-120000-fidelity-a+20250301-120000-fidelity-b+20250301-120000-fidelity-c", Scenario: "fidelity",
		StartedAt: whole.StartedAt, FinishedAt: whole.StartedAt.Add(2*time.Minute + 30*time.Second),
		Host:  Host{Accel: "tcg, kvm", QEMU: whole.Host.QEMU, Kernel: "6.18.0, 6.12.0"},
		Cells: whole.Cells, Pass: false, Timings: map[string]float64{"total": 12, "image": 1},
		ScenarioHash: whole.ScenarioHash, ScenarioCells: whole.ScenarioCells,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("merged\n %+v\nwant\n %+v", got, want)
	}

	// pass only when every result passed and every cell did
	ok := split(sample())[0]
	if m, err := Merge(sources(ok), MergeOptions{AllowPartial: true}); err != nil || !m.Pass {
		t.Errorf("one passing result: pass %v, %v", m != nil && m.Pass, err)
	}
	labFailed := *split(sample())[1]
	labFailed.Pass = false
	labFailed.Cells = []Cell{{ID: "vulnerable-6.1/socket-lb/4.1/delete-pod", Verdict: "recovered", ReasonCode: "io-recovered"}}
	if m, err := Merge(sources(ok, &labFailed), MergeOptions{AllowPartial: true}); err != nil || m.Pass {
		t.Errorf("a result that did not pass, all cells passing: pass %v, %v", m != nil && m.Pass, err)
	}
}

// TestMergeMissing: the cells of the scenario that no result holds fail the merge, unless a
// subset is allowed; either way the merged result and its reports name them.
func TestMergeMissing(t *testing.T) {
	whole := sample()
	whole.Cells = whole.Cells[:1] // only the cell that passes
	whole.ScenarioCells[1].Expected = "recovered"
	parts := split(whole)
	for _, partial := range []bool{false, true} {
		got, err := Merge(sources(parts...), MergeOptions{AllowPartial: partial})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"bzImage/socket-lb/4.1/delete-pod", "vulnerable-6.1/socket-lb/4.1/delete-pod"}
		if !reflect.DeepEqual(got.MissingCells, want) || got.Partial != partial || got.Pass != partial {
			t.Errorf("partial %v: missing %q, partial %v, pass %v; want %q, pass %v", partial, got.MissingCells, got.Partial, got.Pass, want, partial)
		}
		var sum, page, html bytes.Buffer
		Summary(&sum, got)
		markdown(&page, got)
		if err := renderHTML(&html, got); err != nil {
			t.Fatal(err)
		}
		doc, err := junitXML(got)
		if err != nil {
			t.Fatal(err)
		}
		heading := "✘ Missing: 2 cell(s) of the scenario have no result"
		if partial {
			heading = "Not run: 2 cell(s) of the scenario, left out of this partial merge (--allow-partial)"
		}
		for _, out := range []string{sum.String(), page.String(), html.String()} {
			if !strings.Contains(out, heading) || !strings.Contains(out, want[0]) || !strings.Contains(out, want[1]) {
				t.Errorf("partial %v: the summary does not name the missing cells:\n%s", partial, out)
			}
		}
		var back jSuites
		if err := xml.Unmarshal(doc, &back); err != nil {
			t.Fatal(err)
		}
		wantErrors, wantSkipped := "2", "0"
		if partial {
			wantErrors, wantSkipped = "0", "2"
		}
		if back.Tests != "3" || back.Errors != wantErrors || back.Skipped != wantSkipped || !bytes.Contains(doc, []byte(`name="`+want[1]+`"`)) {
			t.Errorf("partial %v: junit.xml does not list the missing cells:\n%s", partial, doc)
		}
	}
}

// TestMergeRecomputesPass: a cell's stored pass and expectation are not trusted; the merge
// takes the scenario's expectation and computes pass from the verdict and reason code.
func TestMergeRecomputesPass(t *testing.T) {
	tests := []struct {
		name string
		mod  func(c *Cell, sc []ScenarioCell)
		pass bool
	}{
		{"as written", func(*Cell, []ScenarioCell) {}, true},
		{"a stored pass that lies", func(c *Cell, _ []ScenarioCell) { c.Verdict, c.ReasonCode = "failed", "io-stuck" }, false},
		{"a stored expectation that lies", func(c *Cell, sc []ScenarioCell) { sc[0].Expected = "bug-reproduced" }, false},
		{"a lab failure never passes", func(c *Cell, sc []ScenarioCell) {
			c.Verdict, c.ReasonCode, c.Expected = "failed", "setup-error: backend-a-serving", "failed"
			sc[0].Expected = "failed"
		}, false},
		{"the reason the scenario requires", func(c *Cell, sc []ScenarioCell) {
			c.Verdict, c.ReasonCode = "failed", "mount-refused: EINVAL"
			sc[0].Expected, sc[0].ExpectedReason = "failed", "mount-refused: EINVAL"
		}, true},
		{"another reason than the scenario requires", func(c *Cell, sc []ScenarioCell) {
			c.Verdict, c.ReasonCode = "failed", "mount-refused: ETIMEDOUT"
			sc[0].Expected, sc[0].ExpectedReason = "failed", "mount-refused: EINVAL"
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := split(sample())[0]
			r.ScenarioCells = append([]ScenarioCell(nil), r.ScenarioCells...)
			tt.mod(&r.Cells[0], r.ScenarioCells)
			got, err := Merge(sources(r), MergeOptions{AllowPartial: true})
			if err != nil {
				t.Fatal(err)
			}
			c := got.Cells[0]
			if c.Pass != tt.pass || got.Pass != tt.pass || c.Expected != r.ScenarioCells[0].Expected || c.ExpectedReason != r.ScenarioCells[0].ExpectedReason {
				t.Errorf("cell pass %v, result pass %v, expected %q %q; want pass %v, the scenario's expectation", c.Pass, got.Pass, c.Expected, c.ExpectedReason, tt.pass)
			}
		})
	}
}

// tableOf returns the verdict table of Summary's output (without the run line).
func tableOf(s string) string {
	_, table, _ := strings.Cut(s, "\n\n")
	return table
}

func TestMergeErrors(t *testing.T) {
	one := func(mod func(*Result)) *Result {
		r := split(sample())[0]
		mod(r)
		return r
	}
	base := one(func(*Result) {})
	tests := []struct {
		name string
		srcs []Source
		want []string
	}{
		{"nothing", nil, []string{"no results"}},
		{"same cell twice", sources(base, one(func(r *Result) { r.Cells[0].Verdict = "failed" })),
			[]string{"cell debian-stock/socket-lb/4.1/delete-pod is in both job1/result.json and job2/result.json"}},
		{"other scenario", sources(base, one(func(r *Result) { r.Scenario = "control"; r.Cells[0].ID = "x/y/4.1/z" })),
			[]string{"job2/result.json is a result of scenario \"control\", job1/result.json of \"fidelity\""}},
		{"other schema", sources(base, one(func(r *Result) { r.Schema = "nfslab.result/v1"; r.Cells[0].ID = "x/y/4.1/z" })),
			[]string{"job2/result.json", `schema "nfslab.result/v1", want "nfslab.result/v2"`}},
		{"other contents of the scenario", sources(base, one(func(r *Result) { r.ScenarioHash = "sha256:beef"; r.Cells[0].ID = "x/y/4.1/z" })),
			[]string{"job1/result.json and job2/result.json are results of different contents of scenario \"fidelity\" (sha256:0f1d, sha256:beef)"}},
		{"other cell list", sources(base, one(func(r *Result) { r.ScenarioCells = r.ScenarioCells[1:]; r.Cells[0].ID = "x/y/4.1/z" })),
			[]string{"job1/result.json and job2/result.json list different cells"}},
		{"no scenario identity", sources(base, one(func(r *Result) { r.ScenarioHash, r.ScenarioCells = "", nil })),
			[]string{"job2/result.json: the result does not say which cells its scenario has"}},
		{"zero cells", sources(base, one(func(r *Result) { r.Cells = nil })),
			[]string{"job2/result.json: the result holds no cell"}},
		{"a cell the scenario lacks", sources(base, one(func(r *Result) { r.Cells[0].ID = "x/y/4.1/z" })),
			[]string{"job2/result.json: cell x/y/4.1/z is not a cell of scenario \"fidelity\""}},
		{"no result", []Source{{Path: "x.json"}}, []string{"x.json: no result"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Merge(tt.srcs, MergeOptions{AllowPartial: true})
			if err == nil {
				t.Fatalf("merged: %+v", got)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestReadSources(t *testing.T) {
	root := t.TempDir()
	write := func(dir string, r *Result) string {
		t.Helper()
		if err := WriteJSON(filepath.Join(root, dir), r); err != nil {
			t.Fatal(err)
		}
		return filepath.Join(root, dir)
	}
	parts := split(sample())
	run := write("run", parts[0])
	write("artifacts/cell-2", parts[1])
	write("artifacts/cell-1", parts[0])
	if err := os.MkdirAll(filepath.Join(root, "artifacts", "not-a-result"), 0o755); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(root, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	v3 := filepath.Join(root, "v3.json")
	if err := os.WriteFile(v3, []byte(`{"schema":"nfslab.result/v3","cells":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(root, "broken.json")
	if err := os.WriteFile(broken, []byte(`{"schema":`), 0o644); err != nil {
		t.Fatal(err)
	}
	rel := func(ps ...string) []string {
		for i := range ps {
			ps[i], _ = filepath.Rel(root, ps[i])
		}
		return ps
	}
	tests := []struct {
		name  string
		paths []string
		files []string // relative to root
		err   []string
	}{
		{"report directory", []string{run}, []string{"run/result.json"}, nil},
		{"result file", []string{filepath.Join(run, JSONFile)}, []string{"run/result.json"}, nil},
		{"artifact directories, in name order", []string{filepath.Join(root, "artifacts")}, []string{"artifacts/cell-1/result.json", "artifacts/cell-2/result.json"}, nil},
		{"nothing", nil, nil, []string{"no results to read"}},
		{"missing", []string{filepath.Join(root, "nope")}, nil, []string{"nope", "no such file"}},
		{"no result in a directory", []string{empty}, nil, []string{empty, "no result.json in it or in its subdirectories"}},
		{"named twice", []string{run, filepath.Join(run, JSONFile)}, nil, []string{"is named twice"}},
		{"other schema", []string{v3}, nil, []string{v3, `schema "nfslab.result/v3"`}},
		{"not JSON", []string{broken}, nil, []string{broken}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srcs, err := ReadSources(tt.paths)
			if tt.err != nil {
				if err == nil {
					t.Fatalf("read %d sources, want an error", len(srcs))
				}
				for _, w := range tt.err {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var files []string
			for _, s := range srcs {
				files = append(files, s.Path)
				if s.Result == nil || len(s.Result.Cells) != 1 {
					t.Errorf("%s: %+v", s.Path, s.Result)
				}
			}
			if got := rel(files...); !reflect.DeepEqual(got, tt.files) {
				t.Errorf("files %q, want %q", got, tt.files)
			}
		})
	}
}

// FuzzMergeReports feeds arbitrary result.json files through the merge and every writer: no
// input may panic, and whatever merges renders into reports that parse.
func FuzzMergeReports(f *testing.F) {
	for _, r := range split(sample()) {
		b, _ := json.Marshal(r)
		f.Add(b)
	}
	const identity = `"scenario_hash":"sha256:0f1d","scenario_cells":[{"id":"debian-stock/socket-lb/4.1/delete-pod","expected":"recovered"},{"id":"bzImage/socket-lb/4.1/delete-pod","expected":"bug-reproduced"},{"id":"vulnerable-6.1/socket-lb/4.1/delete-pod","expected":"recovered"}]`
	f.Add([]byte(`{"schema":"nfslab.result/v2","scenario":"fidelity",` + identity + `,"cells":[{"id":"vulnerable-6.1/socket-lb/4.1/delete-pod","events":[{"mono_ns":-5,"probe":{"start_ns":9e18}}]}]}`))
	f.Add([]byte(`{"schema":"nfslab.result/v2","scenario":"fidelity",` + identity + `,"cells":[{"id":"debian-stock/socket-lb/4.1/delete-pod","reason_code":"setup-error: \u0000","reconnect_targets":["[::1]:2049",":"],"kernel_log":["\u0000"]}]}`))
	other := split(sample())[1]
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), JSONFile)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := ReadJSON(path)
		if err != nil {
			return
		}
		m, err := Merge([]Source{{Path: path, Result: r}, {Path: "other", Result: other}}, MergeOptions{})
		if err != nil {
			return
		}
		var page bytes.Buffer
		if err := renderHTML(&page, m); err != nil {
			t.Fatalf("report.html: %v", err)
		}
		doc, err := junitXML(m)
		if err != nil {
			t.Fatalf("junit.xml: %v", err)
		}
		var back jSuites
		if err := xml.Unmarshal(doc, &back); err != nil {
			t.Fatalf("junit.xml does not parse: %v", err)
		}
		var md bytes.Buffer
		markdown(&md, m)
	})
}
