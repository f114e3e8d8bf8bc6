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
	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/observe/connecttrace"
	"github.com/nfslab/nfslab/lab/scenario"
)

// kindSession is the kind cluster the kind form's cells share in this VM. Consecutive cells that
// want the same cluster share it as it is; for another kube-proxy mode its kube-proxy is switched
// (kind.Cluster.SwitchProxyMode), and only a cluster without kube-proxy, or one whose switch
// failed, is replaced by a new one. A cluster with real Cilium serves the cells of its Cilium
// datapath and version only. The host orders a VM's cells by mode, "none" last (then by Cilium
// datapath). Creating a cluster takes minutes under TCG (Cilium's many more), a switch and a
// cell's workload well under one.
type kindSession struct {
	cfg kind.ClusterConfig // NodeImage, GaneshaImage, SideLoad, KindCNI, ReadyTimeout; ProxyMode, Nodes and Cilium per cluster
	// ciliums are the Cilium installs the cells' Cilium datapaths use (Job.Cilium).
	ciliums []cilium.Install
	log     *slog.Logger
	em      *emitter
	cur     *kind.Cluster
	// curObs is cur's record: its creation, or the switch of its kube-proxy (kept in a
	// snapshot of the VM with the rest of the agent, so that a restored VM's cells have it).
	curObs *event.ClusterObs
	// failed remembers a cluster that could not be created: its other cells fail at once
	// instead of waiting out another creation.
	failed map[string]error
	keep   bool // the cells' workloads stay, and the cluster after them (serveKept)
}

// clusterWant is the cluster a cell needs.
type clusterWant struct {
	mode   string          // the kube-proxy mode
	nodes  int             // the node count (0 means 1)
	cilium *cilium.Install // real Cilium, for a Cilium datapath
}

// want is the cluster the cell c needs.
func (s *kindSession) want(c scenario.Cell) (clusterWant, error) {
	mode, ok := datapath.ProxyMode(c.Datapath)
	if !ok {
		return clusterWant{}, fmt.Errorf("datapath %q has no kube-proxy mode", c.Datapath)
	}
	w := clusterWant{mode: mode, nodes: max(c.Nodes, 1)}
	if !cilium.IsDatapath(c.Datapath) {
		return w, nil
	}
	if w.cilium = s.install(cilium.Key(c.Datapath, c.Cilium)); w.cilium == nil {
		return clusterWant{}, fmt.Errorf("no Cilium %s install for datapath %s in the job", c.Cilium, c.Datapath)
	}
	return w, nil
}

// install is the job's Cilium install named key (cilium.Install.Key), nil if it has none.
func (s *kindSession) install(key string) *cilium.Install {
	for i, in := range s.ciliums {
		if in.Key() == key {
			return &s.ciliums[i]
		}
	}
	return nil
}

// ciliumKey names a cluster's Cilium as kind.Cluster.Cilium does ("" for none).
func ciliumKey(in *cilium.Install) string {
	if in == nil {
		return ""
	}
	return in.Key()
}

// cluster returns the session's cluster as w wants it, creating it (and deleting the previous
// one) when needed. Its creation is reported outside any cell.
func (s *kindSession) cluster(ctx context.Context, w clusterWant) (*kind.Cluster, error) {
	mode, nodes, ck := w.mode, max(w.nodes, 1), ciliumKey(w.cilium)
	if s.cur != nil && s.cur.ProxyMode == mode && s.cur.Nodes == nodes && s.cur.Cilium == ck {
		return s.cur, nil
	}
	key := fmt.Sprintf("%s/%d/%s", mode, nodes, ck)
	if err := s.failed[key]; err != nil {
		return nil, fmt.Errorf("no kind cluster of %d node(s) with kube-proxy mode %s %s(its creation failed earlier in this VM): %w", nodes, mode, withCilium(ck), err)
	}
	if s.cur != nil && s.cur.ProxyMode != "none" && s.cur.Nodes == nodes && ck == "" && s.cur.Cilium == "" {
		// Switching kube-proxy takes seconds; a new cluster minutes.
		from, start := s.cur.ProxyMode, time.Now()
		err := s.cur.SwitchProxyMode(ctx, mode)
		obs := event.ClusterObs{Name: kind.ClusterName, NodeImage: s.cfg.NodeImage, ProxyMode: mode, SwitchedFrom: from, SwitchSeconds: time.Since(start).Seconds()}
		if err == nil {
			s.em.emit(event.Event{Kind: event.KindObserve, Cluster: &obs})
			s.curObs = &obs
			return s.cur, nil
		}
		obs.Error = err.Error()
		s.em.emit(event.Event{Kind: event.KindObserve, Cluster: &obs})
		s.log.Warn("switch kube-proxy; creating a new cluster instead", "from", from, "to", mode, "err", err)
	}
	s.close()
	cfg := s.cfg
	cfg.ProxyMode, cfg.Nodes, cfg.Cilium = mode, nodes, w.cilium
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
		if c != nil {
			// Created but not usable (Cilium or the node never became ready): the next
			// cluster needs its name.
			if derr := c.Delete(); derr != nil {
				s.log.Warn("delete the kind cluster that did not come up", "err", derr)
			}
		}
		if s.failed == nil {
			s.failed = map[string]error{}
		}
		s.failed[key] = err
		return nil, err
	}
	s.cur, s.curObs = c, &obs
	return c, nil
}

