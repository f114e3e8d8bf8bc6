package kind

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/nfslab/nfslab/lab/cluster"
	"github.com/nfslab/nfslab/lab/datapath"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/fault"
	"github.com/nfslab/nfslab/lab/nfs"
)

// The kind form of a cell's cluster: the real cluster runs the backends and publishes the
// service; the cell only watches. Its Deployment controller, the scheduler and the kubelet choose
// the pods and their IPs, the endpoint controllers publish them in EndpointSlices, and the
// datapath — the real kube-proxy, or nfslab's socket-LB fed by an EndpointSlice informer —
// forwards the ClusterIP. Every fact the verdict needs is recorded as it is seen.

// Endpoints is nfslab's own datapath on a cluster without kube-proxy (socket-LB): the cell feeds
// it the Service's endpoints from an EndpointSlice informer and reads it back after each change.
type Endpoints interface {
	SetService(ctx context.Context, vip netip.Addr, ports []datapath.Port, backend netip.Addr) error
	datapath.ReadBack
}

// CellConfig describes one cell's workload.
type CellConfig struct {
	Index     int    // the cell's index; its namespace is nfslab-c<index>
	NFS       string // the NFS version the server must serve ("4.1", …)
	Port      uint16 // the NFS port
	Image     string // the nfs-ganesha image
	ProxyMode string // the cluster's kube-proxy mode (kind.ProxyModes); "none" needs Feed
	NodePID   int    // the node container's init, for kube-proxy's rules
	// Feed, on a cluster without kube-proxy, is the datapath the informer programs.
	Feed Endpoints
	// Cilium says the cluster's real Cilium serves the service (no Feed): its agent watches
	// the EndpointSlices itself, and its service table is read back.
	Cilium bool
	// Keep leaves the workload in place at teardown (nfslab run --keep).
	Keep bool
}

// CellCluster is one cell's NFS service on the lab's kind cluster.
type CellCluster struct {
	cfg    CellConfig
	w      *Workload
	record func(event.Event) event.Event
	svc    cluster.Service
	seen   map[string]Pod // backend pods handed out so far, as they were then
	nodes  NodeRestarter
	last   netip.Addr // the backend last published

	stopFeed context.CancelFunc
	fed      chan []netip.Addr // the informer's latest programmed endpoints (capacity 1)
	fedMu    sync.Mutex
	fedNow   []netip.Addr
}

// NewCellCluster returns the cell's cluster on c, not set up yet. record puts its observations
// on the timeline.
func NewCellCluster(c *Cluster, cfg CellConfig, record func(event.Event) event.Event) (*CellCluster, error) {
	if cfg.ProxyMode == "none" && cfg.Feed == nil && !cfg.Cilium {
		return nil, errors.New("a cluster without kube-proxy needs a datapath to feed endpoints to, or Cilium")
	}
	ports, err := nfs.ServicePorts(cfg.NFS, cfg.Port)
	if err != nil {
		return nil, err
	}
	if len(ports) != 1 {
		return nil, fmt.Errorf("NFS %s: the kind form serves NFSv4 only (one port)", cfg.NFS)
	}
	protos, _, err := nfs.ServerProtocols(cfg.NFS)
	if err != nil {
		return nil, err
	}
	conf, err := nfs.RenderGaneshaConfig(nfs.GaneshaParams{
		Protocols: protos, BindAddr: netip.IPv4Unspecified(), Port: int(cfg.Port),
		ExportPath: "/export", PseudoPath: "/export", RecoveryRoot: "/var/lib/nfs/ganesha",
	})
	if err != nil {
		return nil, fmt.Errorf("ganesha config: %w", err)
	}
	ns := fmt.Sprintf("nfslab-c%d", cfg.Index)
	cc := &CellCluster{cfg: cfg, record: record, seen: map[string]Pod{}, fed: make(chan []netip.Addr, 1),
		w: NewWorkload(c.Client, ns, cfg.Image, conf, c.ServerNode), nodes: c}
	cc.svc = cluster.Service{Name: ns + "/" + serviceName, Ports: []datapath.Port{datapath.Port(ports[0])}}
	return cc, nil
}

// Service is the service the node mounts (its VIP once Setup has run).
func (c *CellCluster) Service() cluster.Service { return c.svc }

