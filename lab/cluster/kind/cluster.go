package kind

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"
	kindexec "sigs.k8s.io/kind/pkg/exec"

	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/event"
)

// Where a cluster's files live in the guest.
const (
	clusterDir = "/run/nfslab-kind"
	// exportDir is a tmpfs of the VM the node mounts at ExportHostPath.
	exportDir = clusterDir + "/export"
	// ClusterName is the lab's kind cluster's name.
	ClusterName = "nfslab"
	// PodCIDR is the cluster's pod network: kind's default podSubnet, which the config keeps.
	PodCIDR = "10.244.0.0/16"
	// controlPlaneNode is its first node's container: the node that mounts. A second node
	// (ClusterConfig.Nodes) is <name>-worker, where the NFS server runs.
	controlPlaneNode = ClusterName + "-control-plane"
)

// MaxNodes is the most nodes a lab cluster has: the node that mounts and the server's.
const MaxNodes = 2

// ProxyModes are the kube-proxy modes a cluster can be created with; "none" leaves kube-proxy
// out (socket-LB cells).
func ProxyModes() []string { return []string{"iptables", "ipvs", "nftables", "none"} }

// ClusterConfig says what cluster to create.
type ClusterConfig struct {
	NodeImage string `json:"node_image"`
	ProxyMode string `json:"proxy_mode"`
	// GaneshaImage, when set, is the NFS server image CheckCluster's NFS smoke test runs.
	GaneshaImage string `json:"ganesha_image,omitempty"`
	// ReadyTimeout bounds the creation, the node's readiness included.
	ReadyTimeout time.Duration `json:"ready_timeout_ns"`
	// APIServerPort, when set, publishes the API server on every address of the VM at this port
	// (nfslab run --keep: the host forwards its loopback to it); otherwise kind publishes it on
	// the VM's loopback at a port it picks.
	APIServerPort int `json:"api_server_port,omitempty"`
	// SideLoad are block devices holding docker-archives that CreateCluster imports into every
	// node's containerd once the cluster exists, as `kind load image-archive` does: the NFS
	// server's image, for a node image that lacks it.
	SideLoad []string `json:"side_load,omitempty"`
	// KindCNI says the node image is not nfslab's own: kind installs the pod network the image
	// carries (kindnetd), and the controller manager hands out the pod CIDRs it needs. nfslab's
	// own image has a static bridge instead.
	KindCNI bool `json:"kind_cni,omitempty"`
	// Nodes is the cluster's node count: 1 (0 means 1) or 2, a control-plane node and a worker.
	Nodes int `json:"nodes,omitempty"`
	// Cilium, when set, makes the cluster Cilium's: created without kube-proxy (ProxyMode
	// "none") unless Cilium runs beside it (cilium.KubeProxyMode), with the node IPAM controller (Cilium's ipam.mode=kubernetes reads each node's
	// pod range) and, for the datapaths that attach at the VM's root cgroup, the VM's cgroup2
	// root mounted into the control-plane node at cilium.NodeCgroupRoot; its objects are applied
	// once the cluster exists and CreateCluster waits for the agent.
	Cilium *cilium.Install `json:"cilium,omitempty"`
}

// nodes is the cluster's node count.
func (cfg ClusterConfig) nodes() int { return max(cfg.Nodes, 1) }

// Cluster is a kind cluster the agent created in the machine's Docker.
type Cluster struct {
	Kubeconfig string
	Client     kubernetes.Interface
	ProxyMode  string
	// Nodes is its node count.
	Nodes int
	// NodeIP is the control-plane node's InternalIP: the NFS client's address, for NFSv4.0
	// callbacks.
	NodeIP netip.Addr
	// ServerNode, on a cluster of several nodes, is the node the NFS server is placed on (the
	// first worker); "" lets the scheduler choose.
	ServerNode string
	provider   *cluster.Provider
	kindCNI    bool // kind's own pod network (kindnetd), not nfslab's static bridges
	// Cilium names the cluster's real Cilium, "datapath@version" (cilium.Install.Key), which
	// serves its pod network and its services; "" for none.
	Cilium string
}

