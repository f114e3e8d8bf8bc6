package doctor

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func node(name, kernel, os string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status:     corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{KernelVersion: kernel, OSImage: os}},
	}
}

func ciliumConfig(ns string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cilium-config", Namespace: ns}, Data: data}
}

func TestCiliumSocketLB(t *testing.T) {
	tests := []struct {
		name  string
		data  map[string]string
		want  SocketLBState
		notes []string
	}{
		{"kube-proxy replacement", map[string]string{"kube-proxy-replacement": "true"}, SocketLBOn, nil},
		{"strict (before 1.14)", map[string]string{"kube-proxy-replacement": "strict"}, SocketLBOn, nil},
		{"probe", map[string]string{"kube-proxy-replacement": "probe"}, SocketLBOn, nil},
		{"socket-LB without replacement", map[string]string{"kube-proxy-replacement": "false", "bpf-lb-sock": "true"}, SocketLBOn, nil},
		{"host-reachable services (before 1.12)", map[string]string{"kube-proxy-replacement": "partial", "enable-host-reachable-services": "true", "host-reachable-services-protos": "tcp"}, SocketLBOn, []string{"UDP is not translated"}},
		{"host namespace only", map[string]string{"kube-proxy-replacement": "true", "bpf-lb-sock-hostns-only": "true"}, SocketLBOn, []string{"host-namespace sockets"}},
		{"lb-only", map[string]string{"datapath-mode": "lb-only"}, SocketLBOn, nil},
		{"own cgroup root", map[string]string{"kube-proxy-replacement": "true", "cgroup-root": "/run/cilium/cgroupv2"}, SocketLBOn, []string{"cgroup-root=/run/cilium/cgroupv2"}},
		{"kube-proxy kept", map[string]string{"kube-proxy-replacement": "false"}, SocketLBOff, nil},
		{"partial without socket-LB", map[string]string{"kube-proxy-replacement": "partial", "enable-host-reachable-services": "false"}, SocketLBOff, nil},
		{"disabled", map[string]string{"kube-proxy-replacement": "disabled", "bpf-lb-sock": "false"}, SocketLBOff, nil},
		{"nothing set", map[string]string{}, SocketLBOff, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CiliumSocketLB(tt.data)
			if got.State != tt.want {
				t.Fatalf("state %s (%s), want %s", got.State, got.Reason, tt.want)
			}
			if got.Reason == "" {
				t.Error("no reason")
			}
			notes := strings.Join(got.Notes, "\n")
			for _, n := range tt.notes {
				if !strings.Contains(notes, n) {
					t.Errorf("notes %q lack %q", got.Notes, n)
				}
			}
		})
	}
}

func TestInspectCluster(t *testing.T) {
	tab := loadTable(t)
	nodes := []runtime.Object{
		node("fixed", "6.1.0-56-amd64", "Debian GNU/Linux 12 (bookworm)"),
		node("old", "5.15.0-100-generic", "Ubuntu 22.04.4 LTS"),
		node("odd", "5.15.0-1063-aws", "Ubuntu 22.04.4 LTS"),
	}
	tests := []struct {
		name    string
		objects []runtime.Object
		socket  SocketLBState
		want    Outcome
		nodes   map[string]Outcome
	}{
		{
			name:    "socket-LB on: old kernels at risk",
			objects: append([]runtime.Object{ciliumConfig("kube-system", map[string]string{"kube-proxy-replacement": "true"})}, nodes...),
			socket:  SocketLBOn, want: Affected,
			nodes: map[string]Outcome{"fixed": NotAffected, "old": Affected, "odd": Undecided},
		},
		{
			name:    "Cilium installed elsewhere, socket-LB off",
			objects: append([]runtime.Object{ciliumConfig("cilium", map[string]string{"kube-proxy-replacement": "false"})}, nodes...),
			socket:  SocketLBOff, want: NotAffected,
			nodes: map[string]Outcome{"fixed": NotAffected, "old": NotAffected, "odd": NotAffected},
		},
		{
			name:    "no Cilium",
			objects: nodes,
			socket:  SocketLBNotDetected, want: NotAffected,
		},
		{
			name:    "only fixed kernels under socket-LB",
			objects: []runtime.Object{ciliumConfig("kube-system", map[string]string{"bpf-lb-sock": "true"}), node("a", "6.6.30", "x"), node("b", "4.18.0-553.16.1.el8_10.x86_64", "Rocky Linux 8.10")},
			socket:  SocketLBOn, want: NotAffected,
		},
		{
			name:    "no nodes",
			objects: nil,
			socket:  SocketLBNotDetected, want: Undecided,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep, err := InspectCluster(context.Background(), fake.NewClientset(tt.objects...), tab)
			if err != nil {
				t.Fatal(err)
			}
			if rep.SocketLB.State != tt.socket {
				t.Errorf("socket-LB %s (%s), want %s", rep.SocketLB.State, rep.SocketLB.Reason, tt.socket)
			}
			if rep.Outcome != tt.want {
				t.Errorf("outcome %s (%s), want %s", rep.Outcome, rep.Reason, tt.want)
			}
			for _, n := range rep.Nodes {
				if want, ok := tt.nodes[n.Name]; ok && n.Outcome != want {
					t.Errorf("node %s: %s (%s), want %s", n.Name, n.Outcome, n.Reason, want)
				}
			}
		})
	}
}

// An API server that refuses nodes is an error; one that refuses ConfigMaps leaves socket-LB
// unknown, which puts nodes with unfixed kernels at "unknown", not "not affected".
func TestInspectClusterRefused(t *testing.T) {
	tab := loadTable(t)
	forbid := func(resource string) *fake.Clientset {
		c := fake.NewClientset(node("old", "5.15.0-100-generic", "Ubuntu"), node("new", "6.8.0-31-generic", "Ubuntu"))
		c.PrependReactor("*", resource, func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, errors.New("forbidden")
		})
		return c
	}
	if _, err := InspectCluster(context.Background(), forbid("nodes"), tab); err == nil || !strings.Contains(err.Error(), "list nodes") {
		t.Errorf("nodes refused: err %v, want list nodes error", err)
	}
	rep, err := InspectCluster(context.Background(), forbid("configmaps"), tab)
	if err != nil {
		t.Fatal(err)
	}
	if rep.SocketLB.State != SocketLBUnknown || rep.Outcome != Undecided {
		t.Errorf("configmaps refused: socket-LB %s, outcome %s (%s); want unknown, unknown", rep.SocketLB.State, rep.Outcome, rep.Reason)
	}
	for _, n := range rep.Nodes {
		if n.Name == "new" && n.Outcome != NotAffected {
			t.Errorf("node with a fixed kernel: %s", n.Outcome)
		}
	}
}

func TestClientFromKubeconfigNamesTheFile(t *testing.T) {
	_, _, err := ClientFromKubeconfig("/nonexistent/kubeconfig", 0)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/kubeconfig") {
		t.Errorf("err %v, want one naming the file", err)
	}
}
