package kind

import (
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"

	"github.com/nfslab/nfslab/lab/datapath/cilium"
)

// TestConfigText: the embedded cluster config renders for every kube-proxy mode into a valid
// kind v1alpha4 Cluster with that mode, one control-plane node mounting the patches, no default
// CNI unless the node image brings kind's (then the controller manager allocates pod CIDRs); an
// unknown mode is refused before anything is written.
func TestConfigText(t *testing.T) {
	for _, mode := range ProxyModes() {
		t.Run(mode, func(t *testing.T) {
			text, err := configText(ClusterConfig{ProxyMode: mode}, "/run/x/patches")
			if err != nil {
				t.Fatal(err)
			}
			var c v1alpha4.Cluster
			if err := yaml.UnmarshalStrict(text, &c); err != nil {
				t.Fatalf("not a kind Cluster: %v\n%s", err, text)
			}
			if string(c.Networking.KubeProxyMode) != mode || !c.Networking.DisableDefaultCNI {
				t.Errorf("networking %+v", c.Networking)
			}
			if len(c.Nodes) != 1 || c.Nodes[0].Role != v1alpha4.ControlPlaneRole ||
				len(c.Nodes[0].ExtraMounts) != 2 || c.Nodes[0].ExtraMounts[0].HostPath != "/run/x/patches" ||
				c.Nodes[0].ExtraMounts[1].ContainerPath != ExportHostPath {
				t.Errorf("nodes %+v", c.Nodes)
			}
			patches := strings.Join(c.KubeadmConfigPatches, "\n")
			if strings.Contains(patches, "node-ipam-controller") {
				t.Error("pod CIDRs are allocated for nfslab's own node image, whose bridge has its own")
			}
			if !strings.Contains(patches, "addon/coredns") {
				t.Error("CoreDNS is not skipped")
			}
			// Our skipPhases replaces kind's own list, which skips kube-proxy for "none".
			if skipped := strings.Contains(patches, "- addon/kube-proxy"); skipped != (mode == "none") {
				t.Errorf("kube-proxy addon skipped: %v, for mode %s", skipped, mode)
			}
		})
	}
	text, err := configText(ClusterConfig{ProxyMode: "iptables", APIServerPort: 6443}, "/p")
	var c v1alpha4.Cluster
	if err != nil || yaml.UnmarshalStrict(text, &c) != nil || c.Networking.APIServerAddress != "0.0.0.0" || c.Networking.APIServerPort != 6443 {
		t.Errorf("with an API server port: %+v, %v", c.Networking, err)
	}
	// The host reaches a kept cluster's API server as 127.0.0.1: its certificate must say so.
	if p := strings.Join(c.KubeadmConfigPatches, "\n"); !strings.Contains(p, "certSANs:") || !strings.Contains(p, `- "127.0.0.1"`) {
		t.Errorf("with an API server port, the certificate's SANs lack 127.0.0.1:\n%s", p)
	}
	text, err = configText(ClusterConfig{ProxyMode: "none", KindCNI: true}, "/p")
	c = v1alpha4.Cluster{}
	if err != nil || yaml.UnmarshalStrict(text, &c) != nil || c.Networking.DisableDefaultCNI ||
		!strings.Contains(strings.Join(c.KubeadmConfigPatches, "\n"), ",node-ipam-controller\"") {
		t.Errorf("with kind's CNI: %+v, %v\n%s", c.Networking, err, text)
	}
	// Two nodes: a worker that also has the export, joined with the control plane's patience,
	// which needs the bootstrap signer to sign the discovery ConfigMap.
	text, err = configText(ClusterConfig{ProxyMode: "iptables", Nodes: 2}, "/p")
	c = v1alpha4.Cluster{}
	if err != nil || yaml.UnmarshalStrict(text, &c) != nil {
		t.Fatalf("two nodes: %v\n%s", err, text)
	}
	if len(c.Nodes) != 2 || c.Nodes[1].Role != v1alpha4.WorkerRole || len(c.Nodes[1].ExtraMounts) != 1 ||
		c.Nodes[1].ExtraMounts[0].ContainerPath != ExportHostPath {
		t.Errorf("two nodes: %+v", c.Nodes)
	}
	if p := strings.Join(c.KubeadmConfigPatches, "\n"); !strings.Contains(p, "kind: JoinConfiguration") || !strings.Contains(p, ",bootstrap-signer-controller\"") {
		t.Errorf("two nodes: patches lack the join's timeouts or the bootstrap signer:\n%s", p)
	}
	text, _ = configText(ClusterConfig{ProxyMode: "iptables"}, "/p")
	if strings.Contains(string(text), "JoinConfiguration") || strings.Contains(string(text), "bootstrap-signer") {
		t.Error("one node: the config carries what only a join needs")
	}
	if _, err := renderConfig(ClusterConfig{ProxyMode: "iptables", Nodes: 3}); err == nil || !strings.Contains(err.Error(), "3 nodes") {
		t.Errorf("renderConfig(3 nodes) = %v, want an error naming the count", err)
	}
	if _, err := renderConfig(ClusterConfig{ProxyMode: "userspace"}); err == nil || !strings.Contains(err.Error(), "userspace") {
		t.Errorf("renderConfig(userspace) = %v, want an error naming it", err)
	}
}

