package agent

import (
	"fmt"
	"net/netip"
	"os"

	"github.com/nfslab/nfslab/lab/cluster/netns"
	"github.com/nfslab/nfslab/lab/datapath"
	"github.com/nfslab/nfslab/lab/observe/connecttrace"
	"github.com/nfslab/nfslab/lab/scenario"
)

// serviceCIDR is routed to the node's service device, as on a kube-proxy node.
func serviceCIDR() netip.Prefix { return netip.MustParsePrefix("10.96.0.0/12") }

// mountDir is where the node mounts the cell's service.
func mountDir(c scenario.Cell) string { return fmt.Sprintf("/mnt/nfslab/c%d", c.Index) }

// netnsParts wires the netns form of a cell: the cluster of network-namespace pods in this VM,
// the VM's root namespaces as the node, and nfslab's own datapath, which the cluster feeds the
// service's endpoints to.
func netnsParts(c scenario.Cell, em *emitter) (parts, error) {
	dp, err := datapath.New(c.Datapath, datapath.Config{
		CgroupRoot: CgroupRoot, WatchPort: uint16(c.Port),
		RefuseWithoutBackend: c.SocketLBNoBackend == scenario.NoBackendRefuse,
	})
	if err != nil {
		return parts{}, err
	}
	vip, err := netip.ParseAddr(c.VIP)
	if err != nil {
		return parts{}, fmt.Errorf("service VIP: %w", err)
	}
	node, err := netip.ParsePrefix(c.NodeCIDR)
	if err != nil {
		return parts{}, fmt.Errorf("node CIDR: %w", err)
	}
	var pods []netip.Addr
	for _, s := range []string{c.BackendA, c.BackendB} {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return parts{}, fmt.Errorf("backend address: %w", err)
		}
		pods = append(pods, a)
	}
	// `ip netns exec` runs the pod's command: the agent's own binary by its path (in the child,
	// /proc/self/exe would be ip itself).
	self, err := os.Executable()
	if err != nil {
		return parts{}, fmt.Errorf("find the agent binary: %w", err)
	}
	cl, err := netns.New(netns.Config{
		Index: c.Index, Protocol: c.Protocol, NFS: c.NFS, VIP: vip, Port: uint16(c.Port), NodeAddr: node, ServiceCIDR: serviceCIDR(),
		PodAddrs: pods, PodExec: []string{self, PodExecCommand},
	}, dp, em.emit)
	if err != nil {
		return parts{}, err
	}
	return parts{
		cluster: cl,
		node: &vmNode{
			mountDir: mountDir(c), clientAddr: node.Addr(),
			protocol: c.Protocol, nfsVersion: c.NFS, mountOptions: c.MountOptions,
		},
		datapath: dp,
		tracer: func(port uint16) (ConnectTracer, error) {
			return connecttrace.Start(connecttrace.Config{WatchPort: port})
		},
	}, nil
}
