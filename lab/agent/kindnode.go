package agent

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/nfslab/nfslab/lab/cluster"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/nfs"
	"github.com/nfslab/nfslab/lab/observe"
)

// kindNode is the node of the kind form: the kind node container, whose network namespace holds
// kube-proxy's rules and whose mount namespace holds the mount. The VM's kernel is its kernel:
// the agent reaches its namespaces through its init's /proc entry — /proc/<pid>/net for its
// sockets and counters, /proc/<pid>/mounts for its mount table, /proc/<pid>/root for the files
// the probes read and write — and mounts in a child that has entered them (NodeNSCommand).
type kindNode struct {
	pid          int        // the node container's init, in the VM's PID namespace
	mountDir     string     // in the node's mount namespace
	clientAddr   netip.Addr // the node's address, for NFSv4 callbacks
	nfsVersion   string
	mountOptions []string
}

func (n *kindNode) proc(elem ...string) string {
	return filepath.Join(append([]string{"/proc", strconv.Itoa(n.pid)}, elem...)...)
}

// Prepare empties the node's connection tracking table: cells share the cluster, and a
// conntrack entry of an earlier cell's connection must not NAT this one's.
func (n *kindNode) Prepare(context.Context) error {
	ns, err := netns.GetFromPid(n.pid)
	if err != nil {
		return fmt.Errorf("open the kind node's network namespace: %w", err)
	}
	defer ns.Close()
	// Only the netfilter family: a handle for every family also opens XFRM, which fails with
	// EPROTONOSUPPORT where xfrm_user is a module nobody loaded (Debian's kernel).
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_NETFILTER)
	if err != nil {
		return fmt.Errorf("netlink in the kind node: %w", err)
	}
	defer h.Close()
	if err := h.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
		return fmt.Errorf("flush the kind node's conntrack table: %w", err)
	}
	return nil
}

// Mount mounts the service's VIP in the node, with the VM kernel's NFS client.
func (n *kindNode) Mount(ctx context.Context, svc cluster.Service) (string, error) {
	source, fstype, data, err := nfsMount(svc, n.nfsVersion, n.clientAddr, n.mountOptions)
	if err != nil {
		return "", err
	}
	if err := inNode(ctx, n.pid, "mount", source, n.mountDir, fstype, data); err != nil {
		if me, ok := err.(*MountError); ok {
			return "", nfs.ExplainMountError(n.nfsVersion, fmt.Errorf("mount %s on %s in the kind node (%s, %q): %w", source, n.mountDir, fstype, data, me.Errno))
		}
		return "", err
	}
	return fmt.Sprintf("%s on %s type %s (%s), in the kind node", source, n.mountDir, fstype, data), nil
}

// StartProbe starts one I/O probe on the mount, reached through the node's root.
func (n *kindNode) StartProbe(seq int, baseline bool) *probeRun {
	return startProbe(n.proc("root", n.mountDir), seq, baseline)
}

// MountEntry is the mount's line in the node's /proc/mounts.
func (n *kindNode) MountEntry() (nfs.MountEntry, error) {
	return mountEntry(n.proc("mounts"), n.mountDir)
}

// KernelSockets are the node's TCP sockets to port that no process holds.
func (n *kindNode) KernelSockets(port uint16) ([]event.Socket, error) {
	return kernelSockets(n.proc("net"), port)
}

// ActiveOpens is the node's TCP active-open counter.
func (n *kindNode) ActiveOpens() (uint64, error) { return observe.TCPActiveOpensIn(n.proc("net")) }

// Unmount removes the mount in the node (forced when the server does not answer).
func (n *kindNode) Unmount(ctx context.Context) error {
	return inNode(ctx, n.pid, "umount", n.mountDir)
}
