package agent

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/nfslab/nfslab/lab/cluster/kind"
	"github.com/nfslab/nfslab/lab/cluster/vm"
	"github.com/nfslab/nfslab/lab/datapath"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/observe/connecttrace"
	"github.com/nfslab/nfslab/lab/scenario"
)

// kindSession is the kind cluster the kind form's cells share in this VM. Consecutive cells that
// want the same kube-proxy mode share it as it is; for another mode its kube-proxy is switched
// (kind.Cluster.SwitchProxyMode), and only a cluster without kube-proxy, or one whose switch
// failed, is replaced by a new one. The host orders a VM's cells by mode, "none" last. Creating a
// cluster takes minutes under TCG, a switch and a cell's workload well under one.
type kindSession struct {
	cfg kind.ClusterConfig // NodeImage, GaneshaImage, SideLoad, KindCNI, ReadyTimeout; ProxyMode and Nodes per cluster
	log *slog.Logger
	em  *emitter
	cur *kind.Cluster
	// failed remembers a mode whose cluster could not be created: its other cells fail at once
	// instead of waiting out another creation.
	failed map[string]error
	keep   bool // the cells' workloads stay, and the cluster after them (serveKept)
}

// cluster returns the session's cluster of nodes nodes with kube-proxy in mode, creating it (and
// deleting the previous one) when needed. Its creation is reported outside any cell.
func (s *kindSession) cluster(ctx context.Context, mode string, nodes int) (*kind.Cluster, error) {
	nodes = max(nodes, 1)
	if s.cur != nil && s.cur.ProxyMode == mode && s.cur.Nodes == nodes {
		return s.cur, nil
	}
	key := fmt.Sprintf("%s/%d", mode, nodes)
	if err := s.failed[key]; err != nil {
		return nil, fmt.Errorf("no kind cluster of %d node(s) with kube-proxy mode %s (its creation failed earlier in this VM): %w", nodes, mode, err)
	}
	if s.cur != nil && s.cur.ProxyMode != "none" && s.cur.Nodes == nodes {
		// Switching kube-proxy takes seconds; a new cluster minutes.
		from, start := s.cur.ProxyMode, time.Now()
		err := s.cur.SwitchProxyMode(ctx, mode)
		obs := event.ClusterObs{Name: kind.ClusterName, NodeImage: s.cfg.NodeImage, ProxyMode: mode, SwitchedFrom: from, SwitchSeconds: time.Since(start).Seconds()}
		if err == nil {
			s.em.emit(event.Event{Kind: event.KindObserve, Cluster: &obs})
			return s.cur, nil
		}
		obs.Error = err.Error()
		s.em.emit(event.Event{Kind: event.KindObserve, Cluster: &obs})
		s.log.Warn("switch kube-proxy; creating a new cluster instead", "from", from, "to", mode, "err", err)
	}
	s.close()
	cfg := s.cfg
	cfg.ProxyMode, cfg.Nodes = mode, nodes
	say := func(line string) {
		if line = strings.TrimSpace(line); line != "" {
			s.em.emit(event.Event{Kind: event.KindProgress, Msg: "kind: " + line})
		}
	}
	c, obs, err := kind.CreateCluster(ctx, s.log, cfg, say)
	if err != nil {
		obs.Error = err.Error()
	}
	s.em.emit(event.Event{Kind: event.KindObserve, Cluster: &obs})
	if err != nil {
		if s.failed == nil {
			s.failed = map[string]error{}
		}
		s.failed[key] = err
		return nil, err
	}
	s.cur = c
	return c, nil
}

// close deletes the session's cluster, if any and unless it is kept.
func (s *kindSession) close() {
	if s.cur == nil || s.keep {
		return
	}
	if err := s.cur.Delete(); err != nil {
		s.log.Warn("delete the kind cluster", "err", err)
	}
	s.cur = nil
}

