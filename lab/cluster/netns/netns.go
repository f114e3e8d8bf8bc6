// Package netns is the network-namespace form of the lab's cluster, inside the VM of the kernel
// under test: the VM's root network namespace is the node, a bridge gives it its address, a
// dummy device routes the service CIDR as on a kube-proxy node, and every backend pod is a
// network namespace with a veth into the bridge, running nfs-ganesha (or, for SMB cells,
// Samba's smbd) over one export shared by all pods (a tmpfs, like a volume a replaced pod reattaches, so file handles survive).
//
// There is no Kubernetes here: the cluster stands in for the endpoint controller. Publish hands
// the service's endpoints to nfslab's own datapath (kube-proxy's iptables rules or the
// socket-LB), reads back what the datapath forwards the VIP to, and records that on the
// timeline.
package netns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nfslab/nfslab/lab/cluster"
	"github.com/nfslab/nfslab/lab/datapath"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/fault"
	"github.com/nfslab/nfslab/lab/nfs"
	"github.com/nfslab/nfslab/lab/observe"
	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/lab/smb"
	"github.com/nfslab/nfslab/lab/topology"
)

// Endpoints is what the cluster feeds the service's endpoints to: nfslab's own datapath, which
// it reads back after each change.
type Endpoints interface {
	SetService(ctx context.Context, vip netip.Addr, ports []datapath.Port, backend netip.Addr) error
	datapath.ReadBack
}

// Config describes one cell's cluster.
type Config struct {
	Index       int          // the cell's index: names of devices, pods and directories carry it
	Protocol    string       // scenario.ProtocolNFS (nfs-ganesha serves) or scenario.ProtocolSMB (Samba's smbd)
	NFS         string       // NFS version the backends must serve ("4.1", "3", "3-udp", …)
	VIP         netip.Addr   // the service's ClusterIP
	Port        uint16       // the NFS port
	NodeAddr    netip.Prefix // the node's address on the pod bridge
	ServiceCIDR netip.Prefix // routed to the service device
	PodAddrs    []netip.Addr // the addresses the pods get, in order (the first backend, its replacement, …)
	// PodExec is the command `ip netns exec` runs in a pod to start its server: it must exec
	// the rest of its arguments (the agent gives the pod a mount namespace without the node's
	// NFS mounts this way).
	PodExec []string
}

// Cluster is one cell's netns cluster.
type Cluster struct {
	cfg     Config
	record  func(event.Event) event.Event
	ep      Endpoints
	svc     cluster.Service
	node    topology.Node
	nodeUp  bool
	export  string
	rpcbind *nfs.Process
	smbUser bool // the SMB share's account exists
	pods    []*Backend
}

// New returns the cluster, not set up yet. record puts the cluster's observations on the
// timeline; ep receives the service's endpoints.
func New(cfg Config, ep Endpoints, record func(event.Event) event.Event) (*Cluster, error) {
	var ports []nfs.PortProto
	switch cfg.Protocol {
	case scenario.ProtocolNFS:
		var err error
		if ports, err = nfs.ServicePorts(cfg.NFS, cfg.Port); err != nil {
			return nil, err
		}
	case scenario.ProtocolSMB:
		ports = []nfs.PortProto{{Name: "smb", Port: smb.Port, Protocol: nfs.TCP}}
	default:
		return nil, fmt.Errorf("unknown protocol %q", cfg.Protocol)
	}
	c := &Cluster{cfg: cfg, ep: ep, record: record}
	c.svc = cluster.Service{Name: datapath.ServiceNamespace + "/" + datapath.ServiceName, VIP: cfg.VIP}
	for _, p := range ports {
		c.svc.Ports = append(c.svc.Ports, datapath.Port(p))
	}
	c.node = topology.Node{
		Bridge: fmt.Sprintf("nfslab%d", cfg.Index), Addr: cfg.NodeAddr,
		ServiceDev: fmt.Sprintf("svc%d", cfg.Index), ServiceCIDR: cfg.ServiceCIDR,
	}
	return c, nil
}

// Service is the service the node mounts.
func (c *Cluster) Service() cluster.Service { return c.svc }

