package e2e

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab/cluster/kind/nodeimage"
	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/datapath/cilium/build"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/kernel"
	"github.com/nfslab/nfslab/lab/kernel/recipe"
	"github.com/nfslab/nfslab/lab/snapshot"
	"github.com/nfslab/nfslab/reports"
)

// BenchmarkImage times the artefacts a run needs, cold (empty cache) and warm (cached).
func BenchmarkImage(b *testing.B) {
	requireE2E(b)
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	warm := image.Cache{Dir: b.TempDir()}
	phases := []struct {
		name  string
		cache func(*testing.B) image.Cache
		build func(image.Cache) error
	}{
		{"rootfs-cold", freshCache, func(c image.Cache) error { _, err := c.Rootfs(ctx, log); return err }},
		{"rootfs-warm", warmCache(warm), func(c image.Cache) error { _, err := c.Rootfs(ctx, log); return err }},
		{"kernel-cold", freshCache, func(c image.Cache) error { return stockKernel(ctx, c, log) }},
		{"kernel-warm", warmCache(warm), func(c image.Cache) error { return stockKernel(ctx, c, log) }},
	}
	for _, p := range phases {
		b.Run(p.name, func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				c := p.cache(b)
				b.StartTimer()
				start := time.Now()
				if err := p.build(c); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(time.Since(start).Seconds(), "s")
			}
		})
	}
}

func freshCache(b *testing.B) image.Cache { return image.Cache{Dir: b.TempDir()} }

// warmCache fills c once (untimed by the caller's StopTimer) and returns it.
func warmCache(c image.Cache) func(*testing.B) image.Cache {
	return func(b *testing.B) image.Cache {
		ctx, log := context.Background(), slog.New(slog.DiscardHandler)
		if _, err := c.Rootfs(ctx, log); err != nil {
			b.Fatal(err)
		}
		if err := stockKernel(ctx, c, log); err != nil {
			b.Fatal(err)
		}
		return c
	}
}

func stockKernel(ctx context.Context, c image.Cache, log *slog.Logger) error {
	k, err := kernel.Resolve(ctx, c, kernel.StockName, log, nil)
	if err != nil {
		return err
	}
	_, err = kernel.ModulesArchive(ctx, c, k, kernel.LabModules())
	return err
}

// BenchmarkDefaultScenario runs `nfslab run` on the default scenario with a warm cache and
// reports the phases: wall time, VM boot, and per datapath the mount, the failover (fault to
// first successful I/O), the recovery after backend B was ready, and the verdict latency (from
// the evidence that decided the verdict to the agent's cell-done event).
func BenchmarkDefaultScenario(b *testing.B) {
	requireE2E(b)
	ctx := context.Background()
	bin := buildNfslab(b)
	// Warm the cache outside the timer: this benchmark is about a run, not about images.
	if code := runNfslab(ctx, b, bin, b.TempDir(), "run", "--report-dir", b.TempDir()); code != 0 {
		b.Fatalf("warm-up run: exit code %d", code)
	}
	for b.Loop() {
		dir := b.TempDir()
		start := time.Now()
		if code := runNfslab(ctx, b, bin, b.TempDir(), "run", "--report-dir", dir); code != 0 {
			b.Fatalf("nfslab run: exit code %d", code)
		}
		b.ReportMetric(time.Since(start).Seconds(), "wall-s")
		res, err := reports.ReadJSON(filepath.Join(dir, "result.json"))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res.Timings["vm_boot:debian-stock"], "vm-boot-s")
		for _, c := range res.Cells {
			checkVerdict(b, c)
			m := cellPhases(c)
			for name, v := range m {
				b.ReportMetric(v, c.Datapath+"-"+name+"-s")
			}
		}
	}
}

var (
	kernelCold    = flag.Bool("kernel-cold", false, "BenchmarkKernelBuild: also build each recipe in an empty cache (minutes each)")
	kernelRecipes = flag.String("kernel-recipes", "", "BenchmarkKernelBuild: comma-separated recipes (default: every recipe shipped)")
)

