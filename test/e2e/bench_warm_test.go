package e2e

import (
	"context"
	"flag"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab/snapshot"
	"github.com/nfslab/nfslab/reports"
)

var warmRuns = flag.Int("warm-runs", 3, "BenchmarkWarmStart: runs of each scenario each way, whose medians are reported")

// BenchmarkWarmStart runs scenarios cold (--no-snapshot: every VM boots, every kind cluster is
// created), warm (every VM restored from its snapshot: a booted VM in the netns form, a ready
// kind cluster in the kind form) and from the cells' own snapshots (--cell-snapshots: each cell
// restored right before its fault), -warm-runs times each, and reports the medians: the whole
// run, the VMs' start (boot or restore: for the kind form restored, the cluster is ready then),
// each cell, and a kind cluster's creation where there was one. Warm-up runs take the snapshots
// first. `kind` costs tens of minutes cold: -bench 'WarmStart/(default|fidelity)' leaves it out.
func BenchmarkWarmStart(b *testing.B) {
	requireE2E(b)
	bin := buildNfslab(b)
	for _, name := range []string{"default", "fidelity", "kind"} {
		b.Run(name, func(b *testing.B) {
			buildKernels(b, bin, scenarioKernels(b, name, nil))
			warmRun(b, bin, name)                     // takes the snapshots this binary lacks
			warmRun(b, bin, name, "--cell-snapshots") // and the cells'
			for b.Loop() {
				warmMedians(b, bin, name, "cold", reports.StartCold, "--no-snapshot")
				warmMedians(b, bin, name, "warm", reports.StartRestored)
				warmMedians(b, bin, name, "cells", reports.StartRestored, "--cell-snapshots")
			}
		})
	}
}

// warmMedians runs scenario name -warm-runs times with args, checks that every VM started as
// mode says, and reports the medians under the label way.
func warmMedians(b *testing.B, bin, name, way, mode string, args ...string) {
	var wall, vmStart, create, cells []float64
	for i := 0; i < *warmRuns; i++ {
		res, took := warmRun(b, bin, name, args...)
		wall = append(wall, took)
		for k, v := range res.Timings {
			switch {
			case strings.HasPrefix(k, "vm_boot:") || strings.HasPrefix(k, "vm_restore:"):
				vmStart = append(vmStart, v)
			case strings.HasPrefix(k, "kind_create:"):
				create = append(create, v)
			}
		}
		for _, c := range res.Cells {
			checkVerdict(b, c)
			if c.Start == nil || c.Start.Mode != mode {
				b.Errorf("%s: %s run started %+v, want %s", c.ID, way, c.Start, mode)
			} else if way == "cells" && !strings.HasPrefix(c.Start.Snapshot, string(snapshot.CellReady)+"/") {
				b.Errorf("%s: started from %s, not from its own snapshot", c.ID, c.Start.Snapshot)
			}
			cells = append(cells, cellSeconds(c))
		}
	}
	b.ReportMetric(median(wall), way+"-wall-s")
	b.ReportMetric(median(vmStart), way+"-vm-start-s")
	b.ReportMetric(median(cells), way+"-cell-s")
	if len(create) > 0 {
		b.ReportMetric(median(create), way+"-kind-create-s") // none when restored: the cluster was there
	}
}

// warmRun runs scenario name once with args and returns its result and wall time.
func warmRun(b *testing.B, bin, name string, args ...string) (*reports.Result, float64) {
	dir := b.TempDir()
	args = append([]string{"run", "--scenario", name, "--report-dir", dir}, args...)
	start := time.Now()
	code := runNfslab(context.Background(), b, bin, b.TempDir(), args...)
	took := time.Since(start).Seconds()
	res, err := reports.ReadJSON(filepath.Join(dir, "result.json"))
	if err != nil || code != 0 {
		b.Fatalf("nfslab %s: exit code %d (%v)", strings.Join(args, " "), code, err)
	}
	return res, took
}