// CreateCluster creates the lab's kind cluster with kind's Go library (never the kind binary),
// from the lab-tuned config in manifests/kind, loads cfg.SideLoad's images into its nodes, gives
// each further node a pod range of its own (splitPodNetwork), and waits until every node is
// Ready; the deadline cfg.ReadyTimeout covers it all. say receives kind's progress lines.
func CreateCluster(ctx context.Context, log *slog.Logger, cfg ClusterConfig, say func(string)) (*Cluster, event.ClusterObs, error) {
	obs := event.ClusterObs{Name: ClusterName, NodeImage: cfg.NodeImage, ProxyMode: cfg.ProxyMode}
	raw, err := renderConfig(cfg)
	if err != nil {
		return nil, obs, err
	}
	kubeconfig := filepath.Join(clusterDir, "kubeconfig")
	p := cluster.NewProvider(cluster.ProviderWithDocker(), cluster.ProviderWithLogger(kindLogger{log: log, say: say}))
	start := time.Now()
	// kind's Create and its node commands have no context: a creation that overruns is
	// abandoned by the caller, whose VM goes with it.
	errc := make(chan error, 1)
	go func() {
		err := p.Create(ClusterName, cluster.CreateWithRawConfig(raw), cluster.CreateWithNodeImage(cfg.NodeImage),
			cluster.CreateWithKubeconfigPath(kubeconfig), cluster.CreateWithDisplayUsage(false),
			cluster.CreateWithDisplaySalutation(false), cluster.CreateWithRetain(true))
		if err == nil {
			err = sideLoad(p, cfg.SideLoad, say)
		}
		errc <- err
	}()
	ctx, cancel := context.WithTimeout(ctx, cfg.ReadyTimeout)
	defer cancel()
	// kubeadm says nothing for many minutes under TCG: show what the node is doing meanwhile.
	watch := time.NewTicker(2 * time.Minute)
	defer watch.Stop()
wait:
	for {
		select {
		case err = <-errc:
			break wait
		case <-ctx.Done():
			err = fmt.Errorf("not created within %s", cfg.ReadyTimeout)
			break wait
		case <-watch.C:
			if say != nil {
				say(fmt.Sprintf("(%.0f s) node: %s", time.Since(start).Seconds(), nodeStatus(ctx)))
			}
		}
	}
	obs.CreateSeconds = time.Since(start).Seconds()
	if err != nil {
		if re := kindexec.RunErrorForError(err); re != nil {
			// kubeadm's own account of what did not come up.
			err = fmt.Errorf("%w; its output ended: %s", err, lastOf(string(re.Output), 25))
		}
		// The nodes are retained for this: what the node's kubelet and containerd say.
		err = fmt.Errorf("%w; on the node: %s", err, nodeDiagnostics(context.WithoutCancel(ctx)))
		if derr := p.Delete(ClusterName, kubeconfig); derr != nil {
			err = fmt.Errorf("%w; and deleting it failed: %v", err, derr)
		}
		return nil, obs, fmt.Errorf("create the kind cluster: %w", err)
	}
	c := &Cluster{Kubeconfig: kubeconfig, ProxyMode: cfg.ProxyMode, Nodes: cfg.nodes(), provider: p,
		kindCNI: cfg.KindCNI}
	if cfg.Cilium != nil {
		c.Cilium = cfg.Cilium.Key()
	}
	if c.Client, err = newClient(kubeconfig); err != nil {
		return c, obs, err
	}
	if cfg.Cilium != nil {
		obs.Cilium = &event.CiliumObs{Version: cfg.Cilium.Version, Datapath: cfg.Cilium.Datapath, Values: cfg.Cilium.Values}
		if err := installCilium(ctx, kubeconfig, c.Client, *cfg.Cilium, obs.Cilium, say); err != nil {
			return c, obs, err
		}
	}
	if c.Nodes > 1 {
		if err := c.placeServer(ctx, say); err != nil {
			return c, obs, err
		}
	}
	node, err := waitNodesReady(ctx, c.Client, c.Nodes)
	obs.ReadySeconds = time.Since(start).Seconds()
	if err != nil {
		return c, obs, err
	}
	obs.Node, obs.KubeletVersion, obs.KernelVersion = node.Name, node.Status.NodeInfo.KubeletVersion, node.Status.NodeInfo.KernelVersion
	for _, a := range node.Status.Addresses {
		if ip, err := netip.ParseAddr(a.Address); err == nil && a.Type == corev1.NodeInternalIP && ip.Is4() {
			c.NodeIP = ip
		}
	}
	return c, obs, nil
}

