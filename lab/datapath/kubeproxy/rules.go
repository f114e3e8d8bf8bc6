// Package kubeproxy is nfslab's stand-in for kube-proxy in iptables mode: it writes the same
// chains, the same rule shapes and the same chain names that kube-proxy writes for a ClusterIP
// Service with one endpoint, so that the kernel sees exactly the datapath of a real cluster
// (per-packet DNAT in netfilter). A Service may have several ports, TCP or UDP
// (NFSv3 needs the NFS port and mountd's), each with its own KUBE-SVC/KUBE-SEP chain pair.
//
// Rules is a pure generator of iptables-restore input; Proxy applies it with iptables-restore
// --noflush and iptables, clears stale UDP conntrack entries as kube-proxy does, and removes
// everything again on Close.
//
// What is deliberately left out: KUBE-MARK-MASQ / KUBE-POSTROUTING (masquerading only matters
// for hairpin and off-node traffic; the lab's client is the node and the pods route back to it
// over the bridge), NodePorts, session affinity, the statistic-mode load balancing of several
// endpoints (there is one backend at a time), and IPv6 (ip6tables).
package kubeproxy

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Chain names and the comment kube-proxy uses, in its words.
const (
	ServicesChain    = "KUBE-SERVICES" // in both the nat and the filter table
	svcChainPrefix   = "KUBE-SVC-"
	sepChainPrefix   = "KUBE-SEP-"
	portalsComment   = "kubernetes service portals"
	rejectWith       = "icmp-port-unreachable"
	noEndpointSuffix = " has no endpoints"
)

// Protocols a ServicePort may have, spelled as kube-proxy spells them in rules and hashes.
const (
	TCP = "tcp"
	UDP = "udp"
)

// ServicePort is one port of a Service.
type ServicePort struct {
	// Name is the port's name. It may be "" only in a Service with a single port (Kubernetes
	// requires names as soon as there are two).
	Name string
	// Port is the port on the ClusterIP.
	Port uint16
	// Protocol is TCP or UDP; "" means TCP.
	Protocol string
	// TargetPort is the endpoint's port; 0 means Port.
	TargetPort uint16
}

// Proto returns the port's protocol, TCP when unset.
func (p ServicePort) Proto() string {
	if p.Protocol == "" {
		return TCP
	}
	return p.Protocol
}

// Target returns the endpoint's port: TargetPort, or Port when unset.
func (p ServicePort) Target() uint16 {
	if p.TargetPort == 0 {
		return p.Port
	}
	return p.TargetPort
}

// Service is a ClusterIP Service (IPv4) and its ports.
type Service struct {
	Namespace string     // "default"
	Name      string     // "nfs"
	VIP       netip.Addr // the ClusterIP, e.g. 10.96.0.50
	Ports     []ServicePort
}

// String returns "namespace/name".
func (s Service) String() string { return s.Namespace + "/" + s.Name }

// PortName returns kube-proxy's ServicePortName string for one of the Service's ports:
// "namespace/name", with ":portname" appended when the port has a name. It is what chain
// names hash and what comments show.
func (s Service) PortName(p ServicePort) string {
	if p.Name == "" {
		return s.String()
	}
	return s.String() + ":" + p.Name
}

