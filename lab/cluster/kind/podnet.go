package kind

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/nfslab/nfslab/lab/cluster/kind/nodeimage"
)

// The pod network of a cluster of nfslab's own node image. Every node of the image comes with
// the same static bridge (nodeimage.BridgeSubnet), which is all one node needs. On a cluster of
// several nodes each further node gets a range of its own — its bridge configuration rewritten
// before any pod runs there — and every node routes the others' ranges to them over the kind
// network, as kindnetd does on kind's own images. A node that restarts comes back in a new
// network namespace without those routes (and perhaps with a new address): restorePodRoutes puts
// them back.

// nodeNet is one node of the pod network: its container, its address on the kind network and
// its pod range.
type nodeNet struct {
	name   string
	addr   netip.Addr
	subnet netip.Prefix
}

// podSubnet is the pod range of the cluster's i-th node: node 0 (the control plane) keeps the
// image's own range, node i gets the i-th /24 after it.
func podSubnet(i int) (netip.Prefix, error) {
	base := netip.MustParsePrefix(nodeimage.BridgeSubnet)
	if i < 0 || i > 255 || base.Bits() != 24 {
		return netip.Prefix{}, fmt.Errorf("no pod range for node %d of %s", i, base)
	}
	b := base.Addr().As4()
	b[2] += byte(i)
	return netip.PrefixFrom(netip.AddrFrom4(b), 24), nil
}

// nodeNames are the cluster's node containers, in orderNodes' order.
func nodeNames(ctx context.Context) ([]string, error) {
	out, err := Docker(ctx, "ps", "--filter", "label=io.x-k8s.kind.cluster="+ClusterName, "--format", "{{.Names}}")
	if err != nil {
		return nil, fmt.Errorf("list the cluster's nodes: %w", err)
	}
	names, err := orderNodes(strings.Fields(string(out)))
	if err != nil {
		return nil, fmt.Errorf("list the cluster's nodes: %w", err)
	}
	return names, nil
}

// orderNodes sorts node container names as the pod ranges are handed out: the control plane
// first, then the workers in kind's order (nfslab-worker, nfslab-worker2, …, nfslab-worker10).
func orderNodes(names []string) ([]string, error) {
	names = slices.Clone(names)
	slices.SortFunc(names, func(a, b string) int {
		ac, bc := a == controlPlaneNode, b == controlPlaneNode
		switch {
		case ac && !bc:
			return -1
		case bc && !ac:
			return 1
		case len(a) != len(b):
			return len(a) - len(b)
		}
		return strings.Compare(a, b)
	})
	if len(names) == 0 || names[0] != controlPlaneNode {
		return nil, fmt.Errorf("nodes %v lack %s", names, controlPlaneNode)
	}
	return names, nil
}

// nodeAddr is the node container's IPv4 address on the kind network.
func nodeAddr(ctx context.Context, name string) (netip.Addr, error) {
	out, err := Docker(ctx, "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", name)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("node %s's address: %w", name, err)
	}
	for _, f := range strings.Fields(string(out)) {
		if a, err := netip.ParseAddr(f); err == nil && a.Is4() {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("node %s has no IPv4 address (docker says %q)", name, strings.TrimSpace(string(out)))
}

// podNetwork reads the addresses of the cluster's nodes, names in nodeNames' order, and gives
// each its pod range.
func podNetwork(ctx context.Context, names []string) ([]nodeNet, error) {
	nets := make([]nodeNet, len(names))
	for i, name := range names {
		a, err := nodeAddr(ctx, name)
		if err != nil {
			return nil, err
		}
		sub, err := podSubnet(i)
		if err != nil {
			return nil, err
		}
		nets[i] = nodeNet{name: name, addr: a, subnet: sub}
	}
	return nets, nil
}

// splitPodNetwork gives every node after the first its own pod range and routes the ranges
// between the nodes. It runs right after the cluster is created, before any pod of the lab is
// scheduled (kube-proxy's pods use the node's network, not the bridge).
func splitPodNetwork(ctx context.Context, names []string) ([]nodeNet, error) {
	nets, err := podNetwork(ctx, names)
	if err != nil {
		return nil, err
	}
	for _, n := range nets[1:] {
		sed := fmt.Sprintf(`s#"%s"#"%s"#`, nodeimage.BridgeSubnet, n.subnet)
		if _, err := Docker(ctx, "exec", n.name, "sed", "-i", sed, nodeimage.BridgeConflist); err != nil {
			return nil, fmt.Errorf("give node %s the pod range %s: %w", n.name, n.subnet, err)
		}
	}
	return nets, routePods(ctx, nets)
}

// routePods routes, on every node, every other node's pod range to that node.
func routePods(ctx context.Context, nets []nodeNet) error {
	for _, on := range nets {
		for _, to := range nets {
			if to.name == on.name {
				continue
			}
			if _, err := Docker(ctx, "exec", on.name, "ip", "route", "replace", to.subnet.String(), "via", to.addr.String()); err != nil {
				return fmt.Errorf("route %s's pods (%s) from node %s: %w", to.name, to.subnet, on.name, err)
			}
		}
	}
	return nil
}

// RestartNode restarts a node's container as a reboot of the node would go: Docker sends the
// node's systemd its stop signal, so the kubelet and the node's containers stop (and are killed
// after 10 s), then starts it again. When it runs, the pod routes it lost are restored. It
// returns one line on what happened to the node: how long it took, its address before and after.
func (c *Cluster) RestartNode(ctx context.Context, name string) (string, error) {
	before, err := nodeAddr(ctx, name)
	if err != nil {
		return "", err
	}
	start := time.Now()
	if _, err := Docker(ctx, "restart", "--time", "10", name); err != nil {
		return "", fmt.Errorf("restart node %s: %w", name, err)
	}
	took := time.Since(start)
	after, err := nodeAddr(ctx, name)
	if err != nil {
		return "", err
	}
	if !c.kindCNI {
		names, err := nodeNames(ctx)
		if err != nil {
			return "", err
		}
		nets, err := podNetwork(ctx, names)
		if err != nil {
			return "", err
		}
		if err := routePods(ctx, nets); err != nil {
			return "", fmt.Errorf("after restarting node %s: %w", name, err)
		}
	}
	moved := "kept its address " + after.String()
	if after != before {
		moved = fmt.Sprintf("came back with a new address: %s, was %s", after, before)
	}
	return fmt.Sprintf("node %s restarted (docker restart, %.1f s) and %s", name, took.Seconds(), moved), nil
}