// BenchmarkKernelBuild times every kernel recipe (or those of -kernel-recipes). <recipe>/cached
// times a build the cache already holds (≈ 0); when the recipe was not in the cache yet, the
// build that fills it is a cold build in a warm source cache and is reported as cold-build-s.
// With -kernel-cold, <recipe>/cold builds it in an empty cache (source download included).
func BenchmarkKernelBuild(b *testing.B) {
	requireE2E(b)
	names := recipe.Names()
	if *kernelRecipes != "" {
		names = strings.Split(*kernelRecipes, ",")
	}
	log := slog.New(slog.DiscardHandler)
	warm, err := image.DefaultCacheDir()
	if err != nil {
		b.Fatal(err)
	}
	if *cacheDir != "" {
		warm = *cacheDir
	}
	for _, name := range names {
		r, err := recipe.Lookup(name)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name+"/cached", func(b *testing.B) {
			fill, err := recipe.Build(context.Background(), r, warm, log, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				built, err := recipe.Build(context.Background(), r, warm, log, nil)
				if err != nil || !built.Cached {
					b.Fatalf("cached build: %v (cached=%v)", err, built.Cached)
				}
				b.ReportMetric(time.Since(start).Seconds(), "s")
			}
			if !fill.Cached {
				b.ReportMetric(fill.Duration.Seconds(), "cold-build-s")
			}
		})
		if !*kernelCold {
			continue
		}
		b.Run(name+"/cold", func(b *testing.B) {
			for b.Loop() {
				dir := b.TempDir()
				start := time.Now()
				if _, err := recipe.Build(context.Background(), r, dir, log, nil); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(time.Since(start).Seconds(), "s")
			}
		})
	}
}

// BenchmarkFidelityMatrix runs the 2×2 fidelity matrix with cached images and kernels and
// reports the matrix wall time, each cell's time and the worst verdict latency: from the moment
// the evidence for the verdict was complete to the agent's decision.
func BenchmarkFidelityMatrix(b *testing.B) {
	requireE2E(b)
	ctx := context.Background()
	bin := buildNfslab(b)
	if code := runNfslab(ctx, b, bin, b.TempDir(), "run", "--scenario", "fidelity", "--report-dir", b.TempDir()); code != 0 {
		b.Fatalf("warm-up run: exit code %d", code)
	}
	for b.Loop() {
		dir := b.TempDir()
		start := time.Now()
		if code := runNfslab(ctx, b, bin, b.TempDir(), "run", "--scenario", "fidelity", "--report-dir", dir); code != 0 {
			b.Fatalf("nfslab run: exit code %d", code)
		}
		b.ReportMetric(time.Since(start).Seconds(), "matrix-wall-s")
		res, err := reports.ReadJSON(filepath.Join(dir, "result.json"))
		if err != nil {
			b.Fatal(err)
		}
		worst := 0.0
		for _, c := range res.Cells {
			checkVerdict(b, c)
			m := cellPhases(c)
			name := strings.ReplaceAll(strings.TrimSuffix(c.ID, "/4.1/delete-pod"), "/", "-")
			b.ReportMetric(m["cell"], name+"-cell-s")
			if l, ok := verdictLatency(c); ok {
				worst = max(worst, l)
			}
		}
		b.ReportMetric(worst, "verdict-latency-max-s")
	}
}

// verdictLatency is the time from the evidence being complete to the agent's cell-done event:
// for recovered, the first good I/O; for bug-reproduced, the later of the moment a probe
// became stuck (its start, or backend B's readiness if later, plus the probe deadline) and the
// first reconnect aimed at the dead backend after backend B was ready.
func verdictLatency(c reports.Cell) (float64, bool) {
	var bReady, stuck, toOld, recovered, done event.Mono
	for _, e := range c.Events {
		switch {
		case e.Kind == event.KindStep && e.Step == event.StepBackendBReady:
			bReady = e.Mono
		case e.Probe != nil && e.Probe.Stuck && stuck == 0:
			stuck = max(e.Probe.StartNS, bReady) + event.Mono(c.ProbeTimeout*1e9)
		case e.Kind == event.KindStep && e.Step == event.StepIORecovered && recovered == 0:
			recovered = e.Mono
		case e.Kind == event.KindCellDone:
			done = e.Mono
		case e.Connect != nil && bReady != 0 && toOld == 0 && strings.HasPrefix(e.Connect.Input, c.BackendA+":"):
			toOld = e.Mono
		}
	}
	switch {
	case done == 0:
		return 0, false
	case recovered != 0:
		return done.Sub(recovered).Seconds(), true
	case stuck != 0 && toOld != 0:
		return done.Sub(max(stuck, toOld)).Seconds(), true
	}
	return 0, false
}

