package scenario

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/nfslab/nfslab/lab/datapath"
	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/fault"
	"github.com/nfslab/nfslab/lab/nfs"
	"github.com/nfslab/nfslab/lab/smb"
	"github.com/nfslab/nfslab/lab/verdict"
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// Validate checks a scenario whose defaults have been applied (Parse does both). It returns an
// *Error listing every problem, or nil.
func (s *Scenario) Validate() error {
	var p problems
	switch {
	case s.Name == "":
		p.add("name", "missing: give the scenario a short name, e.g. my-failover")
	case !nameRE.MatchString(s.Name):
		p.add("name", fmt.Sprintf("%q is not a simple name: use lowercase letters, digits, '-', '_' and '.', starting with a letter or digit, at most 64 characters", s.Name))
	}
	s.validateMatrix(&p)
	s.validateExpect(&p)
	s.validateMount(&p)
	s.validateNetwork(&p)
	s.validateTimeouts(&p)
	s.validateFailover(&p)
	s.validateKind(&p)
	s.validateCilium(&p)
	return p.err("")
}

// MaxKindNodes is the most nodes a kind cluster of the lab has: the server's and the client's.
const MaxKindNodes = 2

// kindNodes is the node count of the scenario's kind clusters.
func (s *Scenario) kindNodes() int { return max(s.Kind.Nodes, DefaultKindNodes) }

// validateKind checks the kind section: a node count the lab can create, given only where there
// are kind cells, and two nodes where a fault restarts the server's node.
func (s *Scenario) validateKind(p *problems) {
	n := s.kindNodes()
	if s.Kind.Nodes < 0 || n > MaxKindNodes {
		p.add("kind.nodes", fmt.Sprintf("%d: want 1 (the default) or 2 (the NFS server on a worker, the mount on the control-plane node)", s.Kind.Nodes))
		return
	}
	if !slices.Contains(s.Matrix.Clusters, ClusterKind) {
		if s.Kind.Nodes != 0 {
			p.add("kind.nodes", fmt.Sprintf("applies to kind clusters, and matrix.clusters is %v: add kind to it, or remove kind.nodes", s.Matrix.Clusters))
		}
		return
	}
	if n < 2 && slices.Contains(s.Matrix.Faults, fault.RestartNode) {
		p.add("matrix.faults", "restart-node restarts the NFS server's node, which must not be the node that mounts: set kind.nodes: 2")
	}
}

func (s *Scenario) validateMatrix(p *problems) {
	before := len(p.list)
	axis(p, "matrix.kernels", s.Matrix.Kernels, kernelProblem)
	if len(s.Matrix.Kernels) > 0 {
		if labels, ok := kernelLabels(s.Matrix.Kernels); !ok {
			seen := map[string]int{}
			for i, l := range labels {
				if j, dup := seen[l]; dup && kernelKey(s.Matrix.Kernels[i]) != kernelKey(s.Matrix.Kernels[j]) {
					p.add(fmt.Sprintf("matrix.kernels[%d]", i), fmt.Sprintf("cannot be told apart from matrix.kernels[%d] in cell IDs (both are %q)", j, l))
				}
				seen[l] = i
			}
		}
	}
	axis(p, "matrix.clusters", s.Matrix.Clusters, clusterProblem)
	axis(p, "matrix.datapaths", s.Matrix.Datapaths, datapathProblem)
	axis(p, "matrix.protocols", s.Matrix.Protocols, protocolProblem)
	if slices.Contains(s.Matrix.Protocols, ProtocolNFS) {
		axis(p, "matrix.nfs", s.Matrix.NFS, nfsProblem)
	} else if len(s.Matrix.NFS) > 0 {
		p.add("matrix.nfs", fmt.Sprintf("NFS versions apply to NFS cells, and matrix.protocols is %v: remove matrix.nfs, or add nfs to matrix.protocols", s.Matrix.Protocols))
	}
	axis(p, "matrix.faults", s.Matrix.Faults, faultProblem)
	s.validateForms(p)
	if len(p.list) == before {
		s.validateNotEmpty(p)
	}
}

