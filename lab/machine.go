package lab

import (
	"context"
	"slices"
	"time"

	"github.com/nfslab/nfslab/lab/agent"
	"github.com/nfslab/nfslab/lab/cluster/kind"
	"github.com/nfslab/nfslab/lab/cluster/vm"
	"github.com/nfslab/nfslab/lab/datapath"
	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/kernel"
	"github.com/nfslab/nfslab/lab/scenario"
)

// The kind form's Docker disk: sparse, so its size is a ceiling (a kind node image and its
// cluster take a few GiB), not what the host spends.
const (
	dockerDiskMiB   = 20 << 10
	dockerDiskLabel = "nfslab-docker"
	// engineTimeout bounds dockerd's start under TCG (its first start initialises the disk);
	// loadTimeout the load of a node image and the container check after it.
	engineTimeout = 3 * time.Minute
	loadTimeout   = 25 * time.Minute
	// clusterTimeout bounds a kind cluster's creation (7-13 minutes measured under TCG; kubeadm
	// itself waits up to 20), the NFS check and the deletion.
	clusterTimeout = 30 * time.Minute
)

// machineSetup is what a VM of the run's form boots with beyond its kernel and initramfs: the
// kind form's Docker disk, and what its agent starts before the cells.
type machineSetup struct {
	disks    []vm.Disk
	forwards []vm.Forward
	engine   *kind.EngineConfig
	kind     *kind.ClusterConfig
	cilium   []cilium.Install // the Cilium cells' installs (agent.Job.Cilium)
	keep     bool
	// prepare is the cluster the VM creates before its cells where it is snapshotted at
	// snapshot.ClusterReady (warm.go).
	prepare *agent.Prepare
}

// budget is the time a VM needs beyond its cells' own: starting Docker, and creating a cluster
// for each kube-proxy mode the cells want.
func (m machineSetup) budget(cells []scenario.Cell) time.Duration {
	if m.kind == nil {
		return 0
	}
	clusters := map[string]bool{}
	var extra time.Duration
	for _, c := range cells {
		mode, _ := datapath.ProxyMode(c.Datapath)
		key := mode
		if cilium.IsDatapath(c.Datapath) {
			key = mode + "/" + c.Datapath + "@" + c.Cilium
			if !clusters[key] {
				extra += ciliumTimeout
			}
		}
		clusters[key] = true
	}
	return engineTimeout + time.Duration(len(clusters))*clusterTimeout + extra
}

// kindMachineSetup prepares, once per run, the kind form's node image, the Docker disk that
// holds it (loaded by a VM of kernel k when the cache lacks it) and, for a user's node image,
// the NFS server's image to side-load; every kind VM attaches that disk as a snapshot, and the
// archive read-only.
func (r *runner) kindMachineSetup(ctx context.Context, k kernel.Kernel, initrd, work string) (machineSetup, error) {
	r.kindOnce.Lock()
	defer r.kindOnce.Unlock()
	if r.kindDisk == "" {
		extras, installs, err := r.ciliumSetup(ctx)
		if err != nil {
			return machineSetup{}, err
		}
		r.ciliumInstalls = installs
		node, err := r.nodeImage(ctx, extras)
		if err != nil {
			return machineSetup{}, err
		}
		disk, err := r.nodeDisk(ctx, k, initrd, work, node)
		if err != nil {
			return machineSetup{}, err
		}
		sideLoad, err := r.sideLoadArchive(ctx)
		if err != nil {
			return machineSetup{}, err
		}
		r.kindDisk, r.kindNode, r.kindSideLoad = disk, node.Tag, sideLoad
	}
	m := machineSetup{
		disks:  kindDisks(r.kindDisk, r.kindSideLoad),
		engine: &kind.EngineConfig{Disk: "/dev/vda", ReadyTimeout: engineTimeout},
		kind:   clusterConfig(r.kindNode, r.kindSideLoad),
		cilium: r.ciliumInstalls,
	}
	if len(r.ciliumInstalls) > 0 {
		// A Cilium cluster's creation waits for its agent, which compiles its datapath first.
		m.kind.ReadyTimeout += ciliumTimeout
	}
	if r.opts.Keep {
		port, err := freeLoopbackPort()
		if err != nil {
			return machineSetup{}, labErr("--keep: a port on the host's loopback for the API server: %w", err)
		}
		m.keep, m.kind.APIServerPort = true, keptAPIServerPort
		m.forwards = []vm.Forward{{HostPort: port, GuestPort: keptAPIServerPort}}
	}
	return m, nil
}

// byProxyMode orders a kind VM's cells by the kube-proxy mode their datapath needs (stably), so
// that each mode's cluster is created once.
func byProxyMode(cells []scenario.Cell) []scenario.Cell {
	out := slices.Clone(cells)
	order := map[string]int{}
	for i, m := range kind.ProxyModes() {
		order[m] = i
	}
	slices.SortStableFunc(out, func(a, b scenario.Cell) int {
		ma, _ := datapath.ProxyMode(a.Datapath)
		mb, _ := datapath.ProxyMode(b.Datapath)
		return order[ma] - order[mb]
	})
	return out
}
