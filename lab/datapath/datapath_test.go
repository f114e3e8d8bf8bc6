package datapath

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nfslab/nfslab/lab/datapath/kubeproxy"
)

// TestKubeProxyAdapter checks what the kube-proxy datapath hands to iptables-restore for the
// multi-port form and for the single-port form, through a fake iptables that records its input.
func TestKubeProxyAdapter(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "log")
	script := "#!/bin/sh\ncase \"$*\" in *--noflush*) cat >> " + logPath + ";; esac\ncase \"$*\" in *\" -S \"*|*\" -C \"*) exit 1;; esac\nexit 0\n"
	for _, name := range []string{"fake-iptables", "fake-iptables-restore"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var cleared []string
	k := kubeProxy{&kubeproxy.Proxy{
		IPTables: filepath.Join(dir, "fake-iptables"),
		ClearUDPConntrack: func(vip netip.AddrPort, _ netip.Addr) (uint, error) {
			cleared = append(cleared, vip.String())
			return 0, nil
		},
	}}
	ctx := t.Context()
	if err := k.Install(ctx); err != nil {
		t.Fatal(err)
	}
	vip, podA := netip.MustParseAddr("10.96.0.50"), netip.MustParseAddr("10.0.0.11")
	svc := kubeproxy.Service{Namespace: ServiceNamespace, Name: ServiceName, VIP: vip}
	read := func() string {
		t.Helper()
		b, err := os.ReadFile(logPath)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(logPath); err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	read() // the skeleton

	ports := []Port{{Name: "nfs-udp", Port: 2049, Protocol: "udp"}, {Name: "mountd-udp", Port: 20048, Protocol: "udp"}}
	if err := k.SetService(ctx, vip, ports, podA); err != nil {
		t.Fatal(err)
	}
	svc.Ports = []kubeproxy.ServicePort{{Name: "nfs-udp", Port: 2049, Protocol: "udp"}, {Name: "mountd-udp", Port: 20048, Protocol: "udp"}}
	if got, want := read(), kubeproxy.Rules(svc, podA); got != want {
		t.Errorf("SetService restore input:\n%s\nwant:\n%s", got, want)
	}
	if strings.Join(cleared, " ") != "10.96.0.50:2049 10.96.0.50:20048" {
		t.Errorf("UDP conntrack cleanups: %v", cleared)
	}

	if err := k.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
