package cilium

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

// Backend is one backend of a service in the agent's service table, with its state (active,
// terminating, quarantined, maintenance).
type Backend struct {
	Addr  netip.AddrPort
	State string
}

func (b Backend) String() string { return fmt.Sprintf("%s (%s)", b.Addr, b.State) }

// serviceJSON is what `cilium-dbg service list -o json` prints for one service: the service as
// the agent was asked for it (spec) and as it programmed its datapath (status.realized).
type serviceJSON struct {
	Spec   *serviceSpec `json:"spec"`
	Status *struct {
		Realized *serviceSpec `json:"realized"`
	} `json:"status"`
}

type serviceSpec struct {
	Frontend *struct {
		IP   string `json:"ip"`
		Port uint16 `json:"port"`
	} `json:"frontend-address"`
	Backends []struct {
		IP    *string `json:"ip"`
		Port  uint16  `json:"port"`
		State string  `json:"state"`
	} `json:"backend-addresses"`
}

// ParseServiceBackends reads `cilium-dbg service list -o json` and returns the backends the agent
// has programmed for frontend (its realized state, else its spec); ok is false when the table
// has no such frontend.
func ParseServiceBackends(out []byte, frontend netip.AddrPort) (backends []Backend, ok bool, err error) {
	var list []serviceJSON
	if err := json.Unmarshal(out, &list); err != nil {
		return nil, false, fmt.Errorf("the Cilium agent's service table: %w", err)
	}
	for _, s := range list {
		spec := s.Spec
		if s.Status != nil && s.Status.Realized != nil {
			spec = s.Status.Realized
		}
		if spec == nil || spec.Frontend == nil || spec.Frontend.Port != frontend.Port() {
			continue
		}
		if ip, err := netip.ParseAddr(spec.Frontend.IP); err != nil || ip != frontend.Addr() {
			continue
		}
		bs := []Backend{}
		for _, b := range spec.Backends {
			if b.IP == nil {
				continue
			}
			ip, err := netip.ParseAddr(*b.IP)
			if err != nil {
				return nil, false, fmt.Errorf("the Cilium agent's service table: backend of %s: %w", frontend, err)
			}
			bs = append(bs, Backend{Addr: netip.AddrPortFrom(ip, b.Port), State: b.State})
		}
		return bs, true, nil
	}
	return nil, false, nil
}

// ServiceBackends asks the agent on the node which backends it forwards frontend to.
func ServiceBackends(ctx context.Context, node NodeExec, frontend netip.AddrPort) ([]Backend, bool, error) {
	out, err := AgentExec(ctx, node, "cilium-dbg", "service", "list", "-o", "json")
	if err != nil {
		return nil, false, err
	}
	return ParseServiceBackends([]byte(out), frontend)
}

// FormatBackends renders backends as "10.244.0.5:2049 (active), …", or "none".
func FormatBackends(bs []Backend) string {
	if len(bs) == 0 {
		return "none"
	}
	parts := make([]string, len(bs))
	for i, b := range bs {
		parts[i] = b.String()
	}
	return strings.Join(parts, ", ")
}
