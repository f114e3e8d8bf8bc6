package kind

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
)

// kube-proxy's state on the node, read the way an engineer would look at it: the nat table for
// the iptables mode, the kube-proxy nftables table, the kernel's IPVS table. The cell waits on
// it to know when the datapath forwards the service to a new backend, and records it as
// evidence.

// ProxyRules returns the lines of kube-proxy's state for mode on the node (its network
// namespace is that of process pid) that mention vip or backend.
func ProxyRules(ctx context.Context, pid int, mode string, vip, backend netip.Addr, port uint16) ([]string, error) {
	dump, err := dumpProxyState(ctx, pid, mode)
	if err != nil {
		return nil, err
	}
	if mode == "ipvs" {
		return ipvsLines(dump, vip, backend, port), nil
	}
	var out []string
	for _, l := range strings.Split(dump, "\n") {
		if strings.Contains(l, vip.String()) || (backend.IsValid() && strings.Contains(l, backend.String()+":")) {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out, nil
}

// dumpProxyState reads kube-proxy's rules for mode from the node.
func dumpProxyState(ctx context.Context, pid int, mode string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	switch mode {
	case "iptables":
		// kube-proxy picks the iptables backend the node already uses; read both.
		out, err := InNode(ctx, pid, "sh", "-c", "iptables-save -t nat 2>/dev/null; iptables-legacy-save -t nat 2>/dev/null; true")
		return string(out), err
	case "nftables":
		out, err := InNode(ctx, pid, "nft", "list", "table", "ip", "kube-proxy")
		return string(out), err
	case "ipvs":
		// The IPVS table of the node's network namespace, as the kernel shows it.
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/ip_vs", pid))
		return string(b), err
	}
	return "", fmt.Errorf("kube-proxy mode %q has no rules to read", mode)
}

// Forwards reports whether rules (ProxyRules' lines) send the service to backend:port.
func Forwards(mode string, rules []string, backend netip.Addr, port uint16) bool {
	want := netip.AddrPortFrom(backend, port).String()
	for _, l := range rules {
		switch mode {
		case "iptables":
			if strings.Contains(l, "--to-destination "+want) {
				return true
			}
		case "nftables":
			if strings.Contains(l, "dnat to "+want) {
				return true
			}
		case "ipvs":
			if strings.HasPrefix(l, "-> "+want) {
				return true
			}
		}
	}
	return false
}

// ipvsLines renders /proc/net/ip_vs's virtual service for vip:port and its real servers in
// dotted form ("TCP 10.96.12.7:2049 rr", "-> 10.244.0.6:2049 Masq 1 0 0").
func ipvsLines(table string, vip, backend netip.Addr, port uint16) []string {
	var out []string
	inService := false
	sc := bufio.NewScanner(strings.NewReader(table))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 2 && (f[0] == "TCP" || f[0] == "UDP"):
			ap, ok := hexAddrPort(f[1])
			inService = ok && ap.Addr() == vip && ap.Port() == port
			if inService {
				out = append(out, strings.Join(append([]string{f[0], ap.String()}, f[2:]...), " "))
			}
		case inService && len(f) >= 2 && f[0] == "->":
			if ap, ok := hexAddrPort(f[1]); ok {
				out = append(out, strings.Join(append([]string{"->", ap.String()}, f[2:]...), " "))
			}
		}
	}
	return out
}

// hexAddrPort reads /proc/net/ip_vs's "0A600001:0801".
func hexAddrPort(s string) (netip.AddrPort, bool) {
	a, p, ok := strings.Cut(s, ":")
	if !ok || len(a) != 8 || len(p) != 4 {
		return netip.AddrPort{}, false
	}
	var ip, port uint64
	if _, err := fmt.Sscanf(a, "%08X", &ip); err != nil {
		return netip.AddrPort{}, false
	}
	if _, err := fmt.Sscanf(p, "%04X", &port); err != nil {
		return netip.AddrPort{}, false
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(ip))
	return netip.AddrPortFrom(netip.AddrFrom4(b), uint16(port)), true
}