// Setup creates the cell's namespace, the ganesha config and the Service, whose ClusterIP the
// cluster chooses.
func (c *CellCluster) Setup(ctx context.Context) (string, error) {
	p := c.svc.Ports[0]
	vip, err := c.w.CreateService(ctx, []corev1.ServicePort{ServicePort(p.Name, int32(p.Port))})
	if err != nil {
		return "", err
	}
	c.svc.VIP = vip
	served := "kube-proxy mode " + c.cfg.ProxyMode
	switch {
	case c.cfg.Cilium && c.cfg.ProxyMode == "none":
		served = "served by Cilium, no kube-proxy"
	case c.cfg.Cilium:
		served = "kube-proxy mode " + c.cfg.ProxyMode + " beside Cilium"
	}
	return fmt.Sprintf("namespace %s, Service %s with ClusterIP %s (%s), %s", c.w.Namespace(), c.svc.Name, vip, c.svc.PortList(), served), nil
}

// backendProgress is how often a cell waiting for its NFS server's pod says what the pod is
// doing: under TCG a pod can take minutes (real Cilium compiles each new endpoint's datapath
// before the pod gets its network).
const backendProgress = time.Minute

// StartBackend waits for the next Ready pod of the nfs-ganesha Deployment, creating the
// Deployment the first time; later pods are the ReplicaSet's replacements.
func (c *CellCluster) StartBackend(ctx context.Context) (cluster.Backend, error) {
	if len(c.seen) == 0 {
		if err := c.w.CreateServer(ctx, int32(c.cfg.Port)); err != nil {
			return nil, err
		}
	}
	var p Pod
	waiting := func() string { return "waiting for the NFS server's pod to be ready: " + c.w.PodStates(ctx) }
	say := func(msg string) { c.record(event.Event{Kind: event.KindProgress, Msg: msg}) }
	err := waitSaying(ctx, say, backendProgress, waiting, func(ctx context.Context) (err error) {
		p, err = c.w.WaitReadyPod(ctx, c.seen)
		return err
	})
	if err != nil && c.cfg.Cilium {
		return nil, ciliumPodWhy(ctx, err)
	}
	if err != nil {
		return nil, err
	}
	if msg := comeback(c.seen, p); msg != "" {
		c.record(event.Event{Kind: event.KindProgress, Msg: msg})
	}
	c.seen[p.Name] = p
	c.record(event.Event{Kind: event.KindObserve, Backend: &event.BackendObs{Name: p.Name, IP: p.IP.String(), State: event.BackendServing}})
	return &Backend{pod: p, w: c.w, nodes: c.nodes, record: c.record}, nil
}

// comeback says how the backend p came to serve after the pods in seen: "" for the first one.
func comeback(seen map[string]Pod, p Pod) string {
	was, ok := seen[p.Name]
	switch {
	case len(seen) == 0:
		return ""
	case !ok:
		return fmt.Sprintf("the ReplicaSet replaced the backend with pod %s (%s, on %s)", p.Name, p.IP, p.Node)
	case was.IP == p.IP:
		return fmt.Sprintf("the kubelet restarted pod %s's server container in place (restarts %d → %d): the pod kept its IP %s",
			p.Name, was.Restarts, p.Restarts, p.IP)
	}
	return fmt.Sprintf("the kubelet gave pod %s a new sandbox (restarts %d → %d): its IP is now %s, was %s",
		p.Name, was.Restarts, p.Restarts, p.IP, was.IP)
}

// NodeRestarter restarts a node of the cluster (the restart-node fault) and says what happened.
type NodeRestarter interface {
	RestartNode(ctx context.Context, name string) (string, error)
}

// Publish waits until the cluster has published b: its EndpointSlice lists b alone (recorded as
// watched), and the datapath forwards the service to b (recorded when seen). With nil, it waits
// until the backend published last is no longer listed — the endpoint controller's reaction to
// its deletion; a replacement may already be listed by then.
func (c *CellCluster) Publish(ctx context.Context, b cluster.Backend) error {
	if c.cfg.Feed != nil && c.stopFeed == nil {
		if err := c.startFeed(ctx); err != nil {
			return err
		}
	}
	if b == nil {
		gone := c.last
		eps, err := c.w.waitEndpoints(ctx, func(eps []netip.Addr) bool { return !slices.Contains(eps, gone) })
		if err != nil {
			return fmt.Errorf("wait for %s to leave the Service's endpoints: %w", gone, err)
		}
		c.recordService(eps, false, "")
		return nil
	}
	want := b.Addr()
	eps, err := c.w.waitEndpoints(ctx, func(eps []netip.Addr) bool { return slices.Equal(eps, []netip.Addr{want}) })
	if err != nil {
		return fmt.Errorf("wait for the Service's EndpointSlice to list %s: %w", want, err)
	}
	c.recordService(eps, false, "")
	c.last = want
	switch {
	case c.cfg.Feed != nil:
		return c.waitFed(ctx, want)
	case c.cfg.Cilium && c.cfg.ProxyMode == "none":
		return c.waitCilium(ctx, want)
	case c.cfg.Cilium:
		// The node's own traffic to the VIP is kube-proxy's to translate; Cilium's table is
		// what its pods' traffic would get, recorded too.
		if err := c.waitKubeProxy(ctx, want); err != nil {
			return err
		}
		return c.waitCilium(ctx, want)
	}
	return c.waitKubeProxy(ctx, want)
}

