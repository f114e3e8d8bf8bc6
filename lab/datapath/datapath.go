// Package datapath installs the service datapath on the node: kube-proxy's iptables rules, or a
// socket-level load balancer (nfslab's own, BPF cgroup hooks at the root cgroup). Both are
// driven the same way: Install once, SetService whenever the service's endpoint changes (as an
// EndpointSlice update would), Forwarding to read back what it forwards to, Verify before the
// fault (what is in effect on the node is this datapath, for this service alone), Close on every
// exit path.
package datapath

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/cilium/ebpf"

	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/datapath/kubeproxy"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/socklb"
)

// Names of the datapaths a scenario can ask for.
const (
	// KubeProxy is kube-proxy in its iptables mode: nfslab's own rules in the netns form, the
	// real kube-proxy in the kind form.
	KubeProxy = "kube-proxy"
	// KubeProxyIPVS and KubeProxyNFTables are the real kube-proxy's other modes (kind form only).
	KubeProxyIPVS     = "kube-proxy-ipvs"
	KubeProxyNFTables = "kube-proxy-nftables"
	// SocketLB is nfslab's own socket-level load balancer at the node's root cgroup (in the kind
	// form, on a cluster without kube-proxy, fed by an EndpointSlice informer).
	SocketLB = "socket-lb"
)

// Names lists the datapaths a scenario can ask for.
func Names() []string { return []string{KubeProxy, KubeProxyIPVS, KubeProxyNFTables, SocketLB} }

// NetnsNames lists the datapaths the netns form has (it emulates kube-proxy's iptables mode only).
func NetnsNames() []string { return []string{KubeProxy, SocketLB} }

// ProxyMode is the kube-proxy mode a kind cluster runs for the datapath: "none" for socket-LB
// and for real Cilium where it replaces kube-proxy (kube-proxy is left out; cilium.KubeProxyMode);
// ok is false for an unknown datapath.
func ProxyMode(name string) (mode string, ok bool) {
	if cilium.IsDatapath(name) {
		return cilium.KubeProxyMode(name), true
	}
	switch name {
	case KubeProxy:
		return "iptables", true
	case KubeProxyIPVS:
		return "ipvs", true
	case KubeProxyNFTables:
		return "nftables", true
	case SocketLB:
		return "none", true
	}
	return "", false
}

// Port is one port of the service. Its fields match nfs.PortProto's, so the agent converts
// with datapath.Port(p).
type Port struct {
	Name     string // "nfs", "mountd", …; may be "" only when the service has a single port
	Port     uint16
	Protocol string // "tcp" or "udp"; "" means "tcp"
}

// Service names and numbers, as the Service object nfslab stands in for would carry them.
const (
	ServiceNamespace = "nfslab"
	ServiceName      = "nfs"
)

// Datapath is a service datapath on the node.
type Datapath interface {
	// Install puts the datapath in place with no service programmed yet.
	Install(ctx context.Context) error
	// SetService points every port of the service at vip at the same port on backend; the
	// zero backend means "no endpoints". Calling it again re-points the service (and drops
	// ports that are no longer listed).
	SetService(ctx context.Context, vip netip.Addr, ports []Port, backend netip.Addr) error
	// Verify checks that what is in effect on the node is this datapath, serving the service
	// vip (with ports) alone: what a previous cell left behind would otherwise be part of the
	// datapath the cell reports on.
	Verify(vip netip.Addr, ports []Port) error
	// Close removes everything Install and SetService created.
	Close(ctx context.Context) error
	ReadBack
}

// ReadBack is a datapath whose state can be read back: the backend it forwards vip:port to now,
// as the datapath itself holds it (the socket-LB's service map, the nat table's rules), not as
// nfslab last told it. The zero Addr means none. "The datapath points at B" is on the timeline
// only as such a read.
type ReadBack interface {
	Forwarding(ctx context.Context, vip netip.Addr, port Port) (netip.Addr, error)
}

// InstrReadBack names the read-back on the timeline (event.InstrumentObs) when it fails.
const InstrReadBack = "datapath-readback"

// Instrumented is a datapath whose hook keeps counters of what it saw.
type Instrumented interface {
	HookStats() (event.HookObs, error)
}

// HookEventSource is a datapath whose hook reports each connect it saw: what it received and
// what it returned.
type HookEventSource interface {
	ReadHookEvents(ctx context.Context, out func(socklb.HookEvent)) error
}

// Describer is a datapath that can say what it installed, for the timeline.
type Describer interface {
	Describe() (string, error)
}

// Config is what the datapaths need to know about the node.
type Config struct {
	CgroupRoot string // root of the cgroup2 hierarchy, where socket-LB attaches
	WatchPort  uint16 // socket-LB counts connects to this port whose destination is not a VIP
	// RefuseWithoutBackend makes socket-LB refuse connects to a VIP with no backend (as Cilium
	// does, with EPERM) instead of letting them through unchanged.
	RefuseWithoutBackend bool
}

