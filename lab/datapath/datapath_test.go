package datapath

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/nfslab/nfslab/lab/datapath/kubeproxy"
	"github.com/nfslab/nfslab/lab/internal/bpftest"
	"github.com/nfslab/nfslab/lab/socklb"
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
	k := kubeProxy{p: &kubeproxy.Proxy{
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

// TestCheckSocketLB: the judgement of socketLB.Verify on what the kernel reports — the sock_addr
// programs effective at the root cgroup and the service map read back.
func TestCheckSocketLB(t *testing.T) {
	ours := []ebpf.ProgramID{41, 42, 43}
	prog := func(id ebpf.ProgramID, name string) socklb.AttachedProgram {
		attach := map[string]ebpf.AttachType{"connect4": ebpf.AttachCGroupInet4Connect, "sendmsg4": ebpf.AttachCGroupUDP4Sendmsg, "recvmsg4": ebpf.AttachCGroupUDP4Recvmsg}
		return socklb.AttachedProgram{ID: id, Name: "nfslab_" + name, Attach: attach[name]}
	}
	mine := []socklb.AttachedProgram{prog(41, "connect4"), prog(42, "sendmsg4"), prog(43, "recvmsg4")}
	vip := netip.MustParseAddr("10.96.0.50")
	nfs := []Port{{Name: "nfs", Port: 2049, Protocol: "tcp"}}
	v3 := []Port{{Name: "nfs", Port: 2049, Protocol: "tcp"}, {Name: "nfs-udp", Port: 2049, Protocol: "udp"}, {Name: "mountd", Port: 20048, Protocol: "tcp"}}
	ap := netip.MustParseAddrPort
	tests := []struct {
		name      string
		effective []socklb.AttachedProgram
		held      []netip.AddrPort
		ports     []Port
		wantErr   string // "" for none
	}{
		{name: "this cell's programs and VIP alone", effective: mine, held: []netip.AddrPort{ap("10.96.0.50:2049")}, ports: nfs},
		{name: "one entry per port number, any order", effective: mine, held: []netip.AddrPort{ap("10.96.0.50:20048"), ap("10.96.0.50:2049")}, ports: v3},
		{name: "a previous cell's socket-LB still attached", effective: append(slices.Clone(mine), prog(7, "connect4")),
			held: []netip.AddrPort{ap("10.96.0.50:2049")}, ports: nfs, wantErr: "other than this cell's socket-LB are effective at /sys/fs/cgroup: CGroupInet4Connect nfslab_connect4"},
		{name: "not attached", effective: mine[:2], held: []netip.AddrPort{ap("10.96.0.50:2049")}, ports: nfs, wantErr: "program 43 is effective 0 times"},
		{name: "attached twice", effective: append(slices.Clone(mine), mine[0]), held: []netip.AddrPort{ap("10.96.0.50:2049")}, ports: nfs, wantErr: "program 41 is effective 2 times"},
		{name: "another VIP in the map", effective: mine, held: []netip.AddrPort{ap("10.96.0.50:2049"), ap("10.96.0.51:2049")}, ports: nfs,
			wantErr: "service map holds [10.96.0.50:2049 10.96.0.51:2049], want this cell's [10.96.0.50:2049] alone"},
		{name: "the cell's VIP missing", effective: mine, held: nil, ports: nfs, wantErr: "service map holds [], want"},
		{name: "a port missing", effective: mine, held: []netip.AddrPort{ap("10.96.0.50:2049")}, ports: v3, wantErr: "want this cell's [10.96.0.50:2049 10.96.0.50:20048] alone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkSocketLB("/sys/fs/cgroup", tt.effective, ours, tt.held, serviceKeys(vip, tt.ports))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("error %v, want one saying %q", err, tt.wantErr)
			}
		})
	}
}

