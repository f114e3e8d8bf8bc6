// Package kubeproxy is nfslab's stand-in for kube-proxy in iptables mode: it writes the same
// chains, the same rule shapes and the same chain names that kube-proxy writes for a ClusterIP
// Service with one endpoint, so that the kernel sees exactly the datapath of a real cluster
// (per-packet DNAT in netfilter; DESIGN.md §1).
//
// Rules is a pure generator of iptables-restore input; Proxy applies it with iptables-restore
// --noflush and iptables, and removes everything again on Close.
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
	"strings"
)

// Chain names and the comment kube-proxy uses, in its words.
const (
	ServicesChain    = "KUBE-SERVICES" // in both the nat and the filter table
	svcChainPrefix   = "KUBE-SVC-"
	sepChainPrefix   = "KUBE-SEP-"
	portalsComment   = "kubernetes service portals"
	protocol         = "tcp"
	rejectWith       = "icmp-port-unreachable"
	noEndpointSuffix = " has no endpoints"
)

// Service is one port of a ClusterIP Service (TCP, IPv4).
type Service struct {
	Namespace string         // "default"
	Name      string         // "nfs"
	PortName  string         // the Service port's name; "" for an unnamed single port
	VIP       netip.AddrPort // the ClusterIP and the Service port, e.g. 10.96.0.50:2049
}