// cellPhases measures a cell's phases from its timeline.
func cellPhases(c reports.Cell) map[string]float64 {
	at := map[event.Step]event.Mono{}
	var first, done event.Mono
	for _, e := range c.Events {
		if first == 0 {
			first = e.Mono
		}
		if e.Kind == event.KindStep {
			if _, ok := at[e.Step]; !ok {
				at[e.Step] = e.Mono
			}
		}
		if e.Kind == event.KindCellDone {
			done = e.Mono
		}
	}
	m := map[string]float64{}
	if t, ok := at[event.StepMounted]; ok {
		m["mount"] = t.Sub(at[event.StepServicePointed]).Seconds()
	}
	if t, ok := at[event.StepIORecovered]; ok {
		m["failover"] = t.Sub(at[event.StepFaultInjected]).Seconds()
		m["verdict"] = done.Sub(t).Seconds()
	}
	if c.RecoverySeconds != nil {
		m["recovery"] = *c.RecoverySeconds
	}
	m["cell"] = done.Sub(first).Seconds()
	if t, ok := at[event.StepDatapathChecked]; ok {
		m["from-point"] = done.Sub(t).Seconds() // what a cell restored at its snapshot point runs
	}
	return m
}

// cellSeconds is the time a cell took in its run: from its first event to its verdict, or for a
// cell started from its own snapshot (--cell-snapshots) its restore and what ran after it (its
// earlier events were recorded when the snapshot was taken; the guest's clock stood still while
// it was saved).
func cellSeconds(c reports.Cell) float64 {
	m := cellPhases(c)
	if c.Start != nil && c.Start.Mode == reports.StartRestored && strings.HasPrefix(c.Start.Snapshot, string(snapshot.CellReady)+"/") {
		return c.Start.Seconds + m["from-point"]
	}
	return m["cell"]
}

// BenchmarkScenarios times the scenarios beyond the fidelity matrix with cached images and
// kernels: each one's wall time, and each cell's recovery (the time from backend B ready to the
// first good I/O; absent for a cell that did not recover).
func BenchmarkScenarios(b *testing.B) {
	requireE2E(b)
	ctx := context.Background()
	bin := buildNfslab(b)
	for _, name := range []string{"stale-endpoint", "longhorn", "nconnect", "node-crash", "smb", "kernels"} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				dir := b.TempDir()
				start := time.Now()
				code := runNfslab(ctx, b, bin, b.TempDir(), "run", "--scenario", name, "--report-dir", dir)
				b.ReportMetric(time.Since(start).Seconds(), "wall-s")
				if code != 0 {
					b.Errorf("nfslab run --scenario %s: exit code %d", name, code)
				}
				res, err := reports.ReadJSON(filepath.Join(dir, "result.json"))
				if err != nil {
					b.Fatal(err)
				}
				for _, c := range res.Cells {
					checkVerdict(b, c)
					if c.RecoverySeconds != nil {
						b.ReportMetric(*c.RecoverySeconds, strings.ReplaceAll(c.ID, "/", "-")+"-recovery-s")
					}
				}
			}
		})
	}
}

// BenchmarkKindNodeImage times the kind form's node image, built without Docker or a registry:
// cached (≈ 0), and, when the cache lacked it, the build that filled it (cold-build-s; the
// binaries come from BenchmarkKindBinaries' cache entry when present).
func BenchmarkKindNodeImage(b *testing.B) {
	requireE2E(b)
	cache := benchCache(b)
	log := slog.New(slog.DiscardHandler)
	start := time.Now()
	built := false
	node, err := nodeimage.BuildNode(context.Background(), cache, log, nodeimage.Extras{}, func(line string) { built = true; b.Log(line) })
	if err != nil {
		b.Fatal(err)
	}
	fill := time.Since(start)
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		if _, err := nodeimage.BuildNode(context.Background(), cache, log, nodeimage.Extras{}, nil); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(t0).Seconds(), "s")
	}
	if built {
		b.ReportMetric(fill.Seconds(), "cold-build-s")
	}
	if st, err := os.Stat(node.Archive); err == nil {
		b.ReportMetric(float64(st.Size())/(1<<20), "archive-MiB")
	}
}

// benchCache is the nfslab cache the benchmarks fill: -cache-dir, else nfslab's default.
func benchCache(b *testing.B) image.Cache {
	dir, err := image.DefaultCacheDir()
	if err != nil {
		b.Fatal(err)
	}
	if *cacheDir != "" {
		dir = *cacheDir
	}
	return image.Cache{Dir: dir}
}