// isDNSLabel reports whether s is an RFC 1123 label (what Kubernetes allows for namespaces,
// Service names and port names: lower-case letters, digits and inner hyphens, at most 63
// characters); it also keeps comments free of quotes and spaces.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range []byte(s) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// Validate checks that s can be rendered: names are RFC 1123 labels, VIP is an IPv4 address,
// and there is at least one port; every port has a non-zero number and a protocol of TCP or
// UDP; with several ports every one is named, names are unique, and no port number and
// protocol pair repeats (as the Kubernetes API requires).
func (s Service) Validate() error {
	for _, f := range []struct{ what, v string }{{"namespace", s.Namespace}, {"name", s.Name}} {
		if !isDNSLabel(f.v) {
			return fmt.Errorf("service %q: invalid %s %q", s, f.what, f.v)
		}
	}
	if !s.VIP.Is4() {
		return fmt.Errorf("service %q: VIP %v is not an IPv4 address", s, s.VIP)
	}
	if len(s.Ports) == 0 {
		return fmt.Errorf("service %q: no ports", s)
	}
	names := map[string]bool{}
	numbers := map[string]bool{}
	for _, p := range s.Ports {
		switch {
		case p.Name == "" && len(s.Ports) > 1:
			return fmt.Errorf("service %q: port %d/%s has no name (a Service with several ports names every one)", s, p.Port, p.Proto())
		case p.Name != "" && !isDNSLabel(p.Name):
			return fmt.Errorf("service %q: invalid port name %q", s, p.Name)
		case names[p.Name]:
			return fmt.Errorf("service %q: port name %q used twice", s, p.Name)
		case p.Proto() != TCP && p.Proto() != UDP:
			return fmt.Errorf("service %q: port %q: protocol %q is not %s or %s", s, p.Name, p.Protocol, TCP, UDP)
		case p.Port == 0:
			return fmt.Errorf("service %q: port %q has no port number", s, p.Name)
		}
		key := fmt.Sprintf("%d/%s", p.Port, p.Proto())
		if numbers[key] {
			return fmt.Errorf("service %q: port %s used twice", s, key)
		}
		names[p.Name], numbers[key] = true, true
	}
	return nil
}

// checkBackend accepts the zero Addr (no endpoint) or an IPv4 address.
func checkBackend(b netip.Addr) error {
	if b.IsValid() && !b.Is4() {
		return fmt.Errorf("backend %v: want an IPv4 address", b)
	}
	return nil
}

// hash16 is kube-proxy's chain-name hash: base32 of SHA-256, first 16 characters.
func hash16(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base32.StdEncoding.EncodeToString(sum[:])[:16]
}

// ServiceChain is the KUBE-SVC-<hash> chain of one port of svc, named as kube-proxy names it:
// hash(ServicePortName + protocol), e.g. hash("default/nfs:mountd" + "udp").
func ServiceChain(svc Service, port ServicePort) string {
	return svcChainPrefix + hash16(svc.PortName(port)+port.Proto())
}

// EndpointChain is the KUBE-SEP-<hash> chain of one endpoint of one port of svc, named as
// kube-proxy names it: hash(ServicePortName + protocol + "ip:port").
func EndpointChain(svc Service, port ServicePort, ep netip.AddrPort) string {
	return sepChainPrefix + hash16(svc.PortName(port)+port.Proto()+ep.String())
}

// endpoint is backend on port's target port.
func endpoint(port ServicePort, backend netip.Addr) netip.AddrPort {
	return netip.AddrPortFrom(backend, port.Target())
}

// Chains returns the nat chains Rules creates for svc with backend: for every port its
// KUBE-SVC chain and, with a backend, its KUBE-SEP chain; none without a backend.
func Chains(svc Service, backend netip.Addr) []string {
	if !backend.IsValid() {
		return nil
	}
	var out []string
	for _, p := range svc.Ports {
		out = append(out, ServiceChain(svc, p), EndpointChain(svc, p, endpoint(p, backend)))
	}
	return out
}

