package kind

import (
	"net/netip"
	"strings"
	"testing"
)

// A node's /proc/net/ip_vs with the lab's service (10.96.12.7:2049) and another.
const ipvsTable = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
TCP  0A600001:01BB rr
  -> AC120002:192B      Masq    1      0          0
TCP  0A600C07:0801 rr
  -> 0AF40006:0801      Masq    1      1          0
`

func TestIPVSLines(t *testing.T) {
	vip, b := netip.MustParseAddr("10.96.12.7"), netip.MustParseAddr("10.244.0.6")
	got := ipvsLines(ipvsTable, vip, b, 2049)
	want := []string{"TCP 10.96.12.7:2049 rr", "-> 10.244.0.6:2049 Masq 1 1 0"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("ipvsLines = %q, want %q", got, want)
	}
	if !Forwards("ipvs", got, b, 2049) {
		t.Error("Forwards(ipvs) = false for the listed real server")
	}
	if Forwards("ipvs", got, netip.MustParseAddr("10.244.0.5"), 2049) {
		t.Error("Forwards(ipvs) = true for a server that is not listed")
	}
	if got := ipvsLines(ipvsTable, netip.MustParseAddr("10.96.0.9"), b, 2049); len(got) != 0 {
		t.Errorf("ipvsLines for an absent VIP = %q, want none", got)
	}
}

func TestForwards(t *testing.T) {
	b := netip.MustParseAddr("10.244.0.6")
	tests := []struct {
		mode  string
		rules []string
		want  bool
	}{
		{"iptables", []string{`-A KUBE-SEP-ABC -p tcp -m comment --comment "nfslab-c0/nfs:nfs" -m tcp -j DNAT --to-destination 10.244.0.6:2049`}, true},
		{"iptables", []string{`-A KUBE-SEP-ABC -p tcp -m tcp -j DNAT --to-destination 10.244.0.60:2049`}, false},
		{"iptables", []string{`-A KUBE-SEP-ABC -s 10.244.0.6/32 -j KUBE-MARK-MASQ`}, false},
		{"nftables", []string{`meta l4proto tcp dnat to 10.244.0.6:2049`}, true},
		{"nftables", []string{`ip daddr 10.96.12.7 tcp dport 2049 goto service-X`}, false},
		{"ipvs", []string{"-> 10.244.0.6:2049 Masq 1 0 0"}, true},
		{"none", []string{"--to-destination 10.244.0.6:2049"}, false},
	}
	for _, tt := range tests {
		if got := Forwards(tt.mode, tt.rules, b, 2049); got != tt.want {
			t.Errorf("Forwards(%s, %q) = %v, want %v", tt.mode, tt.rules, got, tt.want)
		}
	}
}

func TestHexAddrPort(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"0A600C07:0801", "10.96.12.7:2049", true},
		{"AC120002:192B", "172.18.0.2:6443", true},
		{"0A600C07", "", false},
		{"0A600C0:0801", "", false},
		{"ZZ600C07:0801", "", false},
	}
	for _, tt := range tests {
		got, ok := hexAddrPort(tt.in)
		if ok != tt.ok || (ok && got.String() != tt.want) {
			t.Errorf("hexAddrPort(%q) = %v, %v; want %s, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestConfigMode(t *testing.T) {
	tests := map[string]string{
		"apiVersion: kubeproxy.config.k8s.io/v1alpha1\nmode: ipvs\n": "ipvs",
		"mode: \"nftables\"\n":           "nftables",
		"mode: \"\"\n":                   "iptables",
		"kind: KubeProxyConfiguration\n": "iptables",
	}
	for conf, want := range tests {
		if got := configMode(conf); got != want {
			t.Errorf("configMode(%q) = %q, want %q", conf, got, want)
		}
	}
}

func TestSetMode(t *testing.T) {
	tests := []struct{ conf, want string }{
		{"kind: KubeProxyConfiguration\nmode: iptables\nclusterCIDR: 10.244.0.0/16\n", "kind: KubeProxyConfiguration\nmode: ipvs\nclusterCIDR: 10.244.0.0/16\n"},
		{"kind: KubeProxyConfiguration\n", "kind: KubeProxyConfiguration\nmode: ipvs\n"},
	}
	for _, tt := range tests {
		if got := setMode(tt.conf, "ipvs"); got != tt.want {
			t.Errorf("setMode(%q) = %q, want %q", tt.conf, got, tt.want)
		}
		if configMode(setMode(tt.conf, "ipvs")) != "ipvs" {
			t.Errorf("configMode does not read back what setMode wrote")
		}
	}
}
