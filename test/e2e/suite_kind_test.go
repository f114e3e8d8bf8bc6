package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/e2e-framework/klient/k8s/resources"
	"sigs.k8s.io/e2e-framework/pkg/env"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/envfuncs"
	"sigs.k8s.io/e2e-framework/pkg/features"

	"github.com/nfslab/nfslab/lab"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/provider"
	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/lab/tty"
	"github.com/nfslab/nfslab/reports"
	"github.com/nfslab/nfslab/scenarios"
)

// TestKindSuite is an e2e-framework suite on nfslab's own cluster provider: the kind scenario's
// kube-proxy and socket-LB cells run on the vulnerable kernel — a real kind cluster inside the VM,
// nfs-ganesha as a Deployment behind a ClusterIP, the pod deleted through the API — and the
// cluster is kept, with the cells' workloads, for the assessments. They check nfslab's verdicts
// and evidence, then read the real objects through klient: the Service, its EndpointSlice and
// the pods must be what the cells reported. With the real kube-proxy the mount recovers; with
// nfslab's socket-LB fed by an EndpointSlice informer, the cluster did everything right, yet
// SUNRPC asks for the dead pod and the mount hangs.
func TestKindSuite(t *testing.T) {
	requireE2E(t)
	bin := buildNfslab(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // the run's work directory, for the leftovers check
	sc, err := scenario.Load("kind", scenarios.FS)
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Filter(scenario.Override{Kernels: []string{"vulnerable-6.1"}, Datapaths: []string{"kube-proxy", "socket-lb"}}); err != nil {
		t.Fatal(err)
	}
	var kernels []string
	for _, c := range sc.Cells() {
		kernels = append(kernels, c.Kernel)
	}
	buildKernels(t, bin, kernels)
	p := provider.New(lab.Options{
		Scenario: sc, Agent: bin, CacheDir: *cacheDir, Accel: "auto",
		Progress: os.Stderr, Style: tty.Style{}, ArtifactDir: t.TempDir(),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	cfg := envconf.New()
	ctx, err = envfuncs.CreateCluster(p, "nfslab")(ctx, cfg)
	if err != nil {
		t.Fatalf("create the cluster through nfslab's provider: %v", err)
	}
	defer func() {
		if _, err := envfuncs.DestroyCluster("nfslab")(ctx, cfg); err != nil {
			t.Errorf("destroy: %v", err)
		}
		if left := leftovers(t, tmp); len(left) > 0 {
			t.Errorf("left behind: %v", left)
		}
	}()
	testenv, err := env.NewWithContext(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	res := p.Result()
	if res == nil || len(res.Cells) != 2 {
		t.Fatalf("results when the cluster was kept: %+v", res)
	}
	testenv.Test(t, cellFeature(0, res.Cells[0]), cellFeature(1, res.Cells[1]))
}

// cellFeature checks one kind cell: its verdict and evidence, then the cluster's own objects in
// the cell's namespace (nfslab-c<index>).
func cellFeature(index int, c reports.Cell) features.Feature {
	ns := fmt.Sprintf("nfslab-c%d", index)
	return features.New(c.ID).
		Assess("verdict and evidence", func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
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
			return ctx
		}).
		Assess("the Service is the one the node mounted", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			var svc corev1.Service
			if err := cfg.Client().Resources(ns).Get(ctx, "nfs", ns, &svc); err != nil {
				t.Fatalf("get Service %s/nfs: %v", ns, err)
			}
			if svc.Spec.ClusterIP != c.VIP || c.MountAddrBefore != svc.Spec.ClusterIP {
				t.Errorf("Service ClusterIP %s, the cell's VIP %s, mounted addr %s: want one address", svc.Spec.ClusterIP, c.VIP, c.MountAddrBefore)
			}
			return ctx
		}).
		Assess("the replacement pod serves, alone in the EndpointSlice", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			var list discoveryv1.EndpointSliceList
			if err := cfg.Client().Resources(ns).List(ctx, &list, resources.WithLabelSelector(discoveryv1.LabelServiceName+"=nfs")); err != nil {
				t.Fatal(err)
			}
			var ready []string
			for _, s := range list.Items {
				for _, e := range s.Endpoints {
					if e.Conditions.Ready == nil || *e.Conditions.Ready {
						ready = append(ready, e.Addresses...)
					}
				}
			}
			if len(ready) != 1 || ready[0] != c.BackendB {
				t.Errorf("EndpointSlice ready addresses %v, want the cell's backend B %s alone", ready, c.BackendB)
			}
			var pods corev1.PodList
			if err := cfg.Client().Resources(ns).List(ctx, &pods); err != nil {
				t.Fatal(err)
			}
			var ips []string
			for _, p := range pods.Items {
				ips = append(ips, p.Status.PodIP)
			}
			if !slices.Contains(ips, c.BackendB) || slices.Contains(ips, c.BackendA) {
				t.Errorf("pods have IPs %v: want backend B %s, and backend A %s gone", ips, c.BackendB, c.BackendA)
			}
			return ctx
		}).
		Assess("the datapath is the one the cell ran on", func(ctx context.Context, t *testing.T, cfg *envconf.Config) context.Context {
			// The cluster switched its kube-proxy between the cells: the last (socket-LB) cell
			// left it without one.
			var ds appsv1.DaemonSet
			err := cfg.Client().Resources("kube-system").Get(ctx, "kube-proxy", "kube-system", &ds)
			if err == nil {
				t.Errorf("kube-proxy's DaemonSet is there after the socket-LB cell, which needs none")
			}
			if c.Datapath == "kube-proxy" && !hasProgress(c, "kube-proxy (iptables) forwards "+c.VIP) {
				t.Errorf("the kube-proxy cell has no record of kube-proxy's rules for %s", c.VIP)
			}
			return ctx
		}).
		Feature()
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

// hasProgress reports whether one of the cell's progress lines says what.
func hasProgress(c reports.Cell, what string) bool {
	return slices.ContainsFunc(c.Events, func(e event.Event) bool {
		return e.Kind == event.KindProgress && strings.Contains(e.Msg, what)
	})
}