func TestPodSubnet(t *testing.T) {
	for i, want := range []string{"10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"} {
		if got, err := podSubnet(i); err != nil || got.String() != want {
			t.Errorf("podSubnet(%d) = %v, %v; want %s", i, got, err, want)
		}
	}
	if _, err := podSubnet(-1); err == nil {
		t.Error("podSubnet(-1) has a range")
	}
}

func TestOrderNodes(t *testing.T) {
	tests := []struct {
		in, want []string
		err      bool
	}{
		{in: []string{"nfslab-control-plane"}, want: []string{"nfslab-control-plane"}},
		{in: []string{"nfslab-worker", "nfslab-control-plane"}, want: []string{"nfslab-control-plane", "nfslab-worker"}},
		{in: []string{"nfslab-worker10", "nfslab-worker2", "nfslab-control-plane", "nfslab-worker"},
			want: []string{"nfslab-control-plane", "nfslab-worker", "nfslab-worker2", "nfslab-worker10"}},
		{in: []string{"nfslab-worker"}, err: true},
		{in: nil, err: true},
	}
	for _, tt := range tests {
		got, err := orderNodes(tt.in)
		if (err != nil) != tt.err || !slices.Equal(got, tt.want) {
			t.Errorf("orderNodes(%v) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// TestConfigTextCilium: a Cilium cluster has the node IPAM controller (Cilium's IPAM reads the
// node's pod range); the datapaths that attach at the VM's root cgroup get that root mounted
// into the control-plane node where the chart's values say, the others do not.
func TestConfigTextCilium(t *testing.T) {
	for _, d := range cilium.Datapaths() {
		t.Run(d, func(t *testing.T) {
			cfg := ClusterConfig{ProxyMode: "none", Cilium: &cilium.Install{Datapath: d, Version: "v1.19.7", Objects: []map[string]any{{}}}}
			text, err := configText(cfg, "/p")
			var c v1alpha4.Cluster
			if err != nil || yaml.UnmarshalStrict(text, &c) != nil {
				t.Fatalf("%v\n%s", err, text)
			}
			if !strings.Contains(strings.Join(c.KubeadmConfigPatches, "\n"), ",node-ipam-controller") {
				t.Error("no node IPAM controller")
			}
			var vmRoot bool
			for _, m := range c.Nodes[0].ExtraMounts {
				if m.HostPath == "/sys/fs/cgroup" && m.ContainerPath == cilium.NodeCgroupRoot {
					vmRoot = true
				}
			}
			if vmRoot != cilium.VMRoot(d) {
				t.Errorf("the VM's cgroup root mounted into the node: %v, want %v (%+v)", vmRoot, cilium.VMRoot(d), c.Nodes[0].ExtraMounts)
			}
		})
	}
}

func TestCheckCilium(t *testing.T) {
	objs := []map[string]any{{"kind": "DaemonSet"}}
	tests := []struct {
		name string
		cfg  ClusterConfig
		want string // "" for no error
	}{
		{"no Cilium", ClusterConfig{ProxyMode: "iptables"}, ""},
		{"ok", ClusterConfig{ProxyMode: "none", Cilium: &cilium.Install{Datapath: cilium.VMRootSocketLB, Objects: objs}}, ""},
		{"kind cgroup on two nodes", ClusterConfig{ProxyMode: "none", Nodes: 2, Cilium: &cilium.Install{Datapath: cilium.KindCgroup, Objects: objs}}, ""},
		{"kube-proxy beside it", ClusterConfig{ProxyMode: "iptables", Cilium: &cilium.Install{Datapath: cilium.VMRootSocketLB, Objects: objs}}, "must be none"},
		{"no objects", ClusterConfig{ProxyMode: "none", Cilium: &cilium.Install{Datapath: cilium.KindCgroup}}, "no objects"},
		{"beside kube-proxy", ClusterConfig{ProxyMode: "iptables", Cilium: &cilium.Install{Datapath: cilium.NoSocketLB, Objects: objs}}, ""},
		{"beside no kube-proxy", ClusterConfig{ProxyMode: "none", Cilium: &cilium.Install{Datapath: cilium.NoSocketLB, Objects: objs}}, "must be iptables"},
		{"unknown datapath", ClusterConfig{ProxyMode: "none", Cilium: &cilium.Install{Datapath: "socket-lb", Objects: objs}}, "socket-lb"},
		{"root cgroup on two nodes", ClusterConfig{ProxyMode: "none", Nodes: 2, Cilium: &cilium.Install{Datapath: cilium.HostNSOnly, Objects: objs}}, "one node only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkCilium(tt.cfg)
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("checkCilium = %v, want %q", err, tt.want)
			}
		})
	}
}