// Delete deletes the cluster (its node containers and network). Docker may refuse to remove a
// node whose mounts are still being released (a just-unmounted NFS mount): it tries again.
func (c *Cluster) Delete() error {
	var err error
	for try := 0; try < 6; try++ {
		if err = c.provider.Delete(ClusterName, c.Kubeconfig); err == nil {
			return nil
		}
		if re := kindexec.RunErrorForError(err); re != nil {
			err = fmt.Errorf("%w: %s", err, lastOf(string(re.Output), 3))
		}
		time.Sleep(10 * time.Second)
	}
	return err
}

// sideLoad imports the docker-archive on each of the block devices devs into the containerd of
// every node of the lab's cluster, with kind's own loader (as `kind load image-archive`).
func sideLoad(p *cluster.Provider, devs []string, say func(string)) error {
	if len(devs) == 0 {
		return nil
	}
	all, err := p.ListInternalNodes(ClusterName)
	if err != nil {
		return fmt.Errorf("side-load images: list the nodes: %w", err)
	}
	for _, dev := range devs {
		start := time.Now()
		for _, n := range all {
			if err := loadOnNode(n, dev); err != nil {
				return fmt.Errorf("side-load the images on %s into node %s: %w", dev, n, err)
			}
		}
		if say != nil {
			say(fmt.Sprintf("side-loaded the images on %s into %d node(s) in %.0f s", dev, len(all), time.Since(start).Seconds()))
		}
	}
	return nil
}

// loadOnNode streams the docker-archive on the block device dev into node n's containerd.
func loadOnNode(n nodes.Node, dev string) error {
	f, err := os.Open(dev)
	if err != nil {
		return err
	}
	defer f.Close()
	return nodeutils.LoadImageArchive(n, f)
}

func newClient(kubeconfig string) (kubernetes.Interface, error) {
	cfg, err := restConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// restConfig is the API client's configuration from the cluster's kubeconfig.
func restConfig(kubeconfig string) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	// Under TCG one API call can take seconds.
	cfg.Timeout = time.Minute
	return cfg, nil
}

// placeServer prepares a cluster of several nodes for the lab: each node gets a pod range of
// its own (nfslab's image; kindnetd does this itself on kind's), and the NFS server goes on the
// first worker, away from the node that mounts.
func (c *Cluster) placeServer(ctx context.Context, say func(string)) error {
	names, err := nodeNames(ctx)
	if err != nil {
		return err
	}
	if len(names) != c.Nodes {
		return fmt.Errorf("the cluster has nodes %v, want %d", names, c.Nodes)
	}
	c.ServerNode = names[1]
	if c.kindCNI || c.Cilium != "" {
		return nil
	}
	nets, err := splitPodNetwork(ctx, names)
	if err != nil {
		return err
	}
	if say != nil {
		var parts []string
		for _, n := range nets {
			parts = append(parts, fmt.Sprintf("%s %s pods %s", n.name, n.addr, n.subnet))
		}
		say("pod network: " + strings.Join(parts, "; ") + "; the NFS server runs on " + c.ServerNode)
	}
	return nil
}

// CheckCluster creates the lab's cluster, waits for its node, runs the NFS smoke test when
// cfg.GaneshaImage is set, and deletes the cluster again: the kind form's end-to-end check of a
// machine. Failures are in the returned record's Error.
func CheckCluster(ctx context.Context, log *slog.Logger, cfg ClusterConfig, say func(string)) event.ClusterObs {
	c, obs, err := CreateCluster(ctx, log, cfg, say)
	if err != nil {
		obs.Error = err.Error()
	}
	if err == nil && cfg.GaneshaImage != "" {
		say("NFS: nfs-ganesha behind a ClusterIP, mounted from the node")
		nfsObs, err := CheckNFS(ctx, c, cfg.GaneshaImage)
		if err != nil {
			nfsObs.Error = err.Error()
			obs.Error = "NFS check: " + err.Error()
		}
		obs.NFS = &nfsObs
	}
	if c != nil {
		start := time.Now()
		if err := c.Delete(); err != nil {
			// The VM and its snapshot disk go away anyway; a cluster that cannot be deleted matters
			// to a machine that would reuse it, so it is reported, not hidden.
			obs.DeleteError = err.Error()
		}
		obs.DeleteSeconds = time.Since(start).Seconds()
	}
	return obs
}
