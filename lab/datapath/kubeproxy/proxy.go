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
	// {"ip", "netns", "exec", "node"} to act on another network namespace.
	CommandPrefix []string

	mu        sync.Mutex
	touched   bool            // Install got past its safety check: Close has something to undo
	installed bool            // skeleton chains and jumps are in place
	owned     map[string]bool // nat KUBE-SVC-/KUBE-SEP- chains this Proxy created
}

// New returns a Proxy that runs the given iptables program ("" for "iptables"; e.g.
// "iptables-legacy") and the matching "-restore" program.
func New(iptables string) *Proxy { return &Proxy{IPTables: iptables} }

// Install creates empty KUBE-SERVICES chains in the nat and filter tables and the jumps to them
// that kube-proxy adds: from nat OUTPUT and PREROUTING ("kubernetes service portals"), and from
// filter OUTPUT and FORWARD for conntrack state NEW. Each jump is added only if it is not there
// yet, so calling Install again is harmless. No Service is configured yet: see SetBackend.
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
	}
	for _, j := range jumps() {
		if err := p.ensureJump(ctx, j); err != nil {
			return fmt.Errorf("install kube-proxy rules: %w", err)
		}
	}
	p.installed = true
	return nil
}

// SetBackend points svc at backend, or at nothing when backend is the zero netip.AddrPort (see
// Rules for the exact rules), with one iptables-restore --noflush run: the Service chain is
// redeclared (flushed) and refilled, and every endpoint chain this Proxy created before that is
// not the new one is deleted. Existing conntrack entries are left alone, as kube-proxy leaves
// them for TCP.
func (p *Proxy) SetBackend(ctx context.Context, svc Service, backend netip.AddrPort) error {
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
	if backend.IsValid() {
		want[ServiceChain(svc)] = true
		want[EndpointChain(svc, backend)] = true
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
	return nil
}

// Close removes everything Install and SetBackend created: the jumps, KUBE-SERVICES in both
// tables and the KUBE-SVC/KUBE-SEP chains, leaving the tables as they were before Install. It
// is best effort (it goes on after a failure and reports all failures) and safe to call more
// than once or after a failed Install.
func (p *Proxy) Close(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.touched {
		return nil
	}
	var errs []error
	for _, j := range jumps() {
		if err := p.removeJump(ctx, j); err != nil {
			errs = append(errs, err)
		}
	}
	if err := p.restore(ctx, teardown(slices.Sorted(maps.Keys(p.owned)))); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove kube-proxy rules: %w", err)
	}
	p.touched, p.installed, p.owned = false, false, nil
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