// axis checks one axis of the matrix: not empty, every value valid, no duplicates.
func axis(p *problems, field string, values []string, check func(string) string) {
	if len(values) == 0 {
		p.add(field, "missing: list at least one value")
		return
	}
	seen := map[string]int{}
	for i, v := range values {
		f := fmt.Sprintf("%s[%d]", field, i)
		if msg := check(v); msg != "" {
			p.add(f, msg)
			continue
		}
		key := kernelKey(v)
		if j, dup := seen[key]; dup {
			p.add(f, fmt.Sprintf("%q is listed twice (also %s[%d])", v, field, j))
			continue
		}
		seen[key] = i
	}
}

// kernelKey is the value two kernels are the same by: a path in its cleaned form. It is the
// identity for other axis values.
func kernelKey(k string) string {
	if IsKernelPath(k) {
		return filepath.Clean(k)
	}
	return k
}

func kernelProblem(k string) string {
	switch {
	case k == "":
		return "empty kernel name"
	case strings.TrimSpace(k) != k:
		return fmt.Sprintf("%q has leading or trailing spaces", k)
	case contains(KnownKernels(), k), IsKernelPath(k):
		return ""
	}
	return fmt.Sprintf("unknown kernel %q%s: want %s, or a path to a kernel image (bzImage, vmlinuz)", k, didYouMean(k, KnownKernels()), orList(KnownKernels()))
}

func clusterProblem(c string) string {
	if contains(Clusters(), c) {
		return ""
	}
	return fmt.Sprintf("unknown cluster form %q%s (want %s)", c, didYouMean(c, Clusters()), orList(Clusters()))
}

func datapathProblem(d string) string {
	if contains(datapath.Names(), d) || cilium.IsDatapath(d) {
		return ""
	}
	return fmt.Sprintf("unknown datapath %q%s (want %s)", d, didYouMean(d, datapath.Names()), orList(datapath.Names()))
}

func nfsProblem(v string) string {
	switch {
	case contains(nfs.Versions(), v):
		return ""
	case v == "4":
		return `NFS version "4" is ambiguous: write "4.0" in quotes (YAML reads 4.0 as the number 4)`
	case v == "2", v == "3", strings.HasPrefix(v, "2."), strings.HasPrefix(v, "3."):
		return fmt.Sprintf("NFS version %q is not supported yet (want %s)", v, orList(nfs.Versions()))
	}
	return fmt.Sprintf("unknown NFS version %q (want %s)", v, orList(nfs.Versions()))
}

// versionProblem checks a rule's version: an NFS version, or the SMB cells' one.
func versionProblem(v string) string {
	if v == smb.Dialect {
		return ""
	}
	return nfsProblem(v)
}

func protocolProblem(v string) string {
	if contains(Protocols(), v) {
		return ""
	}
	return fmt.Sprintf("unknown protocol %q%s (want %s)", v, didYouMean(v, Protocols()), orList(Protocols()))
}

func faultProblem(f string) string {
	if contains(fault.Names(), f) {
		return ""
	}
	return fmt.Sprintf("unknown fault %q%s (want %s)", f, didYouMean(f, fault.Names()), orList(fault.Names()))
}

func verdictProblem(v string) string {
	if v == "" {
		return "missing verdict"
	}
	if verdict.Verdict(v).Valid() {
		return ""
	}
	var all []string
	for _, w := range verdict.All() {
		all = append(all, string(w))
	}
	return fmt.Sprintf("unknown verdict %q%s (want %s)", v, didYouMean(v, all), orList(all))
}

// validateExpect checks the verdicts and that every rule's match values are values an axis
// can take. A value that is valid but not in this matrix is allowed: the rule then applies
// when the axis is changed (nfslab run --kernel ...); Warnings reports it.
func (s *Scenario) validateExpect(p *problems) {
	if msg := verdictProblem(s.Expect.Default); msg != "" {
		p.add("expect.default", msg)
	}
	labels, _ := kernelLabels(s.Matrix.Kernels)
	for i, r := range s.Expect.Rules {
		f := fmt.Sprintf("expect.rules[%d]", i)
		if msg := verdictProblem(r.Verdict); msg != "" {
			p.add(f+".verdict", msg)
		} else if r.Reason != "" {
			if msg := verdict.ReasonProblem(verdict.Verdict(r.Verdict), verdict.Code(r.Reason)); msg != "" {
				p.add(f+".reason", msg)
			}
		}
		m := r.Match
		if m.Kernel != "" && !contains(labels, m.Kernel) {
			if msg := kernelProblem(m.Kernel); msg != "" {
				p.add(f+".match.kernel", msg)
			}
		}
		for _, c := range []struct {
			field, value string
			check        func(string) string
		}{
			{"cluster", m.Cluster, clusterProblem},
			{"datapath", m.Datapath, datapathProblem},
			{"protocol", m.Protocol, protocolProblem},
			{"nfs", m.NFS, versionProblem},
			{"fault", m.Fault, faultProblem},
			{"cilium", m.Cilium, ciliumVersionProblem},
		} {
			if c.value != "" {
				if msg := c.check(c.value); msg != "" {
					p.add(f+".match."+c.field, msg)
				}
			}
		}
	}
}

