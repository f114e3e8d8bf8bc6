package e2e

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/kernel"
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
	_, err = kernel.ModulesArchive(ctx, c, k, kernel.LabModules)
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
	if code := runNfslab(ctx, b, bin, "run", "--report-dir", b.TempDir()); code != 0 {
		b.Fatalf("warm-up run: exit code %d", code)
	}
	for b.Loop() {
		dir := b.TempDir()
		start := time.Now()
		if code := runNfslab(ctx, b, bin, "run", "--report-dir", dir); code != 0 {
			b.Fatalf("nfslab run: exit code %d", code)
		}
		b.ReportMetric(time.Since(start).Seconds(), "wall-s")
		res, err := reports.ReadJSON(filepath.Join(dir, "result.json"))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res.Timings["vm_boot:debian-stock"], "vm-boot-s")
		for _, c := range res.Cells {
			m := cellPhases(c)
			for name, v := range m {
				b.ReportMetric(v, c.Datapath+"-"+name+"-s")
			}
		}
	}
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
	return m
}