// New returns the named datapath, not yet installed.
func New(name string, cfg Config) (Datapath, error) {
	switch name {
	case KubeProxy:
		return kubeProxy{p: kubeproxy.New("iptables"), cgroupRoot: cfg.CgroupRoot}, nil
	case SocketLB:
		return &socketLB{cfg: cfg}, nil
	default:
		return nil, fmt.Errorf("datapath %q: the netns form has %s", name, strings.Join(NetnsNames(), " and "))
	}
}

// kubeProxy adapts the kube-proxy iptables rules to Datapath.
type kubeProxy struct {
	p          *kubeproxy.Proxy
	cgroupRoot string // where a socket-LB left behind would be in effect
}

func (k kubeProxy) Install(ctx context.Context) error { return k.p.Install(ctx) }

func (k kubeProxy) SetService(ctx context.Context, vip netip.Addr, ports []Port, backend netip.Addr) error {
	svc := kubeproxy.Service{Namespace: ServiceNamespace, Name: ServiceName, VIP: vip}
	for _, p := range ports {
		svc.Ports = append(svc.Ports, kubeproxy.ServicePort{Name: p.Name, Port: p.Port, Protocol: p.Protocol})
	}
	return k.p.SetBackend(ctx, svc, backend)
}

// Verify checks that no socket-level load balancer is in effect at the root cgroup: kube-proxy
// translates per packet, and a sock_addr program there would rewrite the kernel client's
// connects before any rule saw them.
func (k kubeProxy) Verify(netip.Addr, []Port) error { return NoSocketLB(k.cgroupRoot) }

func (k kubeProxy) Close(ctx context.Context) error { return k.p.Close(ctx) }

// Forwarding reads the backend back from the node's nat table.
func (k kubeProxy) Forwarding(ctx context.Context, vip netip.Addr, port Port) (netip.Addr, error) {
	svc := kubeproxy.Service{Namespace: ServiceNamespace, Name: ServiceName, VIP: vip}
	return k.p.Backend(ctx, svc, kubeproxy.ServicePort{Name: port.Name, Port: port.Port, Protocol: port.Protocol})
}

// socketLB adapts nfslab's BPF socket-LB to Datapath.
type socketLB struct {
	cfg  Config
	lb   *socklb.LB
	vips []netip.AddrPort // the VIP:ports programmed by the last SetService
}

func (s *socketLB) Install(context.Context) error {
	lb, err := socklb.Load(socklb.Config{WatchPort: s.cfg.WatchPort})
	if err != nil {
		return fmt.Errorf("load socket-LB programs: %w", err)
	}
	if err := lb.Attach(s.cfg.CgroupRoot); err != nil {
		_ = lb.Close()
		return fmt.Errorf("attach socket-LB at %s: %w", s.cfg.CgroupRoot, err)
	}
	s.lb = lb
	return nil
}

// SetService programs one socket-LB service per port number: socket-LB entries are keyed by
// ip:port and serve TCP (connect) and UDP (sendmsg/recvmsg) alike, so a port number listed for
// both protocols is one entry. Ports of the previous call that are no longer listed are deleted.
func (s *socketLB) SetService(_ context.Context, vip netip.Addr, ports []Port, backend netip.Addr) error {
	if s.lb == nil {
		return fmt.Errorf("socket-LB is not installed")
	}
	if len(ports) == 0 {
		return fmt.Errorf("socket-LB service %v: no ports", vip)
	}
	for _, p := range ports {
		if p.Protocol != "" && p.Protocol != "tcp" && p.Protocol != "udp" {
			return fmt.Errorf("socket-LB service %v: port %d: protocol %q is not tcp or udp", vip, p.Port, p.Protocol)
		}
	}
	vips := serviceKeys(vip, ports)
	for _, v := range vips {
		var be netip.AddrPort
		if backend.IsValid() {
			be = netip.AddrPortFrom(backend, v.Port())
		}
		if err := s.lb.SetService(socklb.Service{VIP: v, Backend: be, Refuse: s.cfg.RefuseWithoutBackend}); err != nil {
			return err
		}
	}
	return s.dropExcept(vips)
}

