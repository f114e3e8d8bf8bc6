// Package datapath installs the service datapath on the node: kube-proxy's iptables rules, or a
// socket-level load balancer (nfslab's own, BPF cgroup hooks at the root cgroup). Both are
// driven the same way: Install once, SetBackend whenever the service's endpoint changes (as an
// EndpointSlice update would), Close on every exit path.
package datapath

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/nfslab/nfslab/lab/datapath/kubeproxy"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/socklb"
)

// Names of the datapaths a scenario can ask for.
const (
	KubeProxy = "kube-proxy"
	SocketLB  = "socket-lb"
)

// Datapath is a service datapath on the node.
type Datapath interface {
	// Install puts the datapath in place with no service programmed yet.
	Install(ctx context.Context) error
	// SetBackend points the service VIP at backend; an invalid backend means "no endpoints".
	SetBackend(ctx context.Context, vip, backend netip.AddrPort) error
	// Close removes everything Install and SetBackend created.
	Close(ctx context.Context) error
}

// Instrumented is a datapath whose hook keeps counters of what it saw.
type Instrumented interface {
	HookStats() (event.HookObs, error)
}

// HookEventSource is a datapath whose hook reports each connect it saw: what it received and
// what it returned.
type HookEventSource interface {
	ReadHookEvents(ctx context.Context, out func(socklb.HookEvent)) error
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
		return kubeProxy{kubeproxy.New("iptables")}, nil
	case SocketLB:
		return &socketLB{cfg: cfg}, nil
	default:
		return nil, fmt.Errorf("unknown datapath %q (want %s or %s)", name, KubeProxy, SocketLB)
	}
}

// kubeProxy adapts the kube-proxy iptables rules to Datapath.
type kubeProxy struct{ p *kubeproxy.Proxy }

func (k kubeProxy) Install(ctx context.Context) error { return k.p.Install(ctx) }

func (k kubeProxy) SetBackend(ctx context.Context, vip, backend netip.AddrPort) error {
	return k.p.SetBackend(ctx, kubeproxy.Service{Namespace: "nfslab", Name: "nfs", VIP: vip}, backend)
}

func (k kubeProxy) Close(ctx context.Context) error { return k.p.Close(ctx) }

// socketLB adapts nfslab's BPF socket-LB to Datapath.
type socketLB struct {
	cfg Config
	lb  *socklb.LB
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

func (s *socketLB) SetBackend(_ context.Context, vip, backend netip.AddrPort) error {
	if s.lb == nil {
		return fmt.Errorf("socket-LB is not installed")
	}
	return s.lb.SetService(socklb.Service{VIP: vip, Backend: backend, Refuse: s.cfg.RefuseWithoutBackend})
}

func (s *socketLB) Close(context.Context) error {
	if s.lb == nil {
		return nil
	}
	err := s.lb.Close()
	s.lb = nil
	return err
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
	obs := event.HookObs{Rewrites: st.Rewrites, Refused: st.Refused, NonVIP: st.NonVIP}
	if st.LastNonVIPDest.IsValid() {
		obs.LastNonVIPDest = st.LastNonVIPDest.String()
	}
	return obs, nil
}
