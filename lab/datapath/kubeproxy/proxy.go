package kubeproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNotInstalled is returned by SetBackend before Install.
var ErrNotInstalled = errors.New("kube-proxy rules are not installed (call Install first)")

// Proxy installs and re-points kube-proxy-style rules in the network namespace its commands run
// in (the node's). The zero value is ready to use; a Proxy must not be copied after first use.
//
// A Proxy owns KUBE-SERVICES in the nat and filter tables: it refuses to Install where
// KUBE-SERVICES already exists (a real kube-proxy), and it manages one Service at a time
// (SetBackend with another Service replaces the previous one's chains).
type Proxy struct {
	// IPTables is the iptables program ("iptables" when empty), e.g. "iptables-legacy".
	IPTables string
	// IPTablesRestore is the restore program (IPTables + "-restore" when empty).
	IPTablesRestore string
	// CommandPrefix, when set, is prepended to every command line, e.g.
	// {"ip", "netns", "exec", "node"} to act on another network namespace. It does not apply to
	// the conntrack cleanup: see ClearUDPConntrack.
	CommandPrefix []string
	// ClearUDPConntrack deletes the conntrack entries of UDP flows to vip whose reply source is
	// not keep (every one of them when keep is the zero Addr) and returns how many it deleted.
	// nil means ClearStaleUDP, which works through netlink in the calling thread's network
	// namespace: set it when CommandPrefix enters another one.
	ClearUDPConntrack func(vip netip.AddrPort, keep netip.Addr) (uint, error)

	mu        sync.Mutex
	touched   bool             // Install got past its safety check: Close has something to undo
	installed bool             // skeleton chains and jumps are in place
	owned     map[string]bool  // nat KUBE-SVC-/KUBE-SEP- chains this Proxy created
	udp       []netip.AddrPort // the UDP VIP:ports of the Service set last
}

// New returns a Proxy that runs the given iptables program ("" for "iptables"; e.g.
// "iptables-legacy") and the matching "-restore" program.
func New(iptables string) *Proxy { return &Proxy{IPTables: iptables} }

// Install creates empty KUBE-SERVICES chains in the nat and filter tables and the jumps to them
// that kube-proxy adds: from nat OUTPUT and PREROUTING ("kubernetes service portals"), and from
// filter OUTPUT and FORWARD for conntrack state NEW. The first Install does it with one
// iptables-restore (no jump can exist before its target chain does: under TCG every iptables
// run costs a tenth of a second or more); a later one adds each jump only if it is not there
// any more, so calling Install again is harmless. No Service is configured yet: see SetBackend.
func (p *Proxy) Install(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.touched {
		if _, err := p.iptables(ctx, "-w", "-t", "nat", "-S", ServicesChain); err == nil {
			return fmt.Errorf("install kube-proxy rules: chain %s already exists in table nat: another kube-proxy owns this namespace", ServicesChain)
		}
		p.touched = true
		if err := p.restore(ctx, skeleton()); err != nil {
			return fmt.Errorf("install kube-proxy rules: %w", err)
		}
		p.installed = true
		return nil
	}
	for _, j := range jumps() {
		if err := p.ensureJump(ctx, j); err != nil {
			return fmt.Errorf("install kube-proxy rules: %w", err)
		}
	}
	p.installed = true
	return nil
}