// serviceKeys are the socket-LB entries of the service vip: one per port number, in the order
// the ports are listed.
func serviceKeys(vip netip.Addr, ports []Port) []netip.AddrPort {
	var keys []netip.AddrPort
	for _, p := range ports {
		if k := netip.AddrPortFrom(vip, p.Port); !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return keys
}

// Forwarding reads the backend back from the socket-LB's service map, the one its hooks read.
func (s *socketLB) Forwarding(_ context.Context, vip netip.Addr, port Port) (netip.Addr, error) {
	if s.lb == nil {
		return netip.Addr{}, fmt.Errorf("socket-LB is not installed")
	}
	svc, ok, err := s.lb.Service(netip.AddrPortFrom(vip, port.Port))
	if err != nil || !ok {
		return netip.Addr{}, err
	}
	return svc.Backend.Addr(), nil
}

// dropExcept deletes the services programmed before that are not in keep, and remembers keep.
func (s *socketLB) dropExcept(keep []netip.AddrPort) error {
	var errs []error
	for _, v := range s.vips {
		if !slices.Contains(keep, v) {
			if err := s.lb.DeleteService(v); err != nil {
				errs = append(errs, err)
			}
		}
	}
	s.vips = keep
	return errors.Join(errs...)
}

func (s *socketLB) Close(context.Context) error {
	if s.lb == nil {
		return nil
	}
	err := s.lb.Close()
	s.lb, s.vips = nil, nil
	return err
}

// Describe says which socket-address programs are in effect at the cgroup root: nfslab's own,
// and any other (a second socket-LB there would also see the NFS client's connects).
func (s *socketLB) Describe() (string, error) { return EffectiveAt(s.cfg.CgroupRoot) }

// Verify checks that the sock_addr programs in effect at the root cgroup are this socket-LB's
// and no other's, and reads its service map back: it must hold the service vip's ports alone.
func (s *socketLB) Verify(vip netip.Addr, ports []Port) error {
	if s.lb == nil {
		return fmt.Errorf("socket-LB is not installed")
	}
	effective, err := socklb.EffectiveSockAddrPrograms(s.cfg.CgroupRoot)
	if err != nil {
		return err
	}
	ours, err := s.lb.ProgramIDs()
	if err != nil {
		return err
	}
	held, err := s.lb.VIPs()
	if err != nil {
		return err
	}
	return checkSocketLB(s.cfg.CgroupRoot, effective, ours, held, serviceKeys(vip, ports))
}

// checkSocketLB is socketLB.Verify's judgement: the programs effective at cgroup are exactly
// ours, each once, and the service map holds exactly want.
func checkSocketLB(cgroup string, effective []socklb.AttachedProgram, ours []ebpf.ProgramID, held, want []netip.AddrPort) error {
	var others []socklb.AttachedProgram
	for _, p := range effective {
		if !slices.Contains(ours, p.ID) {
			others = append(others, p)
		}
	}
	if len(others) > 0 {
		return fmt.Errorf("sock_addr programs other than this cell's socket-LB are effective at %s: %s", cgroup, describePrograms(others))
	}
	for _, id := range ours {
		if n := len(slices.DeleteFunc(slices.Clone(effective), func(p socklb.AttachedProgram) bool { return p.ID != id })); n != 1 {
			return fmt.Errorf("this cell's socket-LB program %d is effective %d times at %s (effective: %s)", id, n, cgroup, describePrograms(effective))
		}
	}
	held, want = slices.Clone(held), slices.Clone(want)
	slices.SortFunc(held, netip.AddrPort.Compare)
	slices.SortFunc(want, netip.AddrPort.Compare)
	if !slices.Equal(held, want) {
		return fmt.Errorf("the socket-LB's service map holds %v, want this cell's %v alone", held, want)
	}
	return nil
}

// NoSocketLB checks that no sock_addr program is effective at cgroup: at the root cgroup, that
// no socket-level load balancer can rewrite the address a kernel client connects to.
func NoSocketLB(cgroup string) error {
	progs, err := socklb.EffectiveSockAddrPrograms(cgroup)
	if err != nil {
		return err
	}
	if len(progs) > 0 {
		return fmt.Errorf("a socket-level load balancer is in effect at %s: %s", cgroup, describePrograms(progs))
	}
	return nil
}

// EffectiveAt says which sock_addr programs (connect4, sendmsg4, recvmsg4) are effective at a
// cgroup. At the root cgroup they are the only ones the kernel's own sockets — SUNRPC's, the
// SMB client's — pass through: "none" means no socket-level load balancer can rewrite a kernel
// client's server address on this node.
func EffectiveAt(cgroup string) (string, error) {
	progs, err := socklb.EffectiveSockAddrPrograms(cgroup)
	if err != nil {
		return "", err
	}
	if len(progs) == 0 {
		return fmt.Sprintf("no sock_addr program effective at %s", cgroup), nil
	}
	return fmt.Sprintf("effective at %s: %s", cgroup, describePrograms(progs)), nil
}

// describePrograms renders programs as "CGroupInet4Connect nfslab_connect4, …".
func describePrograms(progs []socklb.AttachedProgram) string {
	parts := make([]string, len(progs))
	for i, p := range progs {
		parts[i] = fmt.Sprintf("%s %s", p.Attach, p.Name)
	}
	return strings.Join(parts, ", ")
}

func (s *socketLB) ReadHookEvents(ctx context.Context, out func(socklb.HookEvent)) error {
	if s.lb == nil {
		return fmt.Errorf("socket-LB is not installed")
	}
	return s.lb.ReadHookEvents(ctx, out)
}

func (s *socketLB) HookStats() (event.HookObs, error) {
	if s.lb == nil {
		return event.HookObs{}, fmt.Errorf("socket-LB is not installed")
	}
	st, err := s.lb.Stats()
	if err != nil {
		return event.HookObs{}, fmt.Errorf("read socket-LB counters: %w", err)
	}
	obs := event.HookObs{Rewrites: st.Rewrites, Refused: st.Refused, NonVIP: st.NonVIP, LostEvents: st.LostHookEvents}
	if st.LastNonVIPDest.IsValid() {
		obs.LastNonVIPDest = st.LastNonVIPDest.String()
	}
	return obs, nil
}
