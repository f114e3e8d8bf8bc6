package reports

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Source is a result to merge and the file it was read from (named in errors).
type Source struct {
	Path   string
	Result *Result
}

// ReadSources reads the result.json files named by paths, in order. A path is a result.json
// file, a directory holding one (a run's report directory), or else a directory whose
// subdirectories hold them (one level down, in name order: where CI downloads artifacts).
// A file named twice is an error, like any file that is not a result of this schema.
func ReadSources(paths []string) ([]Source, error) {
	if len(paths) == 0 {
		return nil, errors.New("no results to read: name report directories or result.json files")
	}
	var files []string
	for _, p := range paths {
		found, err := resultFiles(p)
		if err != nil {
			return nil, err
		}
		files = append(files, found...)
	}
	seen := map[string]string{}
	srcs := make([]Source, 0, len(files))
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, fmt.Errorf("read result %s: %w", f, err)
		}
		if prev, dup := seen[abs]; dup {
			if prev == f {
				return nil, fmt.Errorf("%s is named twice", f)
			}
			return nil, fmt.Errorf("%s is named twice (also as %s)", f, prev)
		}
		seen[abs] = f
		r, err := ReadJSON(f)
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, Source{Path: f, Result: r})
	}
	return srcs, nil
}

// resultFiles finds the result.json files a path names.
func resultFiles(p string) ([]string, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("read result: %w", err)
	}
	if !fi.IsDir() {
		return []string{p}, nil
	}
	direct := filepath.Join(p, JSONFile)
	if _, err := os.Stat(direct); err == nil {
		return []string{direct}, nil
	}
	below, err := filepath.Glob(filepath.Join(p, "*", JSONFile))
	if err != nil {
		return nil, fmt.Errorf("read results under %s: %w", p, err)
	}
	if len(below) == 0 {
		return nil, fmt.Errorf("%s: no %s in it or in its subdirectories", p, JSONFile)
	}
	slices.Sort(below)
	return below, nil
}

// MergeOptions shape a merge.
type MergeOptions struct {
	// AllowPartial accepts that some of the scenario's cells have no result (a deliberate
	// subset): they are still listed in MissingCells, but do not fail the merge.
	AllowPartial bool
}

