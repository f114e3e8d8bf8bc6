package kind

import (
	"strings"
	"testing"

	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"
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
	if _, err := renderConfig(ClusterConfig{ProxyMode: "userspace"}); err == nil || !strings.Contains(err.Error(), "userspace") {
		t.Errorf("renderConfig(userspace) = %v, want an error naming it", err)
	}
}