// withCilium renders a Cilium key for a message: "and Cilium cilium@v1.19.7 ", or nothing.
func withCilium(key string) string {
	if key == "" {
		return ""
	}
	return "and Cilium " + key + " "
}

// close deletes the session's cluster, if any and unless it is kept.
func (s *kindSession) close() {
	if s.cur == nil || s.keep {
		return
	}
	if err := s.cur.Delete(); err != nil {
		s.log.Warn("delete the kind cluster", "err", err)
	}
	s.cur, s.curObs = nil, nil
}

// kindParts wires a kind cell: the session's cluster as the cell needs it, the cell's workload
// on it, the kind node, and the datapath — the cluster's kube-proxy, real Cilium, or nfslab's
// socket-LB at the VM's root cgroup (which every kind node's sockets, and the kernel's own, pass
// through) fed by an EndpointSlice informer.
func kindParts(ctx context.Context, c scenario.Cell, em *emitter, s *kindSession) (parts, error) {
	w, err := s.want(c)
	if err != nil {
		return parts{}, err
	}
	kc, err := s.cluster(ctx, w)
	if err != nil {
		return parts{}, err
	}
	pid, err := kind.NodePID(ctx)
	if err != nil {
		return parts{}, err
	}
	cfg := kind.CellConfig{Index: c.Index, NFS: c.NFS, Port: uint16(c.Port), Image: s.cfg.GaneshaImage, ProxyMode: w.mode, NodePID: pid, Keep: s.keep}
	var dp Datapath
	switch {
	case w.cilium != nil:
		cfg.Cilium = true
		dp = kindCilium{datapath: w.cilium.Datapath}
	case w.mode == "none":
		lb, err := datapath.New(datapath.SocketLB, datapath.Config{
			CgroupRoot: CgroupRoot, WatchPort: uint16(c.Port),
			RefuseWithoutBackend: c.SocketLBNoBackend == scenario.NoBackendRefuse,
		})
		if err != nil {
			return parts{}, err
		}
		dp, cfg.Feed = lb, lb
	default:
		dp = kindKubeProxy{kind.NewKubeProxy(kc, w.mode)}
	}
	cl, err := kind.NewCellCluster(kc, cfg, em.emit)
	if err != nil {
		return parts{}, err
	}
	return parts{
		cluster:    cl,
		clusterObs: s.curObs,
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

// kindCilium is the cluster's real Cilium as a cell's datapath. The agent installed itself with
// the cluster and follows the Service on its own, so a cell installs and removes nothing; it
// verifies that Cilium's programs are where the datapath wants them and that the agent serves
// the service (kind.VerifyCilium).
type kindCilium struct{ datapath string }

func (kindCilium) Install(context.Context) error { return nil }
func (kindCilium) Close(context.Context) error   { return nil }

func (k kindCilium) Verify(vip netip.Addr, ports []datapath.Port) error {
	if len(ports) == 0 {
		return fmt.Errorf("the service %s has no port", vip)
	}
	ctx, cancel := context.WithTimeout(context.Background(), verifyTimeout)
	defer cancel()
	return kind.VerifyCilium(ctx, k.datapath, CgroupRoot, netip.AddrPortFrom(vip, ports[0].Port))
}

// verifyTimeout bounds a datapath check that asks the cluster (a command in Cilium's agent
// container, slow under TCG).
const verifyTimeout = 2 * time.Minute

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