// Rules returns iptables-restore --noflush input that makes the tables hold exactly kube-proxy's
// rules for svc with the single endpoint backend on every port, and deletes the endpoint chains
// of stale backends (those svc pointed to before). svc must pass Validate.
//
// With a backend, for each port (protocol P = tcp or udp), the nat table gets
//
//	KUBE-SERVICES: -d VIP/32 -p P --dport PORT -j KUBE-SVC-…   ("ns/name:port cluster IP")
//	KUBE-SVC-…:    -j KUBE-SEP-…                                ("ns/name:port -> A:TARGET")
//	KUBE-SEP-…:    -p P -j DNAT --to-destination A:TARGET       ("ns/name:port")
//
// and the filter table's KUBE-SERVICES is empty. With no backend (the zero netip.Addr), it is
// what kube-proxy does for a Service without endpoints: no nat rules and no KUBE-SVC chains at
// all, and in the filter table's KUBE-SERVICES one rule per port that REJECTs new connections
// (and UDP datagrams) to VIP:PORT with icmp-port-unreachable ("ns/name:port has no endpoints"),
// so a client fails at once with ECONNREFUSED instead of timing out.
//
// Every chain is (re)declared, which in --noflush mode flushes it, so the text is a complete
// description of the state and applying it twice is harmless; a declared-then-deleted chain
// (-X) that did not exist is harmless too. The rules are written in iptables-save's canonical
// form (what `iptables-save` prints back), which is equivalent to kube-proxy's own argument order.
// The jumps from the built-in chains to KUBE-SERVICES are not part of this text: Proxy adds them
// once with iptables.
func Rules(svc Service, backend netip.Addr, stale ...netip.Addr) string {
	var del []string
	for _, s := range stale {
		if s != backend {
			for _, p := range svc.Ports {
				del = append(del, EndpointChain(svc, p, endpoint(p, s)))
			}
		}
	}
	return render(svc, backend, del)
}

// render is Rules with the chains to delete given by name. A chain that Rules creates is never
// deleted, whatever deleteChains says.
func render(svc Service, backend netip.Addr, deleteChains []string) string {
	hasEP := backend.IsValid()
	var b strings.Builder
	line := func(parts ...string) { b.WriteString(strings.Join(parts, " ") + "\n") }
	dst := svc.VIP.String() + "/32"

	line("*filter")
	line(":" + ServicesChain + " - [0:0]")
	if !hasEP {
		for _, p := range svc.Ports {
			line("-A", ServicesChain, "-d", dst, "-p", p.Proto(), "-m", "comment", "--comment", quote(svc.PortName(p)+noEndpointSuffix),
				"-m", p.Proto(), "--dport", fmt.Sprint(p.Port), "-j", "REJECT", "--reject-with", rejectWith)
		}
	}
	line("COMMIT")

	line("*nat")
	line(":" + ServicesChain + " - [0:0]")
	declared := map[string]bool{ServicesChain: true}
	var del []string
	for _, p := range svc.Ports {
		svcChain := ServiceChain(svc, p)
		declared[svcChain] = true
		line(":" + svcChain + " - [0:0]")
		if hasEP {
			sep := EndpointChain(svc, p, endpoint(p, backend))
			declared[sep] = true
			line(":" + sep + " - [0:0]")
		} else {
			del = append(del, svcChain)
		}
	}
	for _, c := range deleteChains {
		if !declared[c] {
			declared[c] = true
			del = append(del, c)
			line(":" + c + " - [0:0]")
		}
	}
	if hasEP {
		for _, p := range svc.Ports {
			name, proto := svc.PortName(p), p.Proto()
			svcChain, ep := ServiceChain(svc, p), endpoint(p, backend)
			sep := EndpointChain(svc, p, ep)
			line("-A", ServicesChain, "-d", dst, "-p", proto, "-m", "comment", "--comment", quote(name+" cluster IP"),
				"-m", proto, "--dport", fmt.Sprint(p.Port), "-j", svcChain)
			line("-A", svcChain, "-m", "comment", "--comment", quote(name+" -> "+ep.String()), "-j", sep)
			line("-A", sep, "-p", proto, "-m", "comment", "--comment", quote(name),
				"-m", proto, "-j", "DNAT", "--to-destination", ep.String())
		}
	}
	for _, c := range del {
		line("-X", c)
	}
	line("COMMIT")
	return b.String()
}