// Setup creates the node's bridge and service route, the export, and (for NFSv3) the node's
// rpcbind that the servers register with.
func (c *Cluster) Setup(ctx context.Context) (string, error) {
	if err := c.node.Setup(); err != nil {
		return "", err
	}
	c.nodeUp = true
	c.export = fmt.Sprintf("/srv/nfslab/c%d/export", c.cfg.Index)
	if err := os.MkdirAll(c.export, 0o755); err != nil {
		return "", fmt.Errorf("mkdir %s: %w", c.export, err)
	}
	if err := unix.Mount("tmpfs", c.export, "tmpfs", 0, "mode=0777,size=64m"); err != nil {
		dir := c.export
		c.export = "" // nothing mounted: teardown has nothing to unmount
		return "", fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	if c.cfg.Protocol == scenario.ProtocolNFS {
		protos, _, err := nfs.ServerProtocols(c.cfg.NFS)
		if err != nil {
			return "", err
		}
		if protos != "4" {
			// NFSv3 servers register with rpcbind, or ganesha exits.
			if c.rpcbind, err = nfs.StartRPCBind(ctx); err != nil {
				return "", fmt.Errorf("start rpcbind: %w", err)
			}
		}
	}
	return fmt.Sprintf("node %s on %s, service CIDR %s, export %s", c.cfg.NodeAddr, c.node.Bridge, c.cfg.ServiceCIDR, c.export), nil
}

// StartBackend creates the next pod at the next configured address and starts the file server
// in it, returning when the server listens.
func (c *Cluster) StartBackend(ctx context.Context) (cluster.Backend, error) {
	n := len(c.pods)
	if n >= len(c.cfg.PodAddrs) {
		return nil, fmt.Errorf("no address left for pod %d (the cell has %d)", n+1, len(c.cfg.PodAddrs))
	}
	name := string(rune('a' + n))
	addr := c.cfg.PodAddrs[n]
	podName := fmt.Sprintf("c%d-pod-%s", c.cfg.Index, name)
	pod, err := c.node.AddPod(podName, fmt.Sprintf("c%d%s", c.cfg.Index, name), addr)
	if err != nil {
		return nil, err
	}
	b := &Backend{pod: pod, record: c.record}
	c.pods = append(c.pods, b)
	if err := c.startServer(ctx, b); err != nil {
		return nil, fmt.Errorf("pod %s: %w", podName, err)
	}
	c.record(event.Event{Kind: event.KindObserve, Backend: &event.BackendObs{Name: podName, IP: addr.String(), State: event.BackendServing}})
	return b, nil
}

func (c *Cluster) startServer(ctx context.Context, b *Backend) error {
	if c.cfg.Protocol == scenario.ProtocolSMB {
		return c.startSMB(ctx, b)
	}
	dir := filepath.Join("/run/nfslab", b.pod.Name)
	if err := os.MkdirAll(filepath.Join(dir, "recovery"), 0o755); err != nil {
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	protos, udp, err := nfs.ServerProtocols(c.cfg.NFS)
	if err != nil {
		return err
	}
	logPath := filepath.Join(dir, "ganesha.log")
	conf, err := nfs.RenderGaneshaConfig(nfs.GaneshaParams{
		Protocols:    protos,
		EnableUDP:    udp,
		BindAddr:     b.pod.Addr,
		Port:         int(c.cfg.Port),
		ExportPath:   c.export,
		PseudoPath:   "/export",
		RecoveryRoot: filepath.Join(dir, "recovery"),
		LeaseSeconds: nfs.DefaultLeaseSeconds,
		LogPath:      logPath,
	})
	if err != nil {
		return fmt.Errorf("ganesha config: %w", err)
	}
	confPath := filepath.Join(dir, "ganesha.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", confPath, err)
	}
	proc, err := nfs.StartGanesha(ctx, b.pod.Name, c.cfg.PodExec, confPath, logPath, filepath.Join(dir, "ganesha.pid"))
	if err != nil {
		return fmt.Errorf("start nfs-ganesha: %w", err)
	}
	b.server = proc
	if err := waitListening(ctx, proc, c.cfg.Port); err != nil {
		log, _ := os.ReadFile(logPath)
		return fmt.Errorf("nfs-ganesha never listened on %s:%d: %w (log: %s)", b.pod.Addr, c.cfg.Port, err, tail(log, 600))
	}
	return nil
}

// startSMB starts smbd in b's pod, serving the export; the share's account lives in a database
// every pod of the cell shares, created with the first pod.
func (c *Cluster) startSMB(ctx context.Context, b *Backend) error {
	dir := filepath.Join("/run/nfslab", b.pod.Name, "smb")
	for _, d := range smb.StateDirs() {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", dir, err)
		}
	}
	private := fmt.Sprintf("/run/nfslab/c%d-smb-private", c.cfg.Index)
	if err := os.MkdirAll(private, 0o700); err != nil {
		return fmt.Errorf("mkdir %s: %w", private, err)
	}
	conf, err := smb.RenderConfig(smb.ServerParams{BindAddr: b.pod.Addr, ExportPath: c.export, StateDir: dir, PrivateDir: private})
	if err != nil {
		return err
	}
	confPath := filepath.Join(dir, "smb.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", confPath, err)
	}
	if !c.smbUser {
		args := smb.AddUserArgs(confPath)
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Stdin = strings.NewReader(smb.AddUserInput())
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("create the share's account: %w: %s", err, strings.TrimSpace(string(out)))
		}
		c.smbUser = true
	}
	proc, err := smb.Start(ctx, b.pod.Name, c.cfg.PodExec, confPath)
	if err != nil {
		return err
	}
	b.server = proc
	if err := waitListening(ctx, proc, smb.Port); err != nil {
		return fmt.Errorf("smbd never listened on %s:%d: %w (output: %s)", b.pod.Addr, smb.Port, err, tail([]byte(proc.Output()), 600))
	}
	return nil
}