func (s *Scenario) validateMount(p *problems) {
	for i, o := range s.Mount.SMBOptions {
		f := fmt.Sprintf("mount.smbOptions[%d]", i)
		if _, _, _, err := smb.MountOptions(netip.MustParseAddr(DefaultVIP), []string{o}); err != nil {
			p.add(f, fmt.Sprintf("%q: %v", o, strings.TrimPrefix(err.Error(), "smb mount options: ")))
		}
	}
	if len(s.Mount.SMBOptions) > 0 && !slices.Contains(s.Matrix.Protocols, ProtocolSMB) {
		p.add("mount.smbOptions", "SMB options, but matrix.protocols has no smb")
	}
	for i, o := range s.Mount.Options {
		f := fmt.Sprintf("mount.options[%d]", i)
		key, _, _ := strings.Cut(o, "=")
		key = strings.ToLower(key)
		switch {
		case strings.TrimSpace(o) == "":
			p.add(f, "empty mount option")
		case strings.ContainsAny(o, ", \t\r\n"):
			p.add(f, fmt.Sprintf("%q: give one option per list item, without commas or spaces", o))
		case key == "vers" || key == "nfsvers" || key == "minorversion" || isVersionFlag(key):
			p.add(f, fmt.Sprintf("%q: the NFS version comes from matrix.nfs; remove it here", o))
		case key == "addr":
			p.add(f, fmt.Sprintf("%q: the lab mounts the service address (service.vip); remove it here", o))
		}
	}
}

// isVersionFlag matches the v3, v4, v4.1 … shorthand mount options.
func isVersionFlag(k string) bool {
	if len(k) < 2 || k[0] != 'v' || k[1] < '0' || k[1] > '9' {
		return false
	}
	rest := k[2:]
	return rest == "" || (len(rest) == 2 && rest[0] == '.' && rest[1] >= '0' && rest[1] <= '9')
}

func (s *Scenario) validateNetwork(p *problems) {
	vip, vipOK := parseIPv4(p, "service.vip", s.Service.VIP)
	if vipOK && !vip.IsGlobalUnicast() {
		p.add("service.vip", fmt.Sprintf("%s is not a unicast address (loopback, link-local, multicast and broadcast addresses cannot front a service)", vip))
		vipOK = false
	}
	if s.Service.Port < 1 || s.Service.Port > 65535 {
		p.add("service.port", fmt.Sprintf("%d is not a TCP port (want 1 to 65535)", s.Service.Port))
	}

	prefix, err := netip.ParsePrefix(s.Topology.NodeCIDR)
	switch {
	case err != nil:
		p.add("topology.nodeCIDR", fmt.Sprintf("%q is not an address with a prefix length, e.g. %s", s.Topology.NodeCIDR, DefaultNodeCIDR))
		return
	case !prefix.Addr().Is4():
		p.add("topology.nodeCIDR", fmt.Sprintf("%s is not IPv4", prefix))
		return
	case prefix.Bits() > 29:
		p.add("topology.nodeCIDR", fmt.Sprintf("/%d leaves no room for the node and two backends (want /29 or shorter)", prefix.Bits()))
		return
	}
	node := prefix.Addr()
	network := prefix.Masked().Addr()
	broadcast := lastAddr(prefix)
	if node == network || node == broadcast || !node.IsGlobalUnicast() {
		p.add("topology.nodeCIDR", fmt.Sprintf("%s is not a host address: give the node's own address, e.g. %s", node, DefaultNodeCIDR))
		return
	}
	if vipOK && prefix.Contains(vip) {
		p.add("service.vip", fmt.Sprintf("%s is inside topology.nodeCIDR %s: the service address must be outside the node network", vip, prefix.Masked()))
	}
	backend := func(field, v string) (netip.Addr, bool) {
		a, ok := parseIPv4(p, field, v)
		switch {
		case !ok:
		case !prefix.Contains(a):
			p.add(field, fmt.Sprintf("%s is not inside topology.nodeCIDR %s", a, prefix.Masked()))
		case a == node:
			p.add(field, fmt.Sprintf("%s is the node's own address", a))
		case a == network:
			p.add(field, fmt.Sprintf("%s is the network address of topology.nodeCIDR", a))
		case a == broadcast:
			p.add(field, fmt.Sprintf("%s is the broadcast address of topology.nodeCIDR", a))
		default:
			return a, true
		}
		return a, false
	}
	a, aOK := backend("topology.backendA", s.Topology.BackendA)
	b, bOK := backend("topology.backendB", s.Topology.BackendB)
	if aOK && bOK && a == b {
		p.add("topology.backendB", fmt.Sprintf("%s is also backendA: the replacement backend needs its own address", b))
	}
}