// forwardedTo reads, from rules in iptables-save's form (`iptables -S`, or Rules' text), the
// endpoint the rules DNAT port of svc to: a rule of its KUBE-SVC chain jumps to a KUBE-SEP
// chain, whose rule has --to-destination. ok is false when there is none.
func forwardedTo(rules string, svc Service, port ServicePort) (ep netip.AddrPort, ok bool) {
	arg := func(f []string, flag string) string {
		if i := slices.Index(f, flag); i >= 0 && i+1 < len(f) {
			return f[i+1]
		}
		return ""
	}
	var lines [][]string
	for l := range strings.SplitSeq(rules, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "-A" {
			lines = append(lines, f)
		}
	}
	svcChain := ServiceChain(svc, port)
	var seps []string
	for _, f := range lines {
		if f[1] == svcChain {
			if j := arg(f, "-j"); strings.HasPrefix(j, sepChainPrefix) {
				seps = append(seps, j)
			}
		}
	}
	for _, f := range lines {
		if slices.Contains(seps, f[1]) {
			if ap, err := netip.ParseAddrPort(arg(f, "--to-destination")); err == nil {
				return ap, true
			}
		}
	}
	return netip.AddrPort{}, false
}

// teardown returns restore input that flushes and deletes KUBE-SERVICES in both tables and the
// given nat chains. With withJumps it deletes kube-proxy's jumps to KUBE-SERVICES first (one
// copy of each: the input fails as a whole where one is missing); without, they must be gone.
func teardown(natChains []string, withJumps bool) string {
	var b strings.Builder
	b.WriteString("*filter\n:" + ServicesChain + " - [0:0]\n")
	if withJumps {
		b.WriteString(jumpLines("filter", "-D"))
	}
	b.WriteString("-X " + ServicesChain + "\nCOMMIT\n")
	b.WriteString("*nat\n:" + ServicesChain + " - [0:0]\n")
	for _, c := range natChains {
		b.WriteString(":" + c + " - [0:0]\n")
	}
	if withJumps {
		b.WriteString(jumpLines("nat", "-D"))
	}
	b.WriteString("-X " + ServicesChain + "\n")
	for _, c := range natChains {
		b.WriteString("-X " + c + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// skeleton is the restore input Install applies first: empty KUBE-SERVICES chains in both
// tables and kube-proxy's jumps to them.
func skeleton() string {
	return "*filter\n:" + ServicesChain + " - [0:0]\n" + jumpLines("filter", "-I") + "COMMIT\n" +
		"*nat\n:" + ServicesChain + " - [0:0]\n" + jumpLines("nat", "-I") + "COMMIT\n"
}

// jumpLines renders the jumps of table as restore input lines of op: "-I" (insert at the top,
// as kube-proxy does) or "-D".
func jumpLines(table, op string) string {
	var b strings.Builder
	for _, j := range jumps() {
		if j.table != table {
			continue
		}
		b.WriteString(op + " " + j.chain)
		for _, a := range j.args {
			b.WriteString(" " + quote(a))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// quote renders a comment the way iptables-save does (xtables_save_string): bare when it is
// made only of letters, digits, '_' and '-', in double quotes otherwise. Validated names never
// contain the quotes or backslashes that would need escaping.
func quote(s string) string {
	bare := s != ""
	for _, c := range []byte(s) {
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			bare = false
			break
		}
	}
	if bare {
		return s
	}
	return `"` + s + `"`
}

// jump is one rule in a built-in chain that sends packets to KUBE-SERVICES.
type jump struct {
	table, chain string
	args         []string // the rule, without -t/-A
}

// jumps are kube-proxy's jumps to KUBE-SERVICES (its iptablesJumpChains): nat OUTPUT and
// PREROUTING (to DNAT), filter OUTPUT and FORWARD for new connections (to REJECT).
func jumps() []jump {
	nat := []string{"-m", "comment", "--comment", portalsComment, "-j", ServicesChain}
	filter := []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", portalsComment, "-j", ServicesChain}
	return []jump{
		{"nat", "OUTPUT", nat},
		{"nat", "PREROUTING", nat},
		{"filter", "OUTPUT", filter},
		{"filter", "FORWARD", filter},
	}
}
