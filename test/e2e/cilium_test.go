package e2e

import (
	"context"
	"flag"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/reports"
)

var runCilium = flag.Bool("cilium", false, "TestCiliumMachine: real Cilium in a kind cluster in the VM (builds Cilium and its node image the first time: well over half an hour cold on 2 cores)")

// TestCiliumMachine installs real Cilium (the default version) in a kind cluster on Debian's
// kernel with each datapath that must serve the node's ClusterIP mount, and checks what it
// says against what it is: the agent ready and replacing kube-proxy, socket-LB's programs
// at the VM's root cgroup for the datapaths that put them there and nowhere else, and an NFS
// mount of a ClusterIP from the node that reads back what it wrote, with Cilium's own service
// table pointing the VIP at the server's pod.
func TestCiliumMachine(t *testing.T) {
	requireE2E(t)
	if !*runCilium {
		t.Skip("real Cilium in the kind form: pass -cilium (make cilium)")
	}
	bin := buildNfslab(t)
	for _, d := range []string{cilium.VMRootSocketLB} {
		t.Run(d, func(t *testing.T) {
			tmp := t.TempDir()
			rep, out := checkKind(t, bin, tmp, "debian-stock", "--cluster", d)
			c := rep.Cluster
			if c == nil || c.Cilium == nil || c.NFS == nil {
				t.Fatalf("no cluster, Cilium or NFS check in the report: %s", out)
			}
			ci, n := c.Cilium, c.NFS
			t.Logf("Cilium %s (%s): ready in %.0f s; KubeProxyReplacement %s; %s; NFS %s → %s, Cilium's table: %s",
				ci.Version, ci.Datapath, ci.ReadySeconds, ci.KubeProxyReplacement, ci.RootPrograms, n.VIP, n.PodIP, n.CiliumBackends)
			if c.ProxyMode != "none" || ci.Version != cilium.DefaultVersion() || ci.Datapath != d {
				t.Errorf("cluster %s with kube-proxy %s, Cilium %s %s", c.Name, c.ProxyMode, ci.Version, ci.Datapath)
			}
			if !strings.HasPrefix(ci.KubeProxyReplacement, "True") {
				t.Errorf("KubeProxyReplacement %q, want True", ci.KubeProxyReplacement)
			}
			atRoot := strings.Contains(ci.RootPrograms, "CGroupInet4Connect cil_sock4_conn") // the kernel keeps 15 characters of a name
			if atRoot != cilium.SharesRootCgroup(d) {
				t.Errorf("Cilium's connect4 program at the VM's root cgroup: %v, want %v (%s)", atRoot, cilium.SharesRootCgroup(d), ci.RootPrograms)
			}
			if strings.Contains(ci.RootPrograms, "nfslab_") {
				t.Errorf("nfslab's own socket-LB is attached beside Cilium: %s", ci.RootPrograms)
			}
			if !n.ReadBack || n.MountAddr != n.VIP {
				t.Errorf("NFS through %s: read back %v, mount addr %q", n.VIP, n.ReadBack, n.MountAddr)
			}
			if !strings.Contains(n.CiliumBackends, n.PodIP+":2049 (active)") {
				t.Errorf("Cilium's service table has %s → %s, want the server's pod %s", n.VIP, n.CiliumBackends, n.PodIP)
			}
			if left := leftovers(t, tmp); len(left) > 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
}

// TestCiliumScenario runs the built-in cilium scenario: Debian's kernel recovers under Cilium's
// socket-LB at the VM's root cgroup, with and without hostNamespaceOnly, and the vulnerable
// kernel hangs under both, its kernel_connect handed the dead pod by Cilium's connect hook;
// each cell records Cilium's own service table pointing the VIP at the replacement pod. With
// Cilium's hooks at the kind node's cgroup, the mount of the VIP fails on both kernels (timed
// out or unreachable), the kernel handing kernel_connect the VIP untranslated. Cilium beside
// kube-proxy (no socket-LB) recovers on both, kube-proxy's rules forwarding the VIP to the new
// pod.
func TestCiliumScenario(t *testing.T) {
	requireE2E(t)
	if !*runCilium {
		t.Skip("real Cilium in the kind form: pass -cilium (make cilium)")
	}
	bin := buildNfslab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 640*time.Minute)
	defer cancel()
	// Cold: the snapshot of a Cilium-ready VM stalled in its warm-up once (README).
	res := runScenario(ctx, t, bin, "cilium", 16, "--no-snapshot")
	for _, c := range res.Cells {
		t.Run(strings.ReplaceAll(c.ID, "/", "_"), func(t *testing.T) {
			checkVerdict(t, c)
			if c.Datapath == cilium.KindCgroup {
				checkUnseenByCilium(t, c)
				return
			}
			checkKindCell(t, c)
			if c.Verdict == "bug-reproduced" && (!slices.Contains(c.ReconnectTargets, c.BackendA) || len(c.AskedOld) == 0) {
				t.Errorf("bug-reproduced without the evidence: reconnect targets %v, asked old %v (dead pod %s)", c.ReconnectTargets, c.AskedOld, c.BackendA)
			}
			if !hasProgress(c, "Cilium forwards "+c.VIP) {
				t.Errorf("no record of Cilium's service table forwarding %s", c.VIP)
			}
			// Beside kube-proxy, the node's traffic to the VIP is kube-proxy's to translate.
			if c.Datapath == cilium.NoSocketLB && !hasProgress(c, "kube-proxy (iptables) forwards "+c.VIP) {
				t.Errorf("no record of kube-proxy's rules forwarding %s", c.VIP)
			}
		})
	}
}

// BenchmarkCilium measures real Cilium under TCG, with -cilium (make bench-cilium): the cached
// build of its binaries (`nfslab cilium build`, after a first build that may compile for many
// minutes), then one cell of the cilium scenario (Debian's kernel, socket-LB at the VM's root
// cgroup, the default version) twice. The first run creates the cluster and waits for Cilium
// (kind's Create, the agent ready after the apply: its datapath compiled, as Cilium's own
// readiness is not enough) and takes the VM's snapshot; the second restores that VM and runs the
// cell on it. Each run's figures are labelled by how its VM started: a snapshot already in the
// cache makes the first run a restored one too (prune it for cold figures; the bench says so).
func BenchmarkCilium(b *testing.B) {
	requireE2E(b)
	if !*runCilium {
		b.Skip("real Cilium in the kind form: pass -cilium (make bench-cilium)")
	}
	bin := buildNfslab(b)
	ctx := context.Background()
	build := []string{"cilium", "build", "--version", cilium.DefaultVersion()}
	if code := runNfslab(ctx, b, bin, b.TempDir(), build...); code != 0 {
		b.Fatalf("nfslab %s: exit code %d", strings.Join(build, " "), code)
	}
	b.Run("build-cached", func(b *testing.B) {
		for b.Loop() {
			start := time.Now()
			if code := runNfslab(ctx, b, bin, b.TempDir(), build...); code != 0 {
				b.Fatalf("nfslab %s: exit code %d", strings.Join(build, " "), code)
			}
			b.ReportMetric(time.Since(start).Seconds(), "s")
		}
	})
	cell := "debian-stock/kind/" + cilium.VMRootSocketLB + "@" + cilium.DefaultVersion() + "/4.1/delete-pod"
	b.Run("cell", func(b *testing.B) {
		for b.Loop() {
			for i := range 2 {
				res, took := warmRun(b, bin, "cilium", "--cell", cell, "--parallel", "1")
				reportCiliumRun(b, res, took, i == 1)
			}
		}
	})
}

// reportCiliumRun reports one run of a Cilium cell under the label of its VM's start ("cold-"
// or "restored-"): the whole run, the VM's start, kind's Create and Cilium's readiness when the
// cluster was made, the snapshot taken, and the cell itself. mustRestore says the run followed
// one that took the snapshot.
func reportCiliumRun(b *testing.B, res *reports.Result, took float64, mustRestore bool) {
	b.Helper()
	if len(res.Cells) != 1 {
		b.Fatalf("%d cells, want 1", len(res.Cells))
	}
	c := res.Cells[0]
	checkVerdict(b, c)
	if c.Start == nil {
		b.Fatalf("%s: no record of how its VM started", c.ID)
	}
	way := c.Start.Mode
	if mustRestore && way != reports.StartRestored {
		b.Errorf("%s: the second run started %s, want restored from the first run's snapshot", c.ID, way)
	}
	if !mustRestore && way == reports.StartRestored {
		b.Logf("the first run restored %s: its cold figures need that snapshot pruned (nfslab cache prune)", c.Start.Snapshot)
	}
	b.ReportMetric(took, way+"-wall-s")
	b.ReportMetric(c.Start.Seconds, way+"-vm-start-s")
	for k, v := range res.Timings {
		switch {
		case strings.HasPrefix(k, "kind_create:"):
			b.ReportMetric(v, way+"-kind-create-s")
		case strings.HasPrefix(k, "snapshot_take:"):
			b.ReportMetric(v, "snapshot-take-s")
		}
	}
	if way == reports.StartCold {
		if ready, ok := ciliumReady(c); ok {
			b.ReportMetric(ready, "agent-ready-s")
		} else {
			b.Errorf("%s: no record of Cilium's install", c.ID)
		}
	}
	b.ReportMetric(cellPhases(c)["cell"], way+"-cell-s")
}

// ciliumReady is how long Cilium took from the apply to its datapath in place, as the cell's
// cluster record says.
func ciliumReady(c reports.Cell) (float64, bool) {
	for _, e := range c.Events {
		if e.Cluster != nil && e.Cluster.Cilium != nil {
			return e.Cluster.Cilium.ReadySeconds, true
		}
	}
	return 0, false
}

// checkUnseenByCilium checks a cilium-kind-cgroup cell's evidence: its mount of the VIP failed
// on the network (timed out, or unreachable) and the kernel handed kernel_connect the VIP,
// which nothing rewrote (no other address). The errnos are stated here apart from the
// scenario's rule on purpose, like the ground truth: a rule loosened by mistake still fails.
func checkUnseenByCilium(t *testing.T, c reports.Cell) {
	t.Helper()
	if want := []string{"mount-refused: ETIMEDOUT", "mount-refused: ENETUNREACH", "mount-refused: EHOSTUNREACH"}; !slices.Contains(want, c.ReasonCode) {
		t.Errorf("reason code %q, want one of %v", c.ReasonCode, want)
	}
	vip := c.VIP + ":2049"
	var toVIP int
	for _, e := range c.Events {
		if e.Connect == nil || !e.Connect.Kernel {
			continue
		}
		if e.Connect.Input != vip {
			t.Errorf("kernel_connect handed %s, want only the VIP %s", e.Connect.Input, vip)
		}
		toVIP++
	}
	if toVIP == 0 {
		t.Errorf("no kernel_connect to the VIP %s recorded", vip)
	}
}
