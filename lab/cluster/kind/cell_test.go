package kind

import (
	"context"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/nfslab/nfslab/lab/datapath"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/fault"
)

// fakeFeed is a socket-LB stand-in that records what the informer programmed and what was read
// back from it.
type fakeFeed struct {
	mu    sync.Mutex
	got   []netip.Addr
	reads []netip.Addr
}

func (f *fakeFeed) SetService(_ context.Context, _ netip.Addr, _ []datapath.Port, b netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, b)
	return nil
}

func (f *fakeFeed) Forwarding(context.Context, netip.Addr, datapath.Port) (netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b netip.Addr
	if len(f.got) > 0 {
		b = f.got[len(f.got)-1]
	}
	f.reads = append(f.reads, b)
	return b, nil
}

// recorder collects a cell's observations.
type recorder struct {
	mu  sync.Mutex
	evs []event.Event
}

func (r *recorder) record(e event.Event) event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, e)
	return e
}

func (r *recorder) services() []event.ServiceObs {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []event.ServiceObs
	for _, e := range r.evs {
		if e.Service != nil {
			out = append(out, *e.Service)
		}
	}
	return out
}

func slice(ns string, ips ...string) *discoveryv1.EndpointSlice {
	yes := true
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "nfs-abc", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: serviceName}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, ip := range ips {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: &yes}})
	}
	return s
}