func parseIPv4(p *problems, field, v string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(v)
	if err != nil || !a.Is4() {
		p.add(field, fmt.Sprintf("%q is not an IPv4 address", v))
		return netip.Addr{}, false
	}
	return a, true
}

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := 32 - p.Bits()
	for i := 3; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		b[i] |= byte(1<<n - 1)
		host -= n
	}
	return netip.AddrFrom4(b)
}

func (s *Scenario) validateFailover(p *problems) {
	f := s.Failover
	if w := f.NoEndpointWindow.Duration; w < 0 || w > MaxNoEndpointWindow {
		p.add("failover.noEndpointWindow", fmt.Sprintf("%s: want a duration from 0s to %s", f.NoEndpointWindow, MaxNoEndpointWindow))
	}
	if w := f.StaleEndpoint.Duration; w < 0 || w > MaxNoEndpointWindow {
		p.add("failover.staleEndpoint", fmt.Sprintf("%s: want a duration from 0s to %s", f.StaleEndpoint, MaxNoEndpointWindow))
	}
	if f.SocketLBNoBackend != NoBackendRefuse && f.SocketLBNoBackend != NoBackendPass {
		p.add("failover.socketLBNoBackend", fmt.Sprintf("%q: want %s or %s", f.SocketLBNoBackend, NoBackendRefuse, NoBackendPass))
	}
	if !slices.Contains(s.Matrix.Clusters, ClusterKind) {
		return
	}
	// On a kind cluster the endpoints change when Kubernetes changes them: nfslab cannot hold
	// a window open or keep a stale endpoint in place.
	if w := f.NoEndpointWindow; w.Duration != 0 {
		p.add("failover.noEndpointWindow", fmt.Sprintf("%s: on a kind cluster Kubernetes decides how long the Service has no endpoint (the Deployment starts the replacement); this is the netns form's: remove it, or remove kind from matrix.clusters", w))
	}
	if w := f.StaleEndpoint; w.Duration != 0 {
		p.add("failover.staleEndpoint", fmt.Sprintf("%s: on a kind cluster the datapath sees the EndpointSlice update when Kubernetes delivers it; this is the netns form's: remove it, or remove kind from matrix.clusters", w))
	}
}

func (s *Scenario) validateTimeouts(p *problems) {
	t := s.Timeouts
	for _, d := range []struct {
		field string
		v     Duration
	}{{"timeouts.recovery", t.Recovery}, {"timeouts.probe", t.Probe}, {"timeouts.setup", t.Setup}} {
		// A zero setup is the default of each cell's cluster form (see Timeouts).
		if d.v.Duration < 0 || (d.v.Duration == 0 && d.field != "timeouts.setup") {
			p.add(d.field, fmt.Sprintf("%s: want a positive duration", d.v))
		}
	}
	if t.Probe.Duration > 0 && t.Recovery.Duration > 0 && t.Probe.Duration >= t.Recovery.Duration {
		p.add("timeouts.probe", fmt.Sprintf("%s is not shorter than timeouts.recovery (%s): a probe must fit in the recovery window", t.Probe, t.Recovery))
	}
}