// BenchmarkKindBinaries times the Kubernetes commands and etcd of the kind form's node image,
// built from the Go module proxy: cached (≈ 0), and, when the cache lacked them, the build that
// filled it (cold-build-s; its speed depends on what the Go build cache already holds).
func BenchmarkKindBinaries(b *testing.B) {
	requireE2E(b)
	cache := benchCache(b)
	log := slog.New(slog.DiscardHandler)
	start := time.Now()
	built := false
	if _, err := nodeimage.Binaries(context.Background(), cache, log, func(line string) { built = true; b.Log(line) }); err != nil {
		b.Fatal(err)
	}
	fill := time.Since(start)
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		if _, err := nodeimage.Binaries(context.Background(), cache, log, nil); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(t0).Seconds(), "s")
	}
	if built {
		b.ReportMetric(fill.Seconds(), "cold-build-s")
	}
}

// BenchmarkCiliumBuild times Cilium's agent, operator and helpers of the default version,
// built from the Go module proxy: cached (≈ 0), and, when the cache lacked them, the build that
// filled it (cold-build-s; like Kubernetes', its speed depends on what Go's module and build
// caches already hold), with the agent's size.
func BenchmarkCiliumBuild(b *testing.B) {
	requireE2E(b)
	cache := benchCache(b)
	log := slog.New(slog.DiscardHandler)
	start := time.Now()
	built := false
	bins, err := build.Build(context.Background(), cache, log, cilium.DefaultVersion(), func(line string) { built = true; b.Log(line) })
	if err != nil {
		b.Fatal(err)
	}
	fill := time.Since(start)
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		if _, err := build.Build(context.Background(), cache, log, cilium.DefaultVersion(), nil); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(t0).Seconds(), "s")
	}
	if built {
		b.ReportMetric(fill.Seconds(), "cold-build-s")
	}
	if st, err := os.Stat(bins.Path(build.Commands()[0])); err == nil {
		b.ReportMetric(float64(st.Size())/(1<<20), "agent-MiB")
	}
}

// BenchmarkKindScenario runs the kind scenario (kube-proxy in each mode and socket-LB, on
// Debian's kernel and the vulnerable one) with warm caches and reports where its time goes:
// the whole run, each VM's boot with its Docker disk, each cluster's creation and each switch of
// its kube-proxy mode, every cell on a running cluster and their median. The first iteration
// after an empty cache also builds the node image and the disk; run it twice (-benchtime 2x)
// for warm figures.
func BenchmarkKindScenario(b *testing.B) { benchKindScenario(b) }

// BenchmarkKindScenarioCellSnapshots is BenchmarkKindScenario with --cell-snapshots: the first
// iteration takes a snapshot of each cell right before its fault, later ones start every cell
// from its own (-benchtime 3x: the third is the restored figure whatever the cache held).
func BenchmarkKindScenarioCellSnapshots(b *testing.B) { benchKindScenario(b, "--cell-snapshots") }

func benchKindScenario(b *testing.B, args ...string) {
	requireE2E(b)
	ctx := context.Background()
	bin := buildNfslab(b)
	for b.Loop() {
		dir := b.TempDir()
		start := time.Now()
		code := runNfslab(ctx, b, bin, b.TempDir(), append([]string{"run", "--scenario", "kind", "--report-dir", dir}, args...)...)
		b.ReportMetric(time.Since(start).Seconds(), "wall-s")
		res, err := reports.ReadJSON(filepath.Join(dir, "result.json"))
		if err != nil {
			b.Fatalf("nfslab run --scenario kind: exit code %d, no result: %v", code, err)
		}
		if code != 0 {
			b.Errorf("nfslab run --scenario kind: exit code %d", code)
		}
		for k, v := range res.Timings {
			if strings.HasPrefix(k, "vm_boot:") || strings.HasPrefix(k, "vm_restore:") || strings.HasPrefix(k, "kind_create:") || strings.HasPrefix(k, "kind_switch:") || strings.HasPrefix(k, "snapshot_take:") {
				b.ReportMetric(v, strings.ReplaceAll(k, ":", "-")+"-s")
			}
		}
		var cells []float64
		for _, c := range res.Cells {
			checkVerdict(b, c)
			cells = append(cells, cellSeconds(c))
			b.ReportMetric(cellSeconds(c), strings.ReplaceAll(c.ID, "/", "-")+"-cell-s")
		}
		b.ReportMetric(median(cells), "cell-median-s")
	}
}

// median is the middle of xs (the mean of the two middle ones for an even count); 0 when empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}
