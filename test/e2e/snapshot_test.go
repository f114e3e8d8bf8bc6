package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/snapshot"
	"github.com/nfslab/nfslab/reports"
)

// restoredRun runs scenario with every VM restored from a snapshot: a first run takes the
// snapshots this binary lacks (or restores those an earlier test took), so a second one runs
// when the first booted any VM cold.
func restoredRun(ctx context.Context, t *testing.T, bin, scenario string, wantCells int) *reports.Result {
	t.Helper()
	res := runScenario(ctx, t, bin, scenario, wantCells)
	if !allStarted(res, reports.StartRestored) {
		res = runScenario(ctx, t, bin, scenario, wantCells)
	}
	if !allStarted(res, reports.StartRestored) {
		t.Fatalf("a run after the snapshots were taken still booted cold: %v", starts(res))
	}
	return res
}

// checkEquivalent checks that a run with every VM booted cold and one with every VM restored
// agree cell by cell: the same verdict and reason code, and the same kinds of evidence (a
// reconnect to the dead backend or the new one, SUNRPC itself seen asking for the dead one,
// which tracers saw the kernel's own connects), and that the agent reseeded each guest's
// generator and measured its clock.
func checkEquivalent(t *testing.T, cold, restored *reports.Result) {
	t.Helper()
	if !allStarted(cold, reports.StartCold) {
		t.Fatalf("--no-snapshot restored a VM: %v", starts(cold))
	}
	for i, w := range restored.Cells {
		c := cold.Cells[i]
		if c.Start.Snapshot != "" {
			t.Errorf("%s: --no-snapshot took snapshot %s", c.ID, c.Start.Snapshot)
		}
		if w.Verdict != c.Verdict || w.ReasonCode != c.ReasonCode {
			t.Errorf("%s: restored %s (%s), cold %s (%s)", c.ID, w.Verdict, w.ReasonCode, c.Verdict, c.ReasonCode)
		}
		if got, want := evidenceKinds(w), evidenceKinds(c); !slices.Equal(got, want) {
			t.Errorf("%s: evidence restored %v, cold %v", c.ID, got, want)
		}
		if !w.Start.Reseeded || !c.Start.Reseeded {
			t.Errorf("%s: RNG reseeded: restored %v, cold %v", c.ID, w.Start.Reseeded, c.Start.Reseeded)
		}
		t.Logf("%s: %s: restored in %.1f s from %s (guest clock %+.1f s), cold boot %.1f s", c.ID, w.Verdict,
			w.Start.Seconds, w.Start.Snapshot, w.Start.ClockSkewSeconds, c.Start.Seconds)
	}
}

