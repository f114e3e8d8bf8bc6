package e2e

import (
	"context"
	"flag"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nfslab/nfslab/reports"
)

// runKernels gates TestKernels: a cold run builds three kernels from source, longer than the
// default test command may take. `make kernels` passes it.
var runKernels = flag.Bool("kernels", false, "TestKernels: run the kernels scenario (builds every vulnerable kernel line; with a cold cache well over an hour on 2 cores)")

// TestKernels runs the built-in kernels scenario: every kernel line as Debian ships it and with
// the address copies reverted, under kube-proxy and socket-LB. Each line must reproduce the
// bug exactly where its copies are reverted and the socket-LB rewrites connects, with the dead
// backend among the reconnect targets, and recover everywhere else; `mount` keeps showing the
// VIP in every cell (docs/mount-puzzle.md).
func TestKernels(t *testing.T) {
	requireE2E(t)
	if !*runKernels {
		t.Skip("the kernels scenario builds every vulnerable kernel line: pass -kernels (make kernels)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 170*time.Minute)
	defer cancel()
	bin := buildNfslab(t)
	dir := t.TempDir()
	start := time.Now()
	code := runNfslab(ctx, t, bin, t.TempDir(), "run", "--scenario", "kernels", "--report-dir", dir)
	t.Logf("nfslab run --scenario kernels: exit %d after %s", code, time.Since(start).Round(time.Second))
	res, err := reports.ReadJSON(filepath.Join(dir, "result.json"))
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	// What each kernel must report as its release: Debian's ABI names for the stock lines, the
	// recipe's LOCALVERSION for the built ones.
	release := map[string]struct{ prefix, suffix string }{
		"debian-stock":      {"6.1.0-", "-amd64"},
		"debian-stock-6.12": {"6.12.", "-amd64"},
		"debian-stock-5.10": {"5.10.0-", "-amd64"},
		"vulnerable-6.1":    {"6.1.", "-nfslab-vulnerable"},
		"vulnerable-6.12":   {"6.12.", "-nfslab-vulnerable"},
		"vulnerable-5.10":   {"5.10.", "-nfslab-vulnerable"},
	}
	if len(res.Cells) != 2*len(release) {
		t.Fatalf("%d cells, want %d", len(res.Cells), 2*len(release))
	}
	for _, c := range res.Cells {
		t.Run(c.Kernel+"/"+c.Datapath, func(t *testing.T) {
			checkVerdict(t, c)
			want, _, _ := groundTruth(c.Kernel, c.Datapath, c.NFS, c.Fault)
			bug := want == "bug-reproduced"
			if r, ok := release[c.Kernel]; !ok || !strings.HasPrefix(c.KernelRelease, r.prefix) || !strings.HasSuffix(c.KernelRelease, r.suffix) {
				t.Errorf("kernel %s booted release %q, want %s…%s", c.Kernel, c.KernelRelease, r.prefix, r.suffix)
			}
			// addr= is formatted once, when the transport is created: the VIP on every line.
			if c.MountAddrBefore != c.VIP || c.MountAddrAfter != c.VIP {
				t.Errorf("mount addr %q → %q, want the VIP %s both times", c.MountAddrBefore, c.MountAddrAfter, c.VIP)
			}
			hitA := slices.Contains(c.ReconnectTargets, c.BackendA)
			if bug {
				if !hitA || len(c.AskedOld) == 0 {
					t.Errorf("bug-reproduced cell: reconnect targets %v, asked for the old backend %v: want %s in both", c.ReconnectTargets, c.AskedOld, c.BackendA)
				}
				return
			}
			if hitA || len(c.AskedOld) > 0 {
				t.Errorf("recovering cell reconnected to the dead backend %s: targets %v, asked %v", c.BackendA, c.ReconnectTargets, c.AskedOld)
			}
			if c.RecoverySeconds == nil {
				t.Error("no recovery_seconds")
			}
		})
	}
}
