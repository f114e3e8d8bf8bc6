package e2e

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/reports"
)

// TestKindCells runs the kind scenario's cells on the vulnerable kernel: a real kind cluster in
// the VM, nfs-ganesha as a Deployment behind a ClusterIP, the pod deleted through the API.
// With the real kube-proxy the mount recovers; with nfslab's socket-LB fed by an EndpointSlice
// informer, on a cluster without kube-proxy, SUNRPC asks for the dead pod and the mount hangs.
// The addresses are the cluster's (IPAM, the Deployment), not the scenario's.
func TestKindCells(t *testing.T) {
	requireE2E(t)
	bin := buildNfslab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	// kube-proxy first, then socket-LB: one cluster, its kube-proxy removed between the cells.
	res := runScenario(ctx, t, bin, "kind", 2, "--kernel", "vulnerable-6.1", "--datapath", "kube-proxy,socket-lb")
	for _, c := range res.Cells {
		t.Run(c.Datapath, func(t *testing.T) {
			checkKindCell(t, c)
			switch c.Datapath {
			case "kube-proxy":
				if c.Verdict != "recovered" || c.RecoverySeconds == nil || len(c.AskedOld) > 0 {
					t.Errorf("kube-proxy: verdict %s (recovery %v, asked old %v): want recovered, with a time, and never asked for the dead pod", c.Verdict, c.RecoverySeconds, c.AskedOld)
				}
				if !hasStep(c, "datapath-installed", "no sock_addr program effective at /sys/fs/cgroup") {
					t.Error("the kube-proxy cell does not say that no socket-level program is effective at the root cgroup")
				}
			case "socket-lb":
				if c.Verdict != "bug-reproduced" || len(c.AskedOld) == 0 {
					t.Errorf("socket-lb: verdict %s (asked old %v): want bug-reproduced with evidence that SUNRPC asked for %s", c.Verdict, c.AskedOld, c.BackendA)
				}
				if !slices.Contains(c.ReconnectTargets, c.BackendA) {
					t.Errorf("reconnect targets %v do not include the dead pod %s", c.ReconnectTargets, c.BackendA)
				}
				if !hasStep(c, "datapath-installed", "nfslab_connect4") {
					t.Error("the socket-LB cell does not list its connect4 program as effective at the root cgroup")
				}
			default:
				t.Errorf("unexpected datapath %q", c.Datapath)
			}
			if !c.Pass {
				logEvidence(t, c)
			}
		})
	}
}

// checkKindCell checks what every kind cell must show: it ran on kind, the cluster chose the
// addresses (a ClusterIP from kind's service range, pod IPs from its pod range, two different
// pods), the mount named the VIP, and the datapath was seen forwarding to the new pod.
func checkKindCell(t *testing.T, c reports.Cell) {
	t.Helper()
	if c.Cluster != "kind" {
		t.Errorf("cluster %q, want kind", c.Cluster)
	}
	inRange := func(what, addr, prefix string) {
		a, err := netip.ParseAddr(addr)
		if err != nil || !netip.MustParsePrefix(prefix).Contains(a) {
			t.Errorf("%s %q: want an address the cluster chose, in %s", what, addr, prefix)
		}
	}
	inRange("VIP", c.VIP, "10.96.0.0/16")
	inRange("backend A", c.BackendA, "10.244.0.0/16")
	inRange("backend B", c.BackendB, "10.244.0.0/16")
	if c.BackendA == c.BackendB {
		t.Errorf("backend B %s is backend A: the replacement pod needs an IP of its own", c.BackendB)
	}
	if c.MountAddrBefore != c.VIP {
		t.Errorf("mount addr before the fault %q, want the VIP %s", c.MountAddrBefore, c.VIP)
	}
	var pods, watched, programmed int
	for _, e := range c.Events {
		switch {
		case e.Backend != nil && e.Backend.State == event.BackendServing:
			pods++
		case e.Service != nil && e.Service.Datapath && slices.Equal(e.Service.Endpoints, []string{c.BackendB}):
			programmed++
		case e.Service != nil:
			watched++
		}
	}
	if pods != 2 || watched == 0 || programmed == 0 {
		t.Errorf("%d serving pods, %d watched EndpointSlice records, %d datapath records for %s: want 2 pods and both kinds of records", pods, watched, programmed, c.BackendB)
	}
}

// hasStep reports whether the cell's step s says what.
func hasStep(c reports.Cell, s, what string) bool {
	return slices.ContainsFunc(c.Events, func(e event.Event) bool {
		return e.Kind == event.KindStep && string(e.Step) == s && strings.Contains(e.Msg, what)
	})
}