// recordService records the Service's endpoints; datapath says the datapath now forwards to them,
// and table, on a cluster with Cilium, is its agent's service table entry read back.
func (c *CellCluster) recordService(eps []netip.Addr, datapath bool, table string) {
	list := make([]string, len(eps))
	for i, a := range eps {
		list[i] = a.String()
	}
	c.record(event.Event{Kind: event.KindObserve, Service: &event.ServiceObs{
		Name: c.svc.Name, VIP: c.svc.VIP.String(), Ports: c.svc.PortNames(), Endpoints: list, Datapath: datapath, Cilium: table,
	}})
}

// waitKubeProxy polls kube-proxy's rules on the node until they forward the service to want,
// and records that moment with the rules seen.
func (c *CellCluster) waitKubeProxy(ctx context.Context, want netip.Addr) error {
	port := c.svc.NFSPort()
	var last []string
	var lastErr error
	for {
		rules, err := ProxyRules(ctx, c.cfg.NodePID, c.cfg.ProxyMode, c.svc.VIP, want, port)
		if err == nil && Forwards(c.cfg.ProxyMode, rules, want, port) {
			c.recordService([]netip.Addr{want}, true, "")
			c.record(event.Event{Kind: event.KindProgress, Msg: fmt.Sprintf("kube-proxy (%s) forwards %s: %s", c.cfg.ProxyMode, c.svc.VIP, strings.Join(rules, " | "))})
			return nil
		}
		last, lastErr = rules, err
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for kube-proxy (%s) to forward %s to %s: %w (its rules: %s; last error: %v; its log: %s)",
				c.cfg.ProxyMode, c.svc.VIP, want, ctx.Err(), strings.Join(last, " | "), lastErr, kubeProxyLogTail(ctx, c.w.c, 15))
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// startFeed starts the EndpointSlice informer that programs the datapath: each change of the
// Service's ready endpoints is handed to it (the first one, or none), and what the datapath is
// then read back forwarding to is recorded.
func (c *CellCluster) startFeed(ctx context.Context) error {
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	err := WatchEndpoints(fctx, c.w.c, c.w.Namespace(), func(eps []netip.Addr) {
		var backend netip.Addr
		if len(eps) > 0 {
			backend = eps[0]
		}
		if err := c.cfg.Feed.SetService(fctx, c.svc.VIP, c.svc.Ports, backend); err != nil {
			if fctx.Err() == nil {
				c.record(event.Event{Kind: event.KindObserve, Instr: &event.InstrumentObs{Name: "endpointslice-informer", Error: err.Error()}})
			}
			return
		}
		fwd, err := c.cfg.Feed.Forwarding(fctx, c.svc.VIP, c.svc.Ports[0])
		if err != nil {
			if fctx.Err() == nil {
				c.record(event.Event{Kind: event.KindObserve, Instr: &event.InstrumentObs{Name: datapath.InstrReadBack, Error: err.Error()}})
			}
			return
		}
		programmed := []netip.Addr{}
		if fwd.IsValid() {
			programmed = []netip.Addr{fwd}
		}
		c.recordService(programmed, true, "")
		c.fedMu.Lock()
		c.fedNow = programmed
		c.fedMu.Unlock()
		select {
		case c.fed <- programmed:
		default:
		}
	})
	if err != nil {
		cancel()
		return err
	}
	c.stopFeed = cancel
	return nil
}

// waitFed waits until the informer has programmed the datapath with want alone.
func (c *CellCluster) waitFed(ctx context.Context, want netip.Addr) error {
	for {
		c.fedMu.Lock()
		now := c.fedNow
		c.fedMu.Unlock()
		if slices.Equal(now, []netip.Addr{want}) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the EndpointSlice informer to program %s -> %s (programmed: %v): %w", c.svc.VIP, want, now, ctx.Err())
		case <-c.fed:
		case <-time.After(time.Second):
		}
	}
}