// kindParts wires a kind cell: the session's cluster with the cell's kube-proxy mode, the cell's
// workload on it, the kind node, and the datapath — the cluster's kube-proxy, or nfslab's
// socket-LB at the VM's root cgroup (which every kind node's sockets, and the kernel's own, pass
// through) fed by an EndpointSlice informer.
func kindParts(ctx context.Context, c scenario.Cell, em *emitter, s *kindSession) (parts, error) {
	mode, ok := datapath.ProxyMode(c.Datapath)
	if !ok {
		return parts{}, fmt.Errorf("datapath %q has no kube-proxy mode", c.Datapath)
	}
	kc, err := s.cluster(ctx, mode, c.Nodes)
	if err != nil {
		return parts{}, err
	}
	pid, err := kind.NodePID(ctx)
	if err != nil {
		return parts{}, err
	}
	cfg := kind.CellConfig{Index: c.Index, NFS: c.NFS, Port: uint16(c.Port), Image: s.cfg.GaneshaImage, ProxyMode: mode, NodePID: pid, Keep: s.keep}
	var dp Datapath
	if mode == "none" {
		lb, err := datapath.New(datapath.SocketLB, datapath.Config{
			CgroupRoot: CgroupRoot, WatchPort: uint16(c.Port),
			RefuseWithoutBackend: c.SocketLBNoBackend == scenario.NoBackendRefuse,
		})
		if err != nil {
			return parts{}, err
		}
		dp, cfg.Feed = lb, lb
	} else {
		dp = kindKubeProxy{kind.NewKubeProxy(kc, mode)}
	}
	cl, err := kind.NewCellCluster(kc, cfg, em.emit)
	if err != nil {
		return parts{}, err
	}
	return parts{
		cluster: cl,
		node: &kindNode{
			pid: pid, mountDir: mountDir(c), clientAddr: kc.NodeIP,
			nfsVersion: c.NFS, mountOptions: c.MountOptions,
		},
		datapath: dp,
		tracer: func(port uint16) (ConnectTracer, error) {
			return connecttrace.Start(connecttrace.Config{WatchPort: port})
		},
	}, nil
}

// kindKubeProxy is the kind cluster's kube-proxy as a cell's datapath, verified as nfslab's own
// kube-proxy is: no socket-level load balancer in effect at the VM's root cgroup, which every
// node's sockets and the kernel's own pass through.
type kindKubeProxy struct{ *kind.KubeProxy }

func (kindKubeProxy) Verify(netip.Addr, []datapath.Port) error {
	return datapath.NoSocketLB(CgroupRoot)
}

// serveKept says the session's cluster is kept — its kubeconfig, for the host to rewrite to its
// forward — and waits until the host sends anything (Stop) or closes the port. The VM then
// powers off with the cluster in it.
func serveKept(ctx context.Context, em *emitter, s *kindSession, lines *bufio.Scanner) error {
	if s.cur == nil {
		return fmt.Errorf("--keep: no kind cluster to keep (its creation failed)")
	}
	kc, err := os.ReadFile(s.cur.Kubeconfig)
	if err != nil {
		return fmt.Errorf("--keep: read the cluster's kubeconfig: %w", err)
	}
	em.emit(event.Event{Kind: event.KindKept, Kept: &event.Kept{Kubeconfig: string(kc), APIServerPort: s.cfg.APIServerPort, ProxyMode: s.cur.ProxyMode}})
	lines.Scan()
	return ctx.Err()
}

// Stop is what the host sends a kept VM to end it.
type Stop struct {
	Stop bool `json:"stop"`
}

// upGuestNet gives the VM's network interface (qemu's user-mode network, present only when the
// host forwards a port to the VM) the address qemu expects.
func upGuestNet() error {
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list network interfaces: %w", err)
	}
	for _, l := range links {
		if l.Type() != "device" || l.Attrs().Name == "lo" {
			continue
		}
		addr, err := netlink.ParseAddr(vm.GuestAddr)
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(l, addr); err != nil {
			return fmt.Errorf("address %s on %s: %w", vm.GuestAddr, l.Attrs().Name, err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("bring up %s: %w", l.Attrs().Name, err)
		}
		return nil
	}
	return fmt.Errorf("no network interface (is virtio_net in the kernel?)")
}