// TestCellClusterSocketLB walks a socket-LB cell's cluster through its life with a fake API
// server playing the cluster's controllers: the Service gets a ClusterIP, the Deployment's pod
// becomes Ready, the EndpointSlice lists it, the informer programs the datapath; the pod is
// deleted and replaced.
func TestCellClusterSocketLB(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const ns = "nfslab-c3"
	cs := fake.NewClientset()
	cs.PrependReactor("create", "services", func(a k8stesting.Action) (bool, runtime.Object, error) {
		svc := a.(k8stesting.CreateAction).GetObject().(*corev1.Service)
		svc.Spec.ClusterIP = "10.96.12.7"
		return false, svc, nil
	})
	feed := &fakeFeed{}
	rec := &recorder{}
	cc, err := NewCellCluster(&Cluster{Client: cs}, CellConfig{Index: 3, NFS: "4.1", Port: 2049, Image: "img", ProxyMode: "none", Feed: feed}, rec.record)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cc.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	if got := cc.Service().VIP; got != netip.MustParseAddr("10.96.12.7") {
		t.Fatalf("VIP = %v", got)
	}
	// The Deployment controller and kubelet: pod a, Ready.
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, readyPod(ns, "a", "10.244.0.5"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	a, err := cc.StartBackend(ctx)
	if err != nil || a.Name() != "a" {
		t.Fatalf("StartBackend = %v, %v", a, err)
	}
	if _, err := cs.AppsV1().Deployments(ns).Get(ctx, "nfs-ganesha", metav1.GetOptions{}); err != nil {
		t.Fatalf("the first StartBackend did not create the Deployment: %v", err)
	}
	if _, err := cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice(ns, "10.244.0.5"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cc.Publish(ctx, a); err != nil {
		t.Fatal(err)
	}
	// The fault: the pod goes, its endpoint leaves the slice, the replacement b comes.
	if err := a.Fault(ctx, fault.ForceDelete); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.DiscoveryV1().EndpointSlices(ns).Update(ctx, slice(ns), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cc.Publish(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, readyPod(ns, "b", "10.244.0.9"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b, err := cc.StartBackend(ctx)
	if err != nil || b.Name() != "b" {
		t.Fatalf("StartBackend (replacement) = %v, %v", b, err)
	}
	if _, err := cs.DiscoveryV1().EndpointSlices(ns).Update(ctx, slice(ns, "10.244.0.9"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cc.Publish(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := cc.Teardown(ctx); err != nil {
		t.Fatal(err)
	}

	feed.mu.Lock()
	programmed, reads := slices.Clone(feed.got), slices.Clone(feed.reads)
	feed.mu.Unlock()
	a5, b9 := netip.MustParseAddr("10.244.0.5"), netip.MustParseAddr("10.244.0.9")
	if !slices.Contains(programmed, a5) || programmed[len(programmed)-1] != b9 {
		t.Errorf("the informer programmed %v; want 10.244.0.5 and, last, 10.244.0.9", programmed)
	}
	// The datapath records say when the datapath forwarded to whom; the watched ones when the
	// slice listed whom.
	var dp, watched [][]string
	for _, s := range rec.services() {
		if s.VIP != "10.96.12.7" {
			t.Errorf("service record with VIP %q", s.VIP)
		}
		if s.Datapath {
			dp = append(dp, s.Endpoints)
		} else {
			watched = append(watched, s.Endpoints)
		}
	}
	if len(dp) == 0 || !slices.Equal(dp[len(dp)-1], []string{"10.244.0.9"}) {
		t.Errorf("datapath records %v; want the last to be [10.244.0.9]", dp)
	}
	// Each datapath record is a read-back of the datapath, not what it was told.
	var read [][]string
	for _, r := range reads {
		if r.IsValid() {
			read = append(read, []string{r.String()})
		} else {
			read = append(read, []string{})
		}
	}
	if !reflect.DeepEqual(dp, read) {
		t.Errorf("datapath records %v; want the read-backs %v", dp, read)
	}
	if len(watched) != 3 || !slices.Equal(watched[0], []string{"10.244.0.5"}) || len(watched[1]) != 0 || !slices.Equal(watched[2], []string{"10.244.0.9"}) {
		t.Errorf("watched records %v; want [10.244.0.5] [] [10.244.0.9]", watched)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err == nil {
		t.Error("Teardown left the namespace")
	}
}

func readyPod(ns, name, ip string) *corev1.Pod {
	p := pod(name, ip, true, false)
	p.Namespace = ns
	return p
}

func TestNewCellClusterRefuses(t *testing.T) {
	c := &Cluster{Client: fake.NewClientset()}
	if _, err := NewCellCluster(c, CellConfig{NFS: "4.1", Port: 2049, ProxyMode: "none"}, nil); err == nil {
		t.Error("a cluster without kube-proxy and without a datapath to feed was accepted")
	}
	if _, err := NewCellCluster(c, CellConfig{NFS: "3", Port: 2049, ProxyMode: "iptables"}, nil); err == nil {
		t.Error("NFSv3 (two ports, rpcbind) was accepted by the kind form")
	}
}

func TestBackendFaultUnknown(t *testing.T) {
	b := &Backend{pod: Pod{Name: "a"}, w: NewWorkload(fake.NewClientset(), "ns", "img", "", ""), record: func(e event.Event) event.Event { return e }}
	if err := b.Fault(context.Background(), fault.NodeCrash); err == nil {
		t.Error("node-crash was accepted by a kind backend")
	}
}

// TestComeback: how a backend came to serve, as the cell tells it.
func TestComeback(t *testing.T) {
	ip := netip.MustParseAddr
	a := Pod{Name: "a", IP: ip("10.244.1.2"), Node: "nfslab-worker"}
	tests := []struct {
		name string
		seen map[string]Pod
		p    Pod
		want string
	}{
		{"first", map[string]Pod{}, a, ""},
		{"replaced", map[string]Pod{"a": a}, Pod{Name: "b", IP: ip("10.244.1.3"), Node: "nfslab-worker"}, "the ReplicaSet replaced the backend with pod b (10.244.1.3, on nfslab-worker)"},
		{"in place", map[string]Pod{"a": a}, Pod{Name: "a", IP: a.IP, Restarts: 1}, "restarted pod a's server container in place (restarts 0 → 1): the pod kept its IP 10.244.1.2"},
		{"new sandbox", map[string]Pod{"a": a}, Pod{Name: "a", IP: ip("10.244.1.3"), Restarts: 1}, "gave pod a a new sandbox (restarts 0 → 1): its IP is now 10.244.1.3, was 10.244.1.2"},
	}
	for _, tt := range tests {
		got := comeback(tt.seen, tt.p)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("%s: comeback = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestRestartNodeRefusesTheMountingNode: restart-node never restarts the node that mounts.
func TestRestartNodeRefusesTheMountingNode(t *testing.T) {
	for _, node := range []string{"", controlPlaneNode} {
		b := &Backend{pod: Pod{Name: "a", Node: node}, record: func(e event.Event) event.Event { return e }}
		if err := b.Fault(context.Background(), fault.RestartNode); err == nil || !strings.Contains(err.Error(), "kind.nodes: 2") {
			t.Errorf("restart-node of a pod on %q = %v, want a refusal naming kind.nodes", node, err)
		}
	}
}