// Teardown stops the informer and deletes the cell's namespace (unless the cell keeps it); the
// kubelet stops its pods afterwards, while the next cell already runs in a namespace of its own.
func (c *CellCluster) Teardown(ctx context.Context) error {
	if c.stopFeed != nil {
		c.stopFeed()
	}
	if c.cfg.Keep {
		return nil
	}
	return c.w.Delete(ctx)
}

// Backend is a pod of the cell's Deployment.
type Backend struct {
	pod    Pod
	w      *Workload
	nodes  NodeRestarter
	record func(event.Event) event.Event
}

// Name is the pod's name.
func (b *Backend) Name() string { return b.pod.Name }

// Addr is the pod's IP.
func (b *Backend) Addr() netip.Addr { return b.pod.IP }

// Fault acts on the pod through the real system (fault.KindNames): delete-pod deletes it through
// the API with the pod's grace period, returning once the pod object is gone (the kubelet has
// stopped the server and removed the sandbox); force-delete with a grace period of 0, returning
// at once (the kubelet stops the server afterwards); kill-container kills the server's container
// and returns once the kubelet has seen it die; restart-node restarts the pod's node and returns
// once the node runs again (the pod's sandbox died with it).
func (b *Backend) Fault(ctx context.Context, name string) error {
	var grace *int64
	switch name {
	case fault.KillContainer:
		return b.killContainer(ctx)
	case fault.RestartNode:
		return b.restartNode(ctx)
	case fault.DeletePod:
	case fault.ForceDelete:
		zero := int64(0)
		grace = &zero
	default:
		return fmt.Errorf("fault %q: the kind form has %s", name, strings.Join(fault.KindNames(), ", "))
	}
	if err := b.w.DeletePod(ctx, b.pod.Name, grace); err != nil {
		return err
	}
	if name == fault.DeletePod {
		if err := b.w.WaitPodGone(ctx, b.pod.Name); err != nil {
			return err
		}
	}
	b.record(event.Event{Kind: event.KindObserve, Backend: &event.BackendObs{Name: b.pod.Name, IP: b.pod.IP.String(), State: event.BackendDeleted}})
	return nil
}

// killContainer kills the pod's server container through its cgroup and waits until the kubelet
// has noticed (the pod not Ready, or the container restarted).
func (b *Backend) killContainer(ctx context.Context) error {
	id, restarts, err := b.w.ServerContainer(ctx, b.pod.Name)
	if err != nil {
		return err
	}
	cg, err := KillContainer(ctx, CgroupRoot, id)
	if err != nil {
		return err
	}
	b.record(event.Event{Kind: event.KindObserve, Backend: &event.BackendObs{Name: b.pod.Name, IP: b.pod.IP.String(), State: event.BackendKilled}})
	b.record(event.Event{Kind: event.KindProgress, Msg: fmt.Sprintf("killed pod %s's server container %.12s (cgroup %s)", b.pod.Name, id, strings.TrimPrefix(cg, CgroupRoot))})
	return b.w.WaitPodNotServing(ctx, b.pod.Name, restarts)
}

// restartNode restarts the node the pod runs on. The node that mounts must not be it: a
// cluster of one node has only that one.
func (b *Backend) restartNode(ctx context.Context) error {
	if b.pod.Node == "" || b.pod.Node == controlPlaneNode {
		return fmt.Errorf("restart-node: pod %s runs on %q, the node that mounts; it needs a cluster of two nodes (kind.nodes: 2)", b.pod.Name, b.pod.Node)
	}
	b.record(event.Event{Kind: event.KindProgress, Msg: fmt.Sprintf("restarting node %s, where pod %s (%s) serves", b.pod.Node, b.pod.Name, b.pod.IP)})
	msg, err := b.nodes.RestartNode(ctx, b.pod.Node)
	if err != nil {
		return err
	}
	// The node's restart took its containers and the pod's network namespace with it.
	b.record(event.Event{Kind: event.KindObserve, Backend: &event.BackendObs{Name: b.pod.Name, IP: b.pod.IP.String(), State: event.BackendDeleted}})
	b.record(event.Event{Kind: event.KindProgress, Msg: msg})
	return nil
}
