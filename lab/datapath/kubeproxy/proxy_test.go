package kubeproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

func TestSetBackendBeforeInstall(t *testing.T) {
	p := New("")
	if err := p.SetBackend(t.Context(), nfsSvc, podA); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("err = %v, want ErrNotInstalled", err)
	}
	if err := p.SetBackend(t.Context(), Service{}, podA); err == nil {
		t.Fatal("invalid service accepted")
	}
	if err := p.Close(t.Context()); err != nil {
		t.Fatalf("Close of an unused Proxy = %v", err)
	}
}

// TestProxyCommandsWithFakeIPTables runs Proxy against a fake iptables that logs its arguments
// (and stdin for restore) and answers -S/-C with "absent", and a fake conntrack cleaner that
// logs its calls, through a TCP Service, then an NFSv3-over-UDP Service that replaces it.
func TestProxyCommandsWithFakeIPTables(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "log")
	script := `#!/bin/sh
echo "$(basename "$0") $*" >> ` + logPath + `
case "$*" in *-restore*|*--noflush*) sed 's/^/  | /' >> ` + logPath + `;; esac
case "$*" in *" -S "*|*" -C "*) exit 1;; esac
exit 0
`
	for _, name := range []string{"fake-iptables", "fake-iptables-restore"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var cleared []string
	p := &Proxy{
		IPTables: filepath.Join(dir, "fake-iptables"),
		ClearUDPConntrack: func(vip netip.AddrPort, keep netip.Addr) (uint, error) {
			cleared = append(cleared, fmt.Sprintf("%v keep %v", vip, keep))
			return 0, nil
		},
	}
	ctx := t.Context()
	if err := p.Install(ctx); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		svc     Service
		backend netip.Addr
	}{{nfsSvc, podA}, {nfsSvc, podB}, {v3UDPSvc, podA}, {v3UDPSvc, podB}, {v3UDPSvc, netip.Addr{}}, {v3UDPSvc, podB}} {
		if err := p.SetBackend(ctx, step.svc, step.backend); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	tcpA, tcpB := Chains(nfsSvc, podA), Chains(nfsSvc, podB)
	udpA, udpB := Chains(v3UDPSvc, podA), Chains(v3UDPSvc, podB)
	want := []string{
		"fake-iptables -w -t nat -S KUBE-SERVICES",
		"fake-iptables-restore -w --noflush",
	}
	want = append(want, prefixLines(skeleton())...)
	restore := func(text string) {
		want = append(want, "fake-iptables-restore -w --noflush")
		want = append(want, prefixLines(text)...)
	}
	sorted := func(cs ...[]string) []string { return slices.Sorted(slices.Values(slices.Concat(cs...))) }
	restore(Rules(nfsSvc, podA))
	restore(render(nfsSvc, podB, []string{tcpA[1]}))             // A's endpoint chain goes
	restore(render(v3UDPSvc, podA, sorted(tcpB)))                // the TCP Service's chains go
	restore(render(v3UDPSvc, podB, sorted(udpA[1:2], udpA[3:]))) // A's two endpoint chains go
	restore(render(v3UDPSvc, netip.Addr{}, sorted(udpB)))        // no endpoints: everything goes
	restore(Rules(v3UDPSvc, podB))
	restore(teardown(sorted(udpB), true))
	got := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	if !slices.Equal(got, want) {
		t.Fatalf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, c := range udpA {
		if !strings.Contains(string(raw), "-X "+c) && !slices.Contains(udpB, c) {
			t.Errorf("chain %s was never deleted", c)
		}
	}
	// Every UDP port is cleaned after every SetBackend, keeping the flows to the new backend,
	// and once more, keeping none, on Close. The TCP Service never is.
	wantCleared := []string{
		"10.96.0.50:2049 keep 10.0.0.11", "10.96.0.50:20048 keep 10.0.0.11",
		"10.96.0.50:2049 keep 10.0.0.12", "10.96.0.50:20048 keep 10.0.0.12",
		"10.96.0.50:2049 keep invalid IP", "10.96.0.50:20048 keep invalid IP",
		"10.96.0.50:2049 keep 10.0.0.12", "10.96.0.50:20048 keep 10.0.0.12",
		"10.96.0.50:2049 keep invalid IP", "10.96.0.50:20048 keep invalid IP",
	}
	if !slices.Equal(cleared, wantCleared) {
		t.Errorf("conntrack cleanups:\n%s\nwant:\n%s", strings.Join(cleared, "\n"), strings.Join(wantCleared, "\n"))
	}
}

// TestCloseLooksForEachJumpWhenOneIsGone: when the one restore that deletes the jumps and the
// chains fails (here: a fake iptables-restore that refuses every -D, as one does for a rule
// that is not there), Close looks for each jump on its own and then deletes the chains.
func TestCloseLooksForEachJumpWhenOneIsGone(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "log")
	script := `#!/bin/sh
echo "$(basename "$0") $*" >> ` + logPath + `
case "$*" in *--noflush*) in=$(cat); case "$in" in *"-D "*) exit 1;; esac;; esac
case "$*" in *" -S "*|*" -C "*) exit 1;; esac
exit 0
`
	for _, name := range []string{"fake-iptables", "fake-iptables-restore"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := &Proxy{IPTables: filepath.Join(dir, "fake-iptables")}
	if err := p.Install(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	nat := "-m comment --comment kubernetes service portals -j KUBE-SERVICES"
	filter := "-m conntrack --ctstate NEW " + nat
	want := []string{
		"fake-iptables -w -t nat -S KUBE-SERVICES",
		"fake-iptables-restore -w --noflush", // the skeleton
		"fake-iptables-restore -w --noflush", // jumps and chains: refused
		"fake-iptables -w -t nat -C OUTPUT " + nat,
		"fake-iptables -w -t nat -C PREROUTING " + nat,
		"fake-iptables -w -t filter -C OUTPUT " + filter,
		"fake-iptables -w -t filter -C FORWARD " + filter,
		"fake-iptables-restore -w --noflush", // the chains
	}
	if got := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n"); !slices.Equal(got, want) {
		t.Fatalf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestSetBackendConntrackFailure: the rules are applied even when the conntrack cleanup fails,
// and the error says so.
func TestSetBackendConntrackFailure(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"ok-iptables", "ok-iptables-restore"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\ncase \"$*\" in *\" -S \"*|*\" -C \"*) exit 1;; esac\nexit 0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p := &Proxy{
		IPTables:          filepath.Join(dir, "ok-iptables"),
		ClearUDPConntrack: func(netip.AddrPort, netip.Addr) (uint, error) { return 0, errors.New("no conntrack netlink") },
	}
	ctx := t.Context()
	if err := p.Install(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.SetBackend(ctx, v3Svc, podA); err != nil {
		t.Fatalf("TCP-only Service: %v", err)
	}
	err := p.SetBackend(ctx, v3UDPSvc, podA)
	if err == nil || !strings.Contains(err.Error(), "rules applied, but") || !strings.Contains(err.Error(), "no conntrack netlink") {
		t.Fatalf("SetBackend = %v", err)
	}
	if len(p.owned) != 4 {
		t.Fatalf("owned chains after a conntrack failure: %v", p.owned)
	}
}

func TestStaleUDPFilter(t *testing.T) {
	flow := func(proto uint8, dst string, dport uint16, replySrc string) *netlink.ConntrackFlow {
		f := &netlink.ConntrackFlow{}
		f.Forward.Protocol, f.Forward.DstIP, f.Forward.DstPort = proto, net.ParseIP(dst), dport
		f.Forward.SrcIP, f.Forward.SrcPort = net.ParseIP("10.0.0.1"), 800
		f.Reverse.Protocol, f.Reverse.SrcIP, f.Reverse.SrcPort = proto, net.ParseIP(replySrc), dport
		return f
	}
	nfs := netip.MustParseAddrPort("10.96.0.50:2049")
	tests := []struct {
		name string
		keep netip.Addr
		flow *netlink.ConntrackFlow
		want bool
	}{
		{"to the old backend", podB, flow(unix.IPPROTO_UDP, "10.96.0.50", 2049, "10.0.0.11"), true},
		{"to the new backend", podB, flow(unix.IPPROTO_UDP, "10.96.0.50", 2049, "10.0.0.12"), false},
		{"never translated (sent before there was an endpoint)", podB, flow(unix.IPPROTO_UDP, "10.96.0.50", 2049, "10.96.0.50"), true},
		{"no backend: everything to the VIP", netip.Addr{}, flow(unix.IPPROTO_UDP, "10.96.0.50", 2049, "10.0.0.12"), true},
		{"tcp is left alone", podB, flow(unix.IPPROTO_TCP, "10.96.0.50", 2049, "10.0.0.11"), false},
		{"other port", podB, flow(unix.IPPROTO_UDP, "10.96.0.50", 20048, "10.0.0.11"), false},
		{"other destination", podB, flow(unix.IPPROTO_UDP, "10.96.0.51", 2049, "10.0.0.11"), false},
		{"v4-mapped addresses", podB, flow(unix.IPPROTO_UDP, "::ffff:10.96.0.50", 2049, "::ffff:10.0.0.12"), false},
	}
	for _, tt := range tests {
		if got := (staleUDP{vip: nfs, keep: tt.keep}).MatchConntrackFlow(tt.flow); got != tt.want {
			t.Errorf("%s: match = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func prefixLines(s string) []string {
	var out []string
	for l := range strings.SplitSeq(strings.TrimSuffix(s, "\n"), "\n") {
		out = append(out, "  | "+l)
	}
	return out
}

// TestProxyInFreshNetns applies the rules with real iptables inside a new network namespace
// (the test re-executes itself under `unshare -n`; the host's own rules are never touched) and
// checks every transition against iptables -S, for iptables-nft and iptables-legacy when
// available. Needs root. The iptables programs come from PATH, or from a root file system given
// in NFSLAB_IPTABLES_ROOT (run with chroot), e.g. a Debian rootfs with the iptables package.
func TestProxyInFreshNetns(t *testing.T) {
	if os.Getenv("NFSLAB_TEST_IN_NETNS") != "" {
		proxyInNetns(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("needs unshare(1)")
	}
	root := os.Getenv("NFSLAB_IPTABLES_ROOT")
	have := func(name string) bool {
		if root != "" {
			_, err := os.Lstat(filepath.Join(root, "usr/sbin", name)) // may be an absolute symlink into root
			return err == nil
		}
		_, err := exec.LookPath(name)
		return err == nil
	}
	var variants []string
	for _, v := range []string{"iptables", "iptables-legacy"} {
		if have(v) && have(v+"-restore") {
			variants = append(variants, v)
		}
	}
	if len(variants) == 0 {
		t.Skip("no iptables in PATH (set NFSLAB_IPTABLES_ROOT to a rootfs that has it)")
	}
	hostNet, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Skip(err)
	}
	for _, v := range variants {
		t.Run(v, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, unshare, "-n", os.Args[0], "-test.run=^TestProxyInFreshNetns$", "-test.v")
			cmd.Env = append(os.Environ(), "NFSLAB_TEST_IN_NETNS="+hostNet, "NFSLAB_TEST_IPTABLES="+v)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "--- PASS: TestProxyInFreshNetns") {
				t.Fatalf("child: %v\n%s", err, out)
			}
			if strings.Contains(string(out), "SKIP") {
				t.Fatalf("child skipped:\n%s", out)
			}
		})
	}
}

func proxyInNetns(t *testing.T) {
	// Refuse to run anything unless this process really is in another network namespace.
	ns, err := os.Readlink("/proc/self/ns/net")
	if err != nil || ns == os.Getenv("NFSLAB_TEST_IN_NETNS") {
		t.Fatalf("not in a fresh network namespace (%s, %v): refusing to touch iptables", ns, err)
	}
	var prefix []string
	if root := os.Getenv("NFSLAB_IPTABLES_ROOT"); root != "" {
		prefix = []string{"chroot", root}
	}
	ipt := os.Getenv("NFSLAB_TEST_IPTABLES")
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
	defer cancel()
	run := func(stdin string, args ...string) (string, error) {
		argv := append(slices.Clone(prefix), args...)
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, out)
		}
		return string(out), nil
	}
	list := func(table string) string {
		out, err := run("", ipt, "-w", "-t", table, "-S")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	lines := func(s string) map[string]bool {
		m := map[string]bool{}
		for l := range strings.SplitSeq(s, "\n") {
			m[l] = true
		}
		return m
	}
	// expect checks that every rule of Rules(...) appears verbatim in iptables -S (so the text
	// is in canonical form) and that the chains in absent do not exist.
	expect := func(step string, svc Service, backend netip.Addr, absent ...string) {
		t.Helper()
		text := Rules(svc, backend)
		filter, nat := lines(list("filter")), lines(list("nat"))
		table := filter
		for l := range strings.SplitSeq(text, "\n") {
			switch {
			case l == "*nat":
				table = nat
			case strings.HasPrefix(l, "-A "):
				if !table[l] {
					t.Errorf("%s: rule missing from iptables -S:\n%s\nhave:\n%s\n%s", step, l, list("filter"), list("nat"))
				}
			}
		}
		for _, c := range absent {
			if nat["-N "+c] || filter["-N "+c] {
				t.Errorf("%s: chain %s still exists", step, c)
			}
		}
		// Nothing but what this Service needs: the KUBE-SERVICES rules and chains are exactly
		// those of the text.
		var want, have []string
		for l := range strings.SplitSeq(text, "\n") {
			if strings.HasPrefix(l, "-A ") {
				want = append(want, l)
			}
		}
		for _, tbl := range []string{"filter", "nat"} {
			for l := range strings.SplitSeq(list(tbl), "\n") {
				if strings.HasPrefix(l, "-A KUBE-") {
					have = append(have, l)
				}
			}
		}
		slices.Sort(want)
		slices.Sort(have)
		if !slices.Equal(want, have) {
			t.Errorf("%s: KUBE- rules:\n%s\nwant:\n%s", step, strings.Join(have, "\n"), strings.Join(want, "\n"))
		}
	}
	countJumps := func() int {
		n := 0
		for _, table := range []string{"nat", "filter"} {
			n += strings.Count(list(table), "-j KUBE-SERVICES")
		}
		return n
	}

	beforeNat, beforeFilter := list("nat"), list("filter")
	p := &Proxy{IPTables: ipt, CommandPrefix: prefix}
	for range 2 {
		if err := p.Install(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := countJumps(); n != 4 {
		t.Fatalf("%d jumps to KUBE-SERVICES after two Installs, want 4:\n%s\n%s", n, list("nat"), list("filter"))
	}
	for _, svc := range []Service{nfsSvc, v3Svc, v3UDPSvc} {
		if _, err := run(Rules(svc, podA, podB), ipt+"-restore", "-w", "--noflush", "--test"); err != nil {
			t.Fatalf("iptables-restore --test rejects the rules: %v", err)
		}
	}
	tcpA, tcpB := Chains(nfsSvc, podA), Chains(nfsSvc, podB)
	v3A, v3B := Chains(v3Svc, podA), Chains(v3Svc, podB)
	udpA, udpB := Chains(v3UDPSvc, podA), Chains(v3UDPSvc, podB)
	all := slices.Concat(tcpA, tcpB, v3A, v3B, udpA, udpB)
	except := func(keep []string) []string {
		var out []string
		for _, c := range all {
			if !slices.Contains(keep, c) {
				out = append(out, c)
			}
		}
		return out
	}
	steps := []struct {
		name    string
		svc     Service
		backend netip.Addr
	}{
		{"A", nfsSvc, podA},
		{"A again", nfsSvc, podA},
		{"B", nfsSvc, podB},
		{"none", nfsSvc, netip.Addr{}},
		{"A after none", nfsSvc, podA},
		{"NFSv3 TCP replaces it, A", v3Svc, podA},
		{"NFSv3 TCP B", v3Svc, podB},
		{"NFSv3 UDP replaces it, A", v3UDPSvc, podA},
		{"NFSv3 UDP B", v3UDPSvc, podB},
		{"NFSv3 UDP none", v3UDPSvc, netip.Addr{}},
		{"NFSv3 UDP A after none", v3UDPSvc, podA},
	}
	for _, s := range steps {
		if err := p.SetBackend(ctx, s.svc, s.backend); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		expect(s.name, s.svc, s.backend, except(Chains(s.svc, s.backend))...)
		for _, port := range s.svc.Ports {
			if got, err := p.Backend(ctx, s.svc, port); err != nil || got != s.backend {
				t.Errorf("%s: Backend(port %d) = %v, %v; want %v", s.name, port.Port, got, err, s.backend)
			}
		}
	}

	// UDP flows: one that went to A, one that went to B, and one sent before there was an
	// endpoint (never translated); and a TCP flow to A. Re-pointing to B must delete the first
	// and the third, as kube-proxy does, and leave the others.
	ctFlows := func() []string {
		flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, f := range flows {
			out = append(out, fmt.Sprintf("%d %s:%d->%s:%d reply-from %s", f.Forward.Protocol, f.Forward.SrcIP, f.Forward.SrcPort,
				f.Forward.DstIP, f.Forward.DstPort, f.Reverse.SrcIP))
		}
		slices.Sort(out)
		return out
	}
	mkFlow := func(proto uint8, sport uint16, replyFrom netip.Addr) {
		t.Helper()
		f := &netlink.ConntrackFlow{FamilyType: unix.AF_INET, TimeOut: 100}
		f.Forward = netlink.IPTuple{Protocol: proto, SrcIP: net.IPv4(10, 0, 0, 1).To4(), SrcPort: sport, DstIP: vip.AsSlice(), DstPort: 2049}
		f.Reverse = netlink.IPTuple{Protocol: proto, SrcIP: replyFrom.AsSlice(), SrcPort: 2049, DstIP: net.IPv4(10, 0, 0, 1).To4(), DstPort: sport}
		if proto == unix.IPPROTO_TCP {
			f.ProtoInfo = &netlink.ProtoInfoTCP{State: nl.TCP_CONNTRACK_ESTABLISHED}
		}
		if err := netlink.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, f); err != nil {
			t.Fatalf("create conntrack entry: %v", err)
		}
	}
	mkFlow(unix.IPPROTO_UDP, 801, podA)
	mkFlow(unix.IPPROTO_UDP, 802, podB)
	mkFlow(unix.IPPROTO_UDP, 803, vip)
	mkFlow(unix.IPPROTO_TCP, 804, podA)
	if n := len(ctFlows()); n != 4 {
		t.Fatalf("%d conntrack entries, want 4: %v", n, ctFlows())
	}
	if err := p.SetBackend(ctx, v3UDPSvc, podB); err != nil {
		t.Fatal(err)
	}
	wantFlows := []string{
		"17 10.0.0.1:802->10.96.0.50:2049 reply-from 10.0.0.12",
		"6 10.0.0.1:804->10.96.0.50:2049 reply-from 10.0.0.11",
	}
	if got := ctFlows(); !slices.Equal(got, wantFlows) {
		t.Fatalf("conntrack entries after re-pointing to B:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantFlows, "\n"))
	}

	for range 2 {
		if err := p.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if afterNat, afterFilter := list("nat"), list("filter"); afterNat != beforeNat || afterFilter != beforeFilter {
		t.Fatalf("tables differ after Close:\nnat before:\n%s\nnat after:\n%s\nfilter before:\n%s\nfilter after:\n%s",
			beforeNat, afterNat, beforeFilter, afterFilter)
	}
	// The Service is gone, and so are its UDP flows.
	if got := ctFlows(); !slices.Equal(got, wantFlows[1:]) {
		t.Fatalf("conntrack entries after Close: %v", got)
	}

	// A KUBE-SERVICES that is not ours makes Install refuse, and Close leaves it alone.
	if _, err := run("", ipt, "-w", "-t", "nat", "-N", ServicesChain); err != nil {
		t.Fatal(err)
	}
	q := &Proxy{IPTables: ipt, CommandPrefix: prefix}
	if err := q.Install(ctx); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("Install over a foreign KUBE-SERVICES = %v", err)
	}
	if err := q.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(list("nat"), "-N "+ServicesChain) {
		t.Fatal("Close removed a KUBE-SERVICES it did not create")
	}
}