// Merge joins the results of cells run apart (on several machines, or one cell per CI job)
// into one result, as if they had run together:
//
//   - every result must be of schema Schema, of the same scenario with the same contents
//     (scenario_hash) and cell list, and hold at least one cell of that list;
//   - a cell ID may appear only once: the same cell in two results is an error that names both
//     files, whatever their verdicts (merge does not pick a winner);
//   - every cell of the scenario that no result holds is in MissingCells, and fails the merge
//     unless opts.AllowPartial;
//   - each cell's expectation is the scenario's, and its pass is computed again (Passes) from
//     its verdict and reason code, never read;
//   - cells keep the order of the sources, then their order within each; each cell's events
//     are renumbered to the cell's new index;
//   - run_id joins the distinct run IDs with "+", started_at is the earliest start and
//     finished_at the latest end; host fields are the value all results agree on, else their
//     distinct values joined with ", "; timings keep each phase's largest value (the slowest
//     machine);
//   - pass is true when every result passed, every cell passed and no cell is missing (or
//     missing ones are allowed).
//
// The sources are not changed.
func Merge(srcs []Source, opts MergeOptions) (*Result, error) {
	if len(srcs) == 0 {
		return nil, errors.New("merge: no results")
	}
	first := srcs[0]
	if first.Result == nil {
		return nil, fmt.Errorf("merge %s: no result", first.Path)
	}
	out := &Result{
		Schema: Schema, Pass: true, Timings: map[string]float64{}, Partial: opts.AllowPartial,
		Scenario: first.Result.Scenario, ScenarioHash: first.Result.ScenarioHash, ScenarioCells: first.Result.ScenarioCells,
	}
	expected := make(map[string]ScenarioCell, len(out.ScenarioCells))
	for _, sc := range out.ScenarioCells {
		expected[sc.ID] = sc
	}
	var runIDs, accels, qemus, kernels []string
	owner := map[string]string{} // cell ID → file
	for _, s := range srcs {
		r := s.Result
		if err := fits(s, first); err != nil {
			return nil, err
		}
		for _, c := range r.Cells {
			if prev, dup := owner[c.ID]; dup {
				return nil, fmt.Errorf("merge: cell %s is in both %s and %s", c.ID, prev, s.Path)
			}
			want, ok := expected[c.ID]
			if !ok {
				return nil, fmt.Errorf("merge %s: cell %s is not a cell of scenario %q", s.Path, c.ID, r.Scenario)
			}
			owner[c.ID] = s.Path
			c = renumbered(c, len(out.Cells))
			c.Expected, c.ExpectedReason = want.Expected, want.ExpectedReason
			c.Pass = Passes(c)
			out.Cells = append(out.Cells, c)
			out.Pass = out.Pass && c.Pass
		}
		out.Pass = out.Pass && r.Pass
		runIDs = appendNew(runIDs, r.RunID)
		accels, qemus, kernels = appendNew(accels, r.Host.Accel), appendNew(qemus, r.Host.QEMU), appendNew(kernels, r.Host.Kernel)
		if !r.StartedAt.IsZero() && (out.StartedAt.IsZero() || r.StartedAt.Before(out.StartedAt)) {
			out.StartedAt = r.StartedAt
		}
		if r.FinishedAt.After(out.FinishedAt) {
			out.FinishedAt = r.FinishedAt
		}
		for k, v := range r.Timings {
			out.Timings[k] = max(out.Timings[k], v)
		}
	}
	for _, sc := range out.ScenarioCells {
		if _, ok := owner[sc.ID]; !ok {
			out.MissingCells = append(out.MissingCells, sc.ID)
		}
	}
	if len(out.MissingCells) > 0 && !opts.AllowPartial {
		out.Pass = false
	}
	out.RunID = strings.Join(runIDs, "+")
	out.Host = Host{Accel: strings.Join(accels, ", "), QEMU: strings.Join(qemus, ", "), Kernel: strings.Join(kernels, ", ")}
	return out, nil
}

// fits checks that s can be merged with first: a result of this schema, of the same scenario,
// contents and cell list, holding at least one cell.
func fits(s, first Source) error {
	r, f := s.Result, first.Result
	switch {
	case r == nil:
		return fmt.Errorf("merge %s: no result", s.Path)
	case r.Schema != Schema:
		return fmt.Errorf("merge %s: schema %q, want %q (merge results written by the same nfslab version)", s.Path, r.Schema, Schema)
	case r.Scenario != f.Scenario:
		return fmt.Errorf("merge: %s is a result of scenario %q, %s of %q: merge only joins cells of one scenario", s.Path, r.Scenario, first.Path, f.Scenario)
	case r.ScenarioHash == "" || len(r.ScenarioCells) == 0:
		return fmt.Errorf("merge %s: the result does not say which cells its scenario has (no scenario_hash or scenario_cells), so the merge cannot tell which are missing", s.Path)
	case r.ScenarioHash != f.ScenarioHash:
		return fmt.Errorf("merge: %s and %s are results of different contents of scenario %q (%s, %s): another version of the file, or other --kernel, --cluster or --datapath; merge only joins runs of the same scenario", first.Path, s.Path, r.Scenario, f.ScenarioHash, r.ScenarioHash)
	case !slices.Equal(r.ScenarioCells, f.ScenarioCells):
		return fmt.Errorf("merge: %s and %s list different cells for the same contents of scenario %q", first.Path, s.Path, r.Scenario)
	case len(r.Cells) == 0:
		return fmt.Errorf("merge %s: the result holds no cell: a run that ran nothing stands for no cell of the scenario", s.Path)
	}
	return nil
}

// renumbered returns c with its events pointing at cell index i; c's events are not changed.
func renumbered(c Cell, i int) Cell {
	events := slices.Clone(c.Events)
	for j := range events {
		if events[j].Cell >= 0 {
			events[j].Cell = i
		}
	}
	c.Events = events
	return c
}

// appendNew appends v unless it is empty or already in list.
func appendNew(list []string, v string) []string {
	if v == "" || slices.Contains(list, v) {
		return list
	}
	return append(list, v)
}