// String returns kube-proxy's ServicePortName string: "namespace/name", with ":portname"
// appended when the port has a name. It is what chain names hash and what comments show.
func (s Service) String() string {
	if s.PortName == "" {
		return s.Namespace + "/" + s.Name
	}
	return s.Namespace + "/" + s.Name + ":" + s.PortName
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

// Validate checks that s can be rendered: names are RFC 1123 labels and VIP is an IPv4 address
// with a non-zero port.
func (s Service) Validate() error {
	for _, f := range []struct{ what, v string }{{"namespace", s.Namespace}, {"name", s.Name}} {
		if !isDNSLabel(f.v) {
			return fmt.Errorf("service %q: invalid %s %q", s, f.what, f.v)
		}
	}
	if s.PortName != "" && !isDNSLabel(s.PortName) {
		return fmt.Errorf("service %q: invalid port name %q", s, s.PortName)
	}
	if !s.VIP.Addr().Is4() {
		return fmt.Errorf("service %q: VIP %v is not an IPv4 address", s, s.VIP)
	}
	if s.VIP.Port() == 0 {
		return fmt.Errorf("service %q: VIP %v has no port", s, s.VIP)
	}
	return nil
}

// checkBackend accepts the zero AddrPort (no endpoint) or an IPv4 address with a port.
func checkBackend(b netip.AddrPort) error {
	if b == (netip.AddrPort{}) {
		return nil
	}
	if !b.Addr().Is4() || b.Port() == 0 {
		return fmt.Errorf("backend %v: want an IPv4 address and a port", b)
	}
	return nil
}

// hash16 is kube-proxy's chain-name hash: base32 of SHA-256, first 16 characters.
func hash16(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base32.StdEncoding.EncodeToString(sum[:])[:16]
}

// ServiceChain is the KUBE-SVC-<hash> chain of svc, named as kube-proxy names it:
// hash(ServicePortName + "tcp").
func ServiceChain(svc Service) string { return svcChainPrefix + hash16(svc.String()+protocol) }

// EndpointChain is the KUBE-SEP-<hash> chain of one endpoint of svc, named as kube-proxy names
// it: hash(ServicePortName + "tcp" + "ip:port").
func EndpointChain(svc Service, ep netip.AddrPort) string {
	return sepChainPrefix + hash16(svc.String()+protocol+ep.String())
}

// Rules returns iptables-restore --noflush input that makes the tables hold exactly kube-proxy's
// rules for svc with the single endpoint backend, and deletes the endpoint chains of stale
// backends (those svc pointed to before). svc must pass Validate.
//
// With a backend, the nat table gets
//
//	KUBE-SERVICES: -d VIP/32 -p tcp --dport P -j KUBE-SVC-…   ("ns/name cluster IP")
//	KUBE-SVC-…:    -j KUBE-SEP-…                               ("ns/name -> A:P")
//	KUBE-SEP-…:    -p tcp -j DNAT --to-destination A:P         ("ns/name")
//
// and the filter table's KUBE-SERVICES is empty. With no backend (the zero netip.AddrPort), it
// is what kube-proxy does for a Service without endpoints: no nat rules and no KUBE-SVC chain at
// all, and in the filter table's KUBE-SERVICES a rule that REJECTs new connections to VIP:P with
// icmp-port-unreachable ("ns/name has no endpoints"), so a client's connect fails at once with
// ECONNREFUSED instead of timing out.
//
// Every chain is (re)declared, which in --noflush mode flushes it, so the text is a complete
// description of the state and applying it twice is harmless; a declared-then-deleted chain
// (-X) that did not exist is harmless too. The rules are written in iptables-save's canonical
// form (what `iptables-save` prints back), which is equivalent to kube-proxy's own argument order.
// The jumps from the built-in chains to KUBE-SERVICES are not part of this text: Proxy adds them
// once with iptables.
func Rules(svc Service, backend netip.AddrPort, stale ...netip.AddrPort) string {
	var del []string
	for _, s := range stale {
		if s != backend {
			del = append(del, EndpointChain(svc, s))
		}
	}
	return render(svc, backend, del)
}

// render is Rules with the chains to delete given by name.
func render(svc Service, backend netip.AddrPort, deleteChains []string) string {
	name := svc.String()
	svcChain := ServiceChain(svc)
	hasEP := backend.IsValid()
	var b strings.Builder
	line := func(parts ...string) { b.WriteString(strings.Join(parts, " ") + "\n") }
	dst := svc.VIP.Addr().String() + "/32"
	dport := fmt.Sprint(svc.VIP.Port())

	line("*filter")
	line(":" + ServicesChain + " - [0:0]")
	if !hasEP {
		line("-A", ServicesChain, "-d", dst, "-p", protocol, "-m", "comment", "--comment", quote(name+noEndpointSuffix),
			"-m", protocol, "--dport", dport, "-j", "REJECT", "--reject-with", rejectWith)
	}
	line("COMMIT")

	line("*nat")
	line(":" + ServicesChain + " - [0:0]")
	line(":" + svcChain + " - [0:0]")
	var sepChain string
	if hasEP {
		sepChain = EndpointChain(svc, backend)
		line(":" + sepChain + " - [0:0]")
	}
	var del []string
	seen := map[string]bool{ServicesChain: true, svcChain: !hasEP, sepChain: true}
	for _, c := range deleteChains {
		if !seen[c] {
			seen[c] = true
			del = append(del, c)
			line(":" + c + " - [0:0]")
		}
	}
	if hasEP {
		line("-A", ServicesChain, "-d", dst, "-p", protocol, "-m", "comment", "--comment", quote(name+" cluster IP"),
			"-m", protocol, "--dport", dport, "-j", svcChain)
		line("-A", svcChain, "-m", "comment", "--comment", quote(name+" -> "+backend.String()), "-j", sepChain)
		line("-A", sepChain, "-p", protocol, "-m", "comment", "--comment", quote(name),
			"-m", protocol, "-j", "DNAT", "--to-destination", backend.String())
	} else {
		line("-X", svcChain)
	}
	for _, c := range del {
		line("-X", c)
	}
	line("COMMIT")
	return b.String()
}

// teardown returns restore input that flushes and deletes KUBE-SERVICES in both tables and the
// given nat chains. The jumps to KUBE-SERVICES must be gone first.
func teardown(natChains []string) string {
	var b strings.Builder
	b.WriteString("*filter\n:" + ServicesChain + " - [0:0]\n-X " + ServicesChain + "\nCOMMIT\n")
	b.WriteString("*nat\n:" + ServicesChain + " - [0:0]\n")
	for _, c := range natChains {
		b.WriteString(":" + c + " - [0:0]\n")
	}
	b.WriteString("-X " + ServicesChain + "\n")
	for _, c := range natChains {
		b.WriteString("-X " + c + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// skeleton is the restore input Install applies: empty KUBE-SERVICES chains in both tables.
func skeleton() string {
	return "*filter\n:" + ServicesChain + " - [0:0]\nCOMMIT\n*nat\n:" + ServicesChain + " - [0:0]\nCOMMIT\n"
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
