package e2e

import (
	"context"
	"flag"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/snapshot"
	"github.com/nfslab/nfslab/reports"
)

// runKindScenarios gates TestKindScenarios: two kind scenarios in full, three VMs and three
// cluster creations under TCG — more than the test command can afford. `make kind` passes it.
var runKindScenarios = flag.Bool("kind-scenarios", false, "TestKindMachine, and TestKindScenarios: run the kind, kind-faults and kind-restart-node scenarios, the first two cold and restored from snapshots of ready clusters, kind also from its cells' own snapshots (about two and a half hours under TCG)")

// TestKindScenarios runs the built-in kind scenarios end to end. kind: Debian's kernel recovers
// under kube-proxy in each of its modes and under nfslab's socket-LB, and the vulnerable kernel
// hangs only under the socket-LB, with SUNRPC asking for the dead pod. kind-faults: a
// force-deleted pod is the same story, and a killed server container is restarted in place by
// the kubelet — the pod keeps its IP, so even the vulnerable kernel recovers. kind-restart-node:
// on two nodes, the server's node restarts and its pod comes back with a new IP — the
// vulnerable kernel then hangs under the socket-LB like after a deletion. kind and kind-faults
// run twice: every VM booted and its cluster created (--no-snapshot), and every VM restored from
// a snapshot of a ready cluster; both runs must tell the same story (checkEquivalent). kind runs
// a third way, each cell restored right before its fault (--cell-snapshots), to the same story.
func TestKindScenarios(t *testing.T) {
	requireE2E(t)
	if !*runKindScenarios {
		t.Skip("four kind clusters under TCG: pass -kind-scenarios (make kind)")
	}
	bin := buildNfslab(t)
	run := func(ctx context.Context, t *testing.T, name string, args ...string) *reports.Result {
		t.Helper()
		dir, tmp := t.TempDir(), t.TempDir()
		start := time.Now()
		args = append([]string{"run", "--scenario", name, "--report-dir", dir}, args...)
		code := runNfslab(ctx, t, bin, tmp, args...)
		t.Logf("nfslab %s: exit %d after %s", strings.Join(args, " "), code, time.Since(start).Round(time.Second))
		res, err := reports.ReadJSON(filepath.Join(dir, "result.json"))
		if err != nil {
			t.Fatal(err)
		}
		if code != 0 {
			t.Errorf("exit code %d, want 0", code)
		}
		for _, c := range res.Cells {
			t.Run(strings.ReplaceAll(c.ID, "/", "_"), func(t *testing.T) { checkKindScenarioCell(t, c) })
		}
		if left := leftovers(t, tmp); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
		return res
	}
	for _, name := range []string{"kind", "kind-faults", "kind-restart-node"} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Minute)
			defer cancel()
			cold := run(ctx, t, name, "--no-snapshot")
			if name == "kind-restart-node" {
				return // its node restarts: a restored cluster would show nothing more
			}
			// Again with each VM restored from a snapshot of a ready cluster: the first run
			// takes the snapshots this binary lacks.
			warm := run(ctx, t, name)
			if !allStarted(warm, reports.StartRestored) {
				warm = run(ctx, t, name)
			}
			if !allStarted(warm, reports.StartRestored) {
				t.Fatalf("a run after the snapshots were taken still booted cold: %v", starts(warm))
			}
			checkEquivalent(t, cold, warm)
			if name != "kind" {
				return
			}
			// And with each cell started from a snapshot of its own, right before its fault
			// (--cell-snapshots): the first such run takes them.
			cells := run(ctx, t, name, "--cell-snapshots")
			if !allFromCellSnapshots(cells) {
				cells = run(ctx, t, name, "--cell-snapshots")
			}
			if !allFromCellSnapshots(cells) {
				t.Fatalf("a run after the cells' snapshots were taken did not start from them: %v", starts(cells))
			}
			checkEquivalent(t, cold, cells)
		})
	}
}