// SetBackend points every port of svc at the same endpoint backend (on each port's target
// port), or at nothing when backend is the zero netip.Addr (see Rules for the exact rules), with
// one iptables-restore --noflush run: the Service chains are redeclared (flushed) and refilled,
// and every chain this Proxy created before that is not needed any more (endpoint chains of the
// old backend, ports or Services that are gone) is deleted.
//
// Then, as kube-proxy does after every sync, the conntrack entries of UDP flows to the
// Service's UDP ports whose replies do not come from backend are deleted: a UDP client keeps
// sending from the same socket, and without this its packets would follow the old entry to the
// old endpoint (or, if they were sent before there was one, to nowhere) for as long as they
// keep coming. TCP entries are left alone, as kube-proxy leaves them.
func (p *Proxy) SetBackend(ctx context.Context, svc Service, backend netip.Addr) error {
	if err := svc.Validate(); err != nil {
		return fmt.Errorf("set backend: %w", err)
	}
	if err := checkBackend(backend); err != nil {
		return fmt.Errorf("set backend of %s: %w", svc, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.installed {
		return fmt.Errorf("set backend of %s: %w", svc, ErrNotInstalled)
	}
	want := map[string]bool{}
	for _, c := range Chains(svc, backend) {
		want[c] = true
	}
	var stale []string
	for _, c := range slices.Sorted(maps.Keys(p.owned)) {
		if !want[c] {
			stale = append(stale, c)
		}
	}
	if err := p.restore(ctx, render(svc, backend, stale)); err != nil {
		return fmt.Errorf("set backend of %s to %v: %w", svc, backend, err)
	}
	p.owned = want
	var udp []netip.AddrPort
	for _, port := range svc.Ports {
		if port.Proto() == UDP {
			udp = append(udp, netip.AddrPortFrom(svc.VIP, port.Port))
		}
	}
	// A Service that replaced another one: the old one's UDP flows go too.
	var errs []error
	for _, vip := range p.udp {
		if !slices.Contains(udp, vip) {
			if _, err := p.clearUDP(vip, netip.Addr{}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	p.udp = udp
	for _, vip := range udp {
		if _, err := p.clearUDP(vip, backend); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("set backend of %s to %v: rules applied, but: %w", svc, backend, err)
	}
	return nil
}

// clearUDP runs ClearUDPConntrack (or ClearStaleUDP) for vip.
func (p *Proxy) clearUDP(vip netip.AddrPort, keep netip.Addr) (uint, error) {
	fn := p.ClearUDPConntrack
	if fn == nil {
		fn = ClearStaleUDP
	}
	n, err := fn(vip, keep)
	if err != nil {
		return n, fmt.Errorf("clear UDP conntrack entries of %v: %w", vip, err)
	}
	return n, nil
}

// ClearStaleUDP deletes, through netlink in the calling thread's network namespace, the
// conntrack entries of UDP flows whose original destination is vip and whose reply source
// address is not keep (all of them when keep is the zero Addr): kube-proxy's cleanup of stale
// UDP flows. It returns how many entries it deleted. The kernel needs conntrack's netlink
// interface (CONFIG_NF_CT_NETLINK, the nf_conntrack_netlink module).
func ClearStaleUDP(vip netip.AddrPort, keep netip.Addr) (uint, error) {
	n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, staleUDP{vip: vip, keep: keep})
	if err != nil {
		return n, fmt.Errorf("conntrack netlink (needs CONFIG_NF_CT_NETLINK / nf_conntrack_netlink): %w", err)
	}
	return n, nil
}

// staleUDP matches the conntrack entries ClearStaleUDP deletes.
type staleUDP struct {
	vip  netip.AddrPort
	keep netip.Addr
}

func (f staleUDP) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	if flow.Forward.Protocol != unix.IPPROTO_UDP || flow.Forward.DstPort != f.vip.Port() {
		return false
	}
	if dst, ok := netip.AddrFromSlice(flow.Forward.DstIP); !ok || dst.Unmap() != f.vip.Addr() {
		return false
	}
	src, ok := netip.AddrFromSlice(flow.Reverse.SrcIP)
	return !f.keep.IsValid() || !ok || src.Unmap() != f.keep
}

// Close removes everything Install and SetBackend created: the jumps, KUBE-SERVICES in both
// tables and the KUBE-SVC/KUBE-SEP chains, leaving the tables as they were before Install. It
// is best effort (it goes on after a failure and reports all failures) and safe to call more
// than once or after a failed Install. After a whole Install, one iptables-restore deletes the
// jumps and the chains; when that fails (a jump was deleted or added twice by someone else),
// each jump is looked for and deleted on its own, then the chains.
func (p *Proxy) Close(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.touched {
		return nil
	}
	chains := slices.Sorted(maps.Keys(p.owned))
	var errs []error
	if !p.installed || p.restore(ctx, teardown(chains, true)) != nil {
		for _, j := range jumps() {
			if err := p.removeJump(ctx, j); err != nil {
				errs = append(errs, err)
			}
		}
		if err := p.restore(ctx, teardown(chains, false)); err != nil {
			errs = append(errs, err)
		}
	}
	// The Service is gone: so are its UDP flows (kube-proxy clears them when a Service is
	// deleted).
	for _, vip := range p.udp {
		if _, err := p.clearUDP(vip, netip.Addr{}); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove kube-proxy rules: %w", err)
	}
	p.touched, p.installed, p.owned, p.udp = false, false, nil, nil
	return nil
}

// ensureJump adds j at the top of its chain (kube-proxy prepends) unless it is there already.
func (p *Proxy) ensureJump(ctx context.Context, j jump) error {
	present, err := p.hasRule(ctx, j)
	if err != nil || present {
		return err
	}
	if _, err := p.iptables(ctx, append([]string{"-w", "-t", j.table, "-I", j.chain}, j.args...)...); err != nil {
		return fmt.Errorf("add jump %s/%s -> %s: %w", j.table, j.chain, ServicesChain, err)
	}
	return nil
}

// removeJump deletes every copy of j.
func (p *Proxy) removeJump(ctx context.Context, j jump) error {
	for range 16 { // more copies than that means something else keeps adding it
		present, err := p.hasRule(ctx, j)
		if err != nil || !present {
			return err
		}
		if _, err := p.iptables(ctx, append([]string{"-w", "-t", j.table, "-D", j.chain}, j.args...)...); err != nil {
			return fmt.Errorf("delete jump %s/%s -> %s: %w", j.table, j.chain, ServicesChain, err)
		}
	}
	return fmt.Errorf("delete jump %s/%s -> %s: it keeps coming back", j.table, j.chain, ServicesChain)
}

// hasRule runs iptables -C: exit status 0 means present, 1 absent ("Bad rule (does a matching
// rule exist in that chain?)"), anything else (2: the target chain does not exist, …) is an
// error. A missing KUBE-SERVICES chain therefore counts as "no jump" for a Close after a
// partial Install.
func (p *Proxy) hasRule(ctx context.Context, j jump) (bool, error) {
	_, err := p.iptables(ctx, append([]string{"-w", "-t", j.table, "-C", j.chain}, j.args...)...)
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &exitErr) && exitErr.ExitCode() == 1:
		return false, nil
	case errors.As(err, &exitErr) && exitErr.ExitCode() == 2 && strings.Contains(err.Error(), "does not exist"):
		return false, nil
	default:
		return false, fmt.Errorf("check jump %s/%s -> %s: %w", j.table, j.chain, ServicesChain, err)
	}
}

// Backend reads back from the nat table (iptables -S) the backend the rules send port of svc to:
// the endpoint its KUBE-SVC chain jumps to, whose KUBE-SEP chain DNATs to it. The zero Addr
// means the port has no endpoint in the table.
func (p *Proxy) Backend(ctx context.Context, svc Service, port ServicePort) (netip.Addr, error) {
	nat, err := p.iptables(ctx, "-w", "-t", "nat", "-S")
	if err != nil {
		return netip.Addr{}, fmt.Errorf("read back %s port %d: %w", svc, port.Port, err)
	}
	ep, _ := forwardedTo(nat, svc, port)
	return ep.Addr(), nil
}

func (p *Proxy) iptablesName() string {
	if p.IPTables != "" {
		return p.IPTables
	}
	return "iptables"
}

func (p *Proxy) restoreName() string {
	if p.IPTablesRestore != "" {
		return p.IPTablesRestore
	}
	return p.iptablesName() + "-restore"
}

// iptables runs the iptables program with args.
func (p *Proxy) iptables(ctx context.Context, args ...string) (string, error) {
	return p.run(ctx, "", p.iptablesName(), args...)
}

// restore feeds input to iptables-restore --noflush.
func (p *Proxy) restore(ctx context.Context, input string) error {
	_, err := p.run(ctx, input, p.restoreName(), "-w", "--noflush")
	return err
}

// run executes name with args (behind CommandPrefix), stdin from stdin, and returns its
// combined output; a failure carries the command line and the output.
func (p *Proxy) run(ctx context.Context, stdin, name string, args ...string) (string, error) {
	argv := append(slices.Clone(p.CommandPrefix), name)
	argv = append(argv, args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if stdin != "" {
			msg += "\ninput:\n" + stdin
		}
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, msg)
	}
	return out.String(), nil
}
