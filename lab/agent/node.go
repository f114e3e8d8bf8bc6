package agent

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"

	"github.com/vishvananda/netlink"

	"github.com/nfslab/nfslab/lab/cluster"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/nfs"
	"github.com/nfslab/nfslab/lab/observe"
	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/lab/smb"
)

// vmNode is the node of the netns form: the VM's root network and mount namespaces, where the
// kernel NFS client mounts the service.
type vmNode struct {
	mountDir     string
	clientAddr   netip.Addr // the node's address, for NFSv4 callbacks
	protocol     string     // scenario.ProtocolNFS or scenario.ProtocolSMB
	nfsVersion   string
	mountOptions []string
}

// Prepare empties the node's connection tracking table. Every cell reuses the same VIP, pod IPs
// and (SUNRPC binds reserved ports) often the same client port, so a conntrack entry left by an
// earlier cell could NAT the next cell's connection to a dead pod: each cell starts from a clean
// node.
func (n *vmNode) Prepare(context.Context) error {
	if err := netlink.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
		return fmt.Errorf("flush the conntrack table: %w", err)
	}
	return nil
}

// Mount mounts the service's VIP with the kernel's NFS or CIFS client.
func (n *vmNode) Mount(ctx context.Context, svc cluster.Service) (string, error) {
	if n.protocol == scenario.ProtocolSMB {
		source, fstype, data, err := smb.MountOptions(svc.VIP, n.mountOptions)
		if err != nil {
			return "", err
		}
		if err := nfs.Mount(ctx, source, n.mountDir, fstype, data); err != nil {
			return "", smb.ExplainMountError(err)
		}
		return fmt.Sprintf("%s on %s type %s (%s)", source, n.mountDir, fstype, smb.Redact(data)), nil
	}
	source, fstype, data, err := nfsMount(svc, n.nfsVersion, n.clientAddr, n.mountOptions)
	if err != nil {
		return "", err
	}
	if err := nfs.Mount(ctx, source, n.mountDir, fstype, data); err != nil {
		return "", nfs.ExplainMountError(n.nfsVersion, err)
	}
	return fmt.Sprintf("%s on %s type %s (%s)", source, n.mountDir, fstype, data), nil
}

// nfsMount is the mount(2) arguments for an NFS mount of the service's export.
func nfsMount(svc cluster.Service, version string, clientAddr netip.Addr, options []string) (source, fstype, data string, err error) {
	if p := svc.NFSPort(); p != nfs.DefaultNFSPort {
		options = append(slices.Clone(options), fmt.Sprintf("port=%d", p))
	}
	fstype, data, err = nfs.MountOptions(version, svc.VIP, clientAddr, options)
	if err != nil {
		return "", "", "", err
	}
	return nfs.MountSource(svc.VIP, "/export"), fstype, data, nil
}

// StartProbe starts one I/O probe on the mount in a child process.
func (n *vmNode) StartProbe(seq int, baseline bool) *probeRun {
	return startProbe(n.mountDir, seq, baseline)
}

// MountEntry is the mount's line in /proc/mounts.
func (n *vmNode) MountEntry() (nfs.MountEntry, error) { return mountEntry("/proc/mounts", n.mountDir) }

// KernelSockets are the node's TCP sockets to port that no process holds: the kernel's own,
// such as SUNRPC's transport (the agent's readiness checks connect to the backends too).
func (n *vmNode) KernelSockets(port uint16) ([]event.Socket, error) {
	return kernelSockets("/proc/thread-self/net", port)
}

// mountEntry is dir's line in a mounts file (/proc/<pid>/mounts: that process's mount namespace).
func mountEntry(mounts, dir string) (nfs.MountEntry, error) {
	f, err := os.Open(mounts)
	if err != nil {
		return nfs.MountEntry{}, fmt.Errorf("read %s: %w", mounts, err)
	}
	defer f.Close()
	entries, err := nfs.ParseMounts(f)
	if err != nil {
		return nfs.MountEntry{}, fmt.Errorf("parse %s: %w", mounts, err)
	}
	m, ok := nfs.FindMount(entries, dir)
	if !ok {
		return nfs.MountEntry{}, fmt.Errorf("%s is not in %s", dir, mounts)
	}
	return m, nil
}

// kernelSockets are the TCP sockets to port, in the network namespace of a procfs net directory,
// that no process holds.
func kernelSockets(netDir string, port uint16) ([]event.Socket, error) {
	held, err := observe.HeldSocketInodes()
	if err != nil {
		return nil, err
	}
	obs, err := observe.ReadTCPSocketsIn(netDir, port)
	if err != nil {
		return nil, err
	}
	observe.MarkKernelSockets(obs.Sockets, held)
	return slices.DeleteFunc(obs.Sockets, func(s event.Socket) bool { return !s.Kernel }), nil
}

// Unmount removes the mount (forced when the server does not answer).
func (n *vmNode) Unmount(ctx context.Context) error { return nfs.Unmount(ctx, n.mountDir) }

// ActiveOpens is the node's TCP active-open counter.
func (n *vmNode) ActiveOpens() (uint64, error) { return observe.TCPActiveOpens() }