// Publish points the service at b alone (nil: no endpoint), as the endpoint controller would
// once b is ready (or gone), reads the datapath back and records what it forwards the service's
// port to (ServiceObs.Datapath). When the read fails, what the datapath was told is recorded as
// the cluster's view only, with the failure: the moment is then no datapath fact.
func (c *Cluster) Publish(ctx context.Context, b cluster.Backend) error {
	var addr netip.Addr
	var endpoints []string
	if b != nil {
		addr = b.Addr()
		endpoints = []string{addr.String()}
	}
	if err := c.ep.SetService(ctx, c.svc.VIP, c.svc.Ports, addr); err != nil {
		return fmt.Errorf("point %s at %v: %w", c.svc.VIP, endpoints, err)
	}
	obs := &event.ServiceObs{Name: c.svc.Name, VIP: c.svc.VIP.String(), Ports: c.svc.PortNames(), Endpoints: endpoints}
	fwd, err := c.ep.Forwarding(ctx, c.svc.VIP, c.svc.Ports[0])
	if err != nil {
		c.record(event.Event{Kind: event.KindObserve, Instr: &event.InstrumentObs{Name: datapath.InstrReadBack, Error: err.Error()}})
	} else {
		obs.Endpoints, obs.Datapath = nil, true
		if fwd.IsValid() {
			obs.Endpoints = []string{fwd.String()}
		}
	}
	c.record(event.Event{Kind: event.KindObserve, Service: obs})
	return nil
}

// Teardown stops the servers, deletes the pods, the export and the node's devices.
func (c *Cluster) Teardown(ctx context.Context) error {
	var errs []error
	for _, b := range c.pods {
		if err := b.Kill(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if c.rpcbind != nil {
		if err := c.rpcbind.Kill(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop rpcbind: %w", err))
		}
		c.rpcbind = nil
	}
	for _, b := range c.pods {
		if err := b.pod.Delete(); err != nil {
			errs = append(errs, err)
		}
	}
	c.pods = nil
	if c.export != "" {
		if err := unix.Unmount(c.export, unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", c.export, err))
		}
		c.export = ""
	}
	if c.nodeUp {
		if err := c.node.Teardown(); err != nil {
			errs = append(errs, err)
		}
		c.nodeUp = false
	}
	return errors.Join(errs...)
}

// Backend is a pod running the file server: nfs-ganesha or smbd.
type Backend struct {
	pod    *topology.Pod
	server *nfs.Process
	record func(event.Event) event.Event
}

// Name is the pod's name.
func (b *Backend) Name() string { return b.pod.Name }

// Addr is the pod's IP.
func (b *Backend) Addr() netip.Addr { return b.pod.Addr }

// Fault applies the named fault (fault.NetnsNames) through the pod's own operations.
func (b *Backend) Fault(ctx context.Context, name string) error { return fault.Inject(ctx, name, b) }

// Kill stops the backend's server (the pod's containers die).
func (b *Backend) Kill(ctx context.Context) error {
	if b.server == nil {
		return nil
	}
	err := b.server.Kill(ctx)
	b.server = nil
	b.record(event.Event{Kind: event.KindObserve, Backend: &event.BackendObs{Name: b.pod.Name, IP: b.pod.Addr.String(), State: event.BackendKilled}})
	return err
}

// Delete removes the pod: its network namespace and address are gone.
func (b *Backend) Delete(context.Context) error {
	if err := b.pod.Delete(); err != nil {
		return err
	}
	b.record(event.Event{Kind: event.KindObserve, Backend: &event.BackendObs{Name: b.pod.Name, IP: b.pod.Addr.String(), State: event.BackendDeleted}})
	return nil
}

// Blackhole unplugs the pod from the node's bridge: its traffic is dropped from now on.
func (b *Backend) Blackhole(context.Context) error { return b.pod.Unplug() }

// Settle waits until no TCP connection is left open in the pod (the killed server's connections
// have been closed by the kernel and the client has answered), polling every 20 ms.
func (b *Backend) Settle(ctx context.Context) error {
	for {
		n, err := b.pod.OpenConnections(observe.CountOpen)
		if err == nil && n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitListening waits until the backend's server listens on port in its pod. It looks at the
// pod's sockets rather than connecting, so the check leaves no trace in the evidence.
func waitListening(ctx context.Context, proc *nfs.Process, port uint16) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := observe.Listening(proc.Pid(), port)
		if ok {
			return nil
		}
		select {
		case <-proc.Done():
			return fmt.Errorf("the server exited: %v", proc.ExitErr())
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("%w (last check: %v)", ctx.Err(), err)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