// TestVerifyOnACgroup checks both datapaths' Verify against the kernel, on a throw-away cgroup
// standing in for the root: what kube-proxy's check and the socket-LB's read back.
func TestVerifyOnACgroup(t *testing.T) {
	cg := bpftest.TempCgroup(t, socklb.Cgroup2Mount, socklb.ErrNoCgroup2)
	if inherited, err := socklb.EffectiveSockAddrPrograms(cg); err != nil || len(inherited) > 0 {
		t.Skipf("the test cgroup inherits sock_addr programs (%v, %v): kube-proxy's check cannot pass here", inherited, err)
	}
	ctx := t.Context()
	vip, podA := netip.MustParseAddr("10.96.0.50"), netip.MustParseAddr("10.0.0.11")
	ports := []Port{{Name: "nfs", Port: 2049, Protocol: "tcp"}}
	kp, err := New(KubeProxy, Config{CgroupRoot: cg})
	if err != nil {
		t.Fatal(err)
	}
	if err := kp.Verify(vip, ports); err != nil {
		t.Fatalf("kube-proxy with nothing at the cgroup: %v", err)
	}

	install := func() Datapath {
		t.Helper()
		lb, err := New(SocketLB, Config{CgroupRoot: cg, WatchPort: 2049})
		if err != nil {
			t.Fatal(err)
		}
		if err := lb.Install(ctx); errors.Is(err, ebpf.ErrNotSupported) {
			t.Skipf("BPF unavailable: %v", err)
		} else if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = lb.Close(ctx) })
		return lb
	}
	lb := install()
	if err := lb.SetService(ctx, vip, ports, podA); err != nil {
		t.Fatal(err)
	}
	if err := lb.Verify(vip, ports); err != nil {
		t.Errorf("socket-LB serving the cell's VIP alone: %v", err)
	}
	if err := lb.Verify(netip.MustParseAddr("10.96.0.51"), ports); err == nil || !strings.Contains(err.Error(), "service map holds [10.96.0.50:2049]") {
		t.Errorf("socket-LB asked for another VIP: %v, want the map read back", err)
	}
	if err := kp.Verify(vip, ports); err == nil || !strings.Contains(err.Error(), "nfslab_connect4") {
		t.Errorf("kube-proxy with a socket-LB at the cgroup: %v, want its programs named", err)
	}
	other := install()
	if err := lb.Verify(vip, ports); err == nil || !strings.Contains(err.Error(), "other than this cell's socket-LB") {
		t.Errorf("socket-LB with a second one at the cgroup: %v", err)
	}
	for _, d := range []Datapath{other, lb} {
		if err := d.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := kp.Verify(vip, ports); err != nil {
		t.Errorf("kube-proxy after the socket-LBs closed: %v", err)
	}
}

// TestSocketLBForwarding reads back what the socket-LB's map holds after each SetService. The
// programs are loaded but not attached: only the maps are read.
func TestSocketLBForwarding(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs")
	}
	lb, err := socklb.Load(socklb.Config{})
	if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, syscall.EPERM) {
		t.Skipf("BPF unavailable: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	s := &socketLB{lb: lb}
	t.Cleanup(func() {
		if err := s.Close(t.Context()); err != nil {
			t.Error(err)
		}
	})
	vip := netip.MustParseAddr("10.96.0.50")
	nfs := Port{Name: "nfs", Port: 2049}
	for _, backend := range []netip.Addr{netip.MustParseAddr("10.0.0.11"), {}, netip.MustParseAddr("10.0.0.12")} {
		if err := s.SetService(t.Context(), vip, []Port{nfs}, backend); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Forwarding(t.Context(), vip, nfs); err != nil || got != backend {
			t.Errorf("after pointing at %v: Forwarding = %v, %v", backend, got, err)
		}
	}
	if got, err := s.Forwarding(t.Context(), vip, Port{Port: 111}); err != nil || got.IsValid() {
		t.Errorf("a port never programmed: Forwarding = %v, %v; want none", got, err)
	}
}

func TestProxyMode(t *testing.T) {
	tests := []struct{ datapath, want string }{
		{KubeProxy, "iptables"},
		{KubeProxyIPVS, "ipvs"},
		{KubeProxyNFTables, "nftables"},
		{SocketLB, "none"},
		{"cilium", "none"},
		{"cilium-kind-cgroup", "none"},
		{"cilium-hostns-only", "none"},
		// Cilium without socket-LB runs beside kube-proxy: its replacement would turn socket-LB on.
		{"cilium-no-socket-lb", "iptables"},
	}
	for _, tt := range tests {
		if got, ok := ProxyMode(tt.datapath); !ok || got != tt.want {
			t.Errorf("ProxyMode(%s) = %q, %t; want %q", tt.datapath, got, ok, tt.want)
		}
	}
	if _, ok := ProxyMode("kube-proxy-userspace"); ok {
		t.Error("ProxyMode of an unknown datapath is ok")
	}
}
