package kubeproxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
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
// (and stdin for restore) and answers -S/-C with "absent".
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
	p := &Proxy{IPTables: filepath.Join(dir, "fake-iptables")}
	ctx := t.Context()
	if err := p.Install(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.SetBackend(ctx, nfsSvc, podA); err != nil {
		t.Fatal(err)
	}
	if err := p.SetBackend(ctx, nfsSvc, podB); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	sepA, sepB, svc := EndpointChain(nfsSvc, podA), EndpointChain(nfsSvc, podB), ServiceChain(nfsSvc)
	nat := "-m comment --comment kubernetes service portals -j KUBE-SERVICES"
	filter := "-m conntrack --ctstate NEW " + nat
	want := []string{
		"fake-iptables -w -t nat -S KUBE-SERVICES",
		"fake-iptables-restore -w --noflush",
	}
	want = append(want, prefixLines(skeleton())...)
	for _, j := range []string{"nat -C OUTPUT " + nat, "nat -I OUTPUT " + nat, "nat -C PREROUTING " + nat, "nat -I PREROUTING " + nat,
		"filter -C OUTPUT " + filter, "filter -I OUTPUT " + filter, "filter -C FORWARD " + filter, "filter -I FORWARD " + filter} {
		want = append(want, "fake-iptables -w -t "+j)
	}
	want = append(want, "fake-iptables-restore -w --noflush")
	want = append(want, prefixLines(Rules(nfsSvc, podA))...)
	want = append(want, "fake-iptables-restore -w --noflush")
	want = append(want, prefixLines(Rules(nfsSvc, podB, podA))...)
	for _, j := range []string{"nat -C OUTPUT " + nat, "nat -C PREROUTING " + nat, "filter -C OUTPUT " + filter, "filter -C FORWARD " + filter} {
		want = append(want, "fake-iptables -w -t "+j)
	}
	want = append(want, "fake-iptables-restore -w --noflush")
	want = append(want, prefixLines(teardown(slices.Sorted(slices.Values([]string{sepB, svc}))))...)
	got := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	if !slices.Equal(got, want) {
		t.Fatalf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(string(raw), "-X "+sepA) {
		t.Error("re-pointing did not delete A's endpoint chain")
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
	expect := func(step string, svc Service, backend netip.AddrPort, absent ...string) {
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
	if _, err := run(Rules(nfsSvc, podA, podB), ipt+"-restore", "-w", "--noflush", "--test"); err != nil {
		t.Fatalf("iptables-restore --test rejects the rules: %v", err)
	}
	sepA, sepB, svcChain := EndpointChain(nfsSvc, podA), EndpointChain(nfsSvc, podB), ServiceChain(nfsSvc)
	steps := []struct {
		name    string
		backend netip.AddrPort
		absent  []string
	}{
		{"A", podA, []string{sepB}},
		{"A again", podA, []string{sepB}},
		{"B", podB, []string{sepA}},
		{"none", netip.AddrPort{}, []string{sepA, sepB, svcChain}},
		{"A after none", podA, []string{sepB}},
	}
	for _, s := range steps {
		if err := p.SetBackend(ctx, nfsSvc, s.backend); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		expect(s.name, nfsSvc, s.backend, s.absent...)
	}
	// Another Service replaces the first one entirely.
	other := Service{Namespace: "lab", Name: "nfs2", PortName: "nfs", VIP: netip.MustParseAddrPort("10.96.0.51:2049")}
	if err := p.SetBackend(ctx, other, podB); err != nil {
		t.Fatal(err)
	}
	expect("other service", other, podB, sepA, svcChain)

	for range 2 {
		if err := p.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if afterNat, afterFilter := list("nat"), list("filter"); afterNat != beforeNat || afterFilter != beforeFilter {
		t.Fatalf("tables differ after Close:\nnat before:\n%s\nnat after:\n%s\nfilter before:\n%s\nfilter after:\n%s",
			beforeNat, afterNat, beforeFilter, afterFilter)
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