// allFromCellSnapshots says whether every cell of r started from a snapshot of its own point.
func allFromCellSnapshots(r *reports.Result) bool {
	for _, c := range r.Cells {
		if c.Start == nil || c.Start.Mode != reports.StartRestored || !strings.HasPrefix(c.Start.Snapshot, string(snapshot.CellReady)+"/") {
			return false
		}
	}
	return true
}

// checkKindScenarioCell checks one cell of a kind scenario against the story it must tell.
func checkKindScenarioCell(t *testing.T, c reports.Cell) {
	t.Helper()
	checkVerdict(t, c)
	if c.Fault == "kill-container" {
		checkKilledContainer(t, c)
		return
	}
	checkKindCell(t, c)
	if c.Fault == "restart-node" {
		checkRestartedNode(t, c)
	}
	switch {
	case c.Verdict == "bug-reproduced":
		if !slices.Contains(c.ReconnectTargets, c.BackendA) || len(c.AskedOld) == 0 {
			t.Errorf("bug-reproduced without the evidence: reconnect targets %v, asked old %v (dead pod %s)", c.ReconnectTargets, c.AskedOld, c.BackendA)
		}
	case c.Datapath != "socket-lb":
		mode := strings.TrimPrefix(c.Datapath, "kube-proxy-")
		if mode == "kube-proxy" {
			mode = "iptables"
		}
		if !hasProgress(c, "kube-proxy ("+mode+") forwards "+c.VIP) {
			t.Errorf("no record of kube-proxy's %s rules for %s", mode, c.VIP)
		}
	}
}

// checkKilledContainer: the killed server's pod came back (in place, same IP) or was replaced,
// the cell says which, and the mount recovered.
func checkKilledContainer(t *testing.T, c reports.Cell) {
	t.Helper()
	inPlace := hasProgress(c, "restarted pod") && hasProgress(c, "in place")
	replaced := hasProgress(c, "the ReplicaSet replaced the backend")
	if inPlace == replaced {
		t.Errorf("the cell does not say whether the kubelet restarted the container in place (%v) or the pod was replaced (%v)", inPlace, replaced)
	}
	if inPlace && c.BackendA != c.BackendB {
		t.Errorf("restarted in place, yet backend B %s is not backend A %s", c.BackendB, c.BackendA)
	}
	killed := slices.ContainsFunc(c.Events, func(e event.Event) bool {
		return e.Backend != nil && e.Backend.State == event.BackendKilled && e.Backend.IP == c.BackendA
	})
	if !killed {
		t.Errorf("no record of backend A %s's server being killed", c.BackendA)
	}
	if c.Verdict != "recovered" || len(c.AskedOld) > 0 {
		t.Errorf("kill-container: verdict %s, asked old %v: want recovered, and no connect to a backend that kept its IP counted as the bug", c.Verdict, c.AskedOld)
	}
}

// checkRestartedNode: the server's node (not the mounting one) restarted, the pod came back in a
// new sandbox with a new IP, and the cell says so.
func checkRestartedNode(t *testing.T, c reports.Cell) {
	t.Helper()
	if !hasProgress(c, "restarting node nfslab-worker,") || !hasProgress(c, "node nfslab-worker restarted (docker restart") {
		t.Error("no record of the worker node's restart")
	}
	if !hasProgress(c, "a new sandbox") || c.BackendA == c.BackendB || c.BackendB == "" {
		t.Errorf("the pod did not come back with a new IP, or the cell does not say so: A %s, B %s", c.BackendA, c.BackendB)
	}
	deleted := slices.ContainsFunc(c.Events, func(e event.Event) bool {
		return e.Backend != nil && e.Backend.State == event.BackendDeleted && e.Backend.IP == c.BackendA
	})
	if !deleted {
		t.Errorf("no record of backend A %s's sandbox going with its node", c.BackendA)
	}
}