// TestSnapshotFaults damages the snapshot a run restores from and checks that the run says so
// in one line, boots cold, passes, and takes the snapshot again, which the next run restores.
func TestSnapshotFaults(t *testing.T) {
	requireE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	bin := buildNfslab(t)
	cell := "debian-stock/kube-proxy/4.1/delete-pod"
	run := func() (string, reports.Cell) {
		t.Helper()
		dir := t.TempDir()
		args := []string{"run", "--cell", cell, "--report-dir", dir}
		if *cacheDir != "" {
			args = append(args, "--cache-dir", *cacheDir)
		}
		out, code := nfslabOut(ctx, t, bin, args...)
		if code != 0 {
			t.Fatalf("nfslab run --cell %s: exit code %d", cell, code)
		}
		res, err := reports.ReadJSON(filepath.Join(dir, "result.json"))
		if err != nil {
			t.Fatal(err)
		}
		return out, res.Cells[0]
	}
	_, c := run()
	if c.Start.Mode == reports.StartCold {
		_, c = run()
	}
	if c.Start.Mode != reports.StartRestored {
		t.Fatalf("the run after a snapshot was taken was not restored: %+v", c.Start)
	}
	// Two VMs restored from one state reseed their generators with the host's bytes: SUNRPC
	// picks its reserved source port at random, so they connect from different ports (a run
	// more when the 1-in-358 chance makes two equal).
	_, c2 := run()
	if c2.Start.Snapshot != c.Start.Snapshot || c2.Start.Mode != reports.StartRestored {
		t.Fatalf("second restore: %+v, want the snapshot %s restored", c2.Start, c.Start.Snapshot)
	}
	if a, b := sourcePort(c), sourcePort(c2); a == "" || a == b {
		_, c3 := run()
		if d := sourcePort(c3); a == "" || d == a {
			t.Errorf("three VMs restored from one snapshot connected from %q, %q, %q: want their own ports", a, b, d)
		}
	}
	dir := snapshotDir(t, c.Start.Snapshot)
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
		line   string
	}{
		// A state of the right size whose bytes are wrong: only qemu (zstd's checksum) can
		// tell. Truncated files and snapshots of another qemu are found before qemu starts
		// (lab/snapshot's unit tests).
		{"corrupt state", func(t *testing.T, dir string) {
			f, err := os.OpenFile(filepath.Join(dir, "state.zst"), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, _ := f.Stat()
			if _, err := f.WriteAt(make([]byte, 4096), st.Size()/2); err != nil {
				t.Fatal(err)
			}
		}, "could not be restored, removed it; booting cold and taking it again"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.damage(t, dir)
			out, c := run()
			if n := strings.Count(out, tt.line); n != 1 {
				t.Errorf("the run said %q %d times, want once", tt.line, n)
			}
			if c.Start.Mode != reports.StartCold || c.Start.Snapshot == "" {
				t.Errorf("start %+v: want a cold boot that took the snapshot again", c.Start)
			}
			checkVerdict(t, c)
			_, again := run()
			if again.Start.Mode != reports.StartRestored {
				t.Errorf("the run after the snapshot was taken again: %+v, want restored", again.Start)
			}
		})
	}
}

// snapshotDir finds the cache directory of the snapshot named name (point/short key).
func snapshotDir(t *testing.T, name string) string {
	t.Helper()
	dir := *cacheDir
	if dir == "" {
		d, err := image.DefaultCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		dir = d
	}
	_, short, _ := strings.Cut(name, "/")
	m, err := filepath.Glob(filepath.Join(dir, snapshot.Dir, short+"*"))
	if err != nil || len(m) == 0 {
		t.Fatalf("snapshot %s not in %s: %v", name, dir, err)
	}
	for _, p := range m {
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return p
		}
	}
	t.Fatalf("snapshot %s: no directory among %v", name, m)
	return ""
}

func allStarted(r *reports.Result, mode string) bool {
	for _, c := range r.Cells {
		if c.Start == nil || c.Start.Mode != mode {
			return false
		}
	}
	return true
}

func starts(r *reports.Result) []string {
	var out []string
	for _, c := range r.Cells {
		s := "none"
		if c.Start != nil {
			s = c.Start.Mode
		}
		out = append(out, c.ID+": "+s)
	}
	return out
}

// evidenceKinds is what kinds of evidence a cell has, as comparable words.
func evidenceKinds(c reports.Cell) []string {
	var out []string
	if slices.Contains(c.ReconnectTargets, c.BackendA) {
		out = append(out, "reconnect-to-dead-backend")
	}
	if slices.Contains(c.ReconnectTargets, c.BackendB) {
		out = append(out, "reconnect-to-new-backend")
	}
	if len(c.AskedOld) > 0 {
		out = append(out, "kernel-asked-for-dead-backend")
	}
	if c.RecoverySeconds != nil {
		out = append(out, "io-recovered")
	}
	// Which tracers saw the kernel's own connects (processes' connects vary with timing).
	seen := map[string]bool{}
	for _, e := range c.Events {
		if e.Connect != nil && e.Connect.Kernel && !seen[e.Connect.Source] {
			seen[e.Connect.Source] = true
			out = append(out, "kernel-connect-seen-by:"+e.Connect.Source)
		}
	}
	slices.Sort(out)
	return out
}

// sourcePort is the local address of the kernel's first NFS socket in the cell's records.
func sourcePort(c reports.Cell) string {
	for _, e := range c.Events {
		if e.Sockets != nil {
			for _, sk := range e.Sockets.Sockets {
				if sk.Kernel {
					return sk.Local
				}
			}
		}
	}
	return ""
}
