package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nfslab/nfslab/lab/agent"
	"github.com/nfslab/nfslab/lab/cluster/kind"
	"github.com/nfslab/nfslab/lab/cluster/kind/nodeimage"
	"github.com/nfslab/nfslab/lab/cluster/vm"
	"github.com/nfslab/nfslab/lab/datapath"
	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/datapath/cilium/build"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/kernel"
	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/reports"
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

// MachineCheck says how far CheckKindMachine goes beyond starting Docker: NodeImage loads the
// node image (nfslab's own, or Options.NodeImage); ProxyMode (one of kind.ProxyModes) also
// creates a kind cluster with that kube-proxy mode on it, waits for its node and deletes it.
// Cilium, one of cilium.Datapaths, creates the cluster without kube-proxy and installs real
// Cilium (CiliumVersion, the newest nfslab builds when empty) with that datapath's values
// instead; the node image is then nfslab's own with Cilium's images in it.
type MachineCheck struct {
	NodeImage     bool
	ProxyMode     string
	Cilium        string
	CiliumVersion string
}

// MachineReport is what CheckKindMachine found.
type MachineReport struct {
	Kernel      string          `json:"kernel"`
	Release     string          `json:"kernel_release"`
	Accel       string          `json:"accel"`
	BootSeconds float64         `json:"boot_seconds"`
	Engine      event.EngineObs `json:"engine"`
	// NodeImage is the kind node image the engine held, when the check asked for it.
	NodeImage string `json:"node_image,omitempty"`
	// Cluster is the kind cluster created and deleted, when the check asked for one.
	Cluster *event.ClusterObs `json:"cluster,omitempty"`
	// Seconds is the whole check, from preparing the images to the VM's power-off.
	Seconds float64 `json:"seconds"`
}

// CheckKindMachine boots the named kernel as the kind form's machine — the guest root
// filesystem with Docker, the kind form's modules, a fresh Docker disk — has the agent start the
// Docker engine on that disk, and returns what the engine says about itself. It answers "can the
// kind form run on this kernel": a kernel whose config lacks what Docker, kind or kube-proxy's
// modes need is an *InputError naming each missing feature, before anything boots; so is an
// Options.NodeImage that cannot work. withNode also prepares the kind node image (the user's,
// or nfslab's own built by nodeimage.BuildNode) and starts the engine on a Docker disk that
// holds it (nodeDisk) instead of an empty one.
func CheckKindMachine(ctx context.Context, opts Options, kernelName string, check MachineCheck) (MachineReport, error) {
	withNode := check.NodeImage || check.ProxyMode != "" || check.Cilium != "" || opts.NodeImage != ""
	if check.ProxyMode != "" && !slices.Contains(kind.ProxyModes(), check.ProxyMode) {
		return MachineReport{Kernel: kernelName}, &InputError{Err: fmt.Errorf("kube-proxy mode %q: want one of %s", check.ProxyMode, strings.Join(kind.ProxyModes(), ", "))}
	}
	if err := check.checkCilium(opts); err != nil {
		return MachineReport{Kernel: kernelName}, err
	}
	form := kindMachine()
	if check.Cilium != "" {
		form = ciliumMachine()
	}
	opts.setDefaults()
	start := time.Now()
	rep := MachineReport{Kernel: kernelName}
	if err := kernel.Preflight(kernelName); err != nil {
		return rep, &InputError{Err: err}
	}
	p := newProgress(opts.Progress, opts.Style)
	userNode, err := userNodeImage(ctx, opts, p)
	if err != nil {
		return rep, err
	}
	r, err := newRunner(ctx, opts, p, &reports.Result{Timings: map[string]float64{}}, form)
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(r.work)
	r.userNode = userNode
	work := filepath.Join(r.work, "k0")
	k, initrd, err := r.kernelImage(ctx, work, kernelName)
	if err != nil {
		return rep, err
	}
	disks := []vm.Disk{{Path: filepath.Join(work, "docker.img")}}
	sideLoad := ""
	var ciliumBins []build.Binaries
	if check.Cilium != "" {
		bins, err := r.ciliumBinaries(ctx, check.CiliumVersion)
		if err != nil {
			return rep, err
		}
		ciliumBins = append(ciliumBins, bins)
	}
	if withNode {
		node, err := r.nodeImage(ctx, nodeimage.Extras{Cilium: ciliumBins})
		if err != nil {
			return rep, err
		}
		rep.NodeImage = node.Tag
		docker, err := r.nodeDisk(ctx, k, initrd, work, node)
		if err != nil {
			return rep, err
		}
		if check.ProxyMode != "" {
			if sideLoad, err = r.sideLoadArchive(ctx); err != nil {
				return rep, err
			}
		}
		disks = kindDisks(docker, sideLoad)
	} else if err := image.NewExt4Disk(ctx, disks[0].Path, dockerDiskLabel, dockerDiskMiB); err != nil {
		return rep, labErr("the Docker disk: %w", err)
	}
	cfg := kind.EngineConfig{CheckContainer: true}
	if check.ProxyMode != "" {
		cfg.CheckCluster = clusterConfig(rep.NodeImage, sideLoad)
		cfg.CheckCluster.ProxyMode = check.ProxyMode
	}
	if check.Cilium != "" {
		install, err := r.ciliumInstall(ctx, check.Cilium, check.CiliumVersion)
		if err != nil {
			return rep, err
		}
		cfg.CheckCluster = clusterConfig(rep.NodeImage, sideLoad)
		cfg.CheckCluster.ProxyMode, cfg.CheckCluster.Cilium = cilium.KubeProxyMode(check.Cilium), &install
		cfg.CheckCluster.ReadyTimeout += ciliumTimeout
	}
	res, bootTime, machineAccel, err := r.runEngine(ctx, k, initrd, work, disks, cfg)
	rep.Release, rep.Accel, rep.BootSeconds = k.Release, machineAccel, bootTime
	rep.Seconds = time.Since(start).Seconds()
	if err != nil {
		return rep, err
	}
	rep.Engine, rep.Cluster = res.engine, res.cluster
	if rep.NodeImage != "" && !slices.Contains(rep.Engine.Images, rep.NodeImage) {
		return rep, labErr("kernel %s: the Docker disk does not hold the node image %s (images: %s)", k.Name, rep.NodeImage, strings.Join(rep.Engine.Images, ", "))
	}
	if c := res.cluster; c != nil && c.Error != "" {
		return rep, labErr("kernel %s: %s", k.Name, c.Error)
	}
	return rep, nil
}

// OwnNodeImage, as Options.NodeImage, names nfslab's own node image, as the empty value does.
const OwnNodeImage = "nfslab"

// checkNodeImage refuses --node-image for a run that has no kind cell.
func checkNodeImage(opts Options, groups [][]scenario.Cell) error {
	if opts.NodeImage == "" {
		return nil
	}
	for _, g := range groups {
		if g[0].Cluster == scenario.ClusterKind {
			return nil
		}
	}
	return &InputError{Err: fmt.Errorf("--node-image %q is a kind node image: the run has no kind cell (add --cluster kind)", opts.NodeImage)}
}

// userNodeImage resolves Options.NodeImage before anything is created (no VM, no work
// directory): nil for nfslab's own node image. A value that cannot work is an *InputError
// naming the flag and the value.
func userNodeImage(ctx context.Context, opts Options, p *progress) (*nodeimage.Node, error) {
	if opts.NodeImage == "" || opts.NodeImage == OwnNodeImage {
		return nil, nil
	}
	cache, err := cacheOf(opts)
	if err != nil {
		return nil, err
	}
	node, err := nodeimage.UserNode(ctx, cache, opts.Log, opts.NodeImage, func(line string) { p.say("%s", line) })
	var bad *nodeimage.UnusableError
	switch {
	case errors.As(err, &bad):
		return nil, &InputError{Err: fmt.Errorf("--node-image %q: %w", opts.NodeImage, bad.Err)}
	case err != nil:
		return nil, labErr("--node-image %q: %w", opts.NodeImage, err)
	}
	p.say("node image: %s (image %s), from --node-image", node.Tag, node.Key)
	return &node, nil
}

// nodeImage is the kind form's node image: the user's, else nfslab's own with extras, built into
// the cache when it is not there.
func (r *runner) nodeImage(ctx context.Context, extras nodeimage.Extras) (nodeimage.Node, error) {
	if r.userNode != nil {
		return *r.userNode, nil
	}
	r.p.say("node image: preparing (cache %s)", r.cache.Dir)
	node, err := nodeimage.BuildNode(ctx, r.cache, r.opts.Log, extras, func(line string) { r.p.say("%s", line) })
	if err != nil {
		return nodeimage.Node{}, labErr("the kind node image: %w", err)
	}
	return node, nil
}

// sideLoadArchive is the docker-archive the agent loads into a cluster's nodes once the cluster
// exists: the NFS server's image, which a user's node image lacks. It is "" for nfslab's own
// node image, which carries that image.
func (r *runner) sideLoadArchive(ctx context.Context) (string, error) {
	if r.userNode == nil {
		return "", nil
	}
	archive, err := nodeimage.GaneshaArchive(ctx, r.cache, r.opts.Log, func(line string) { r.p.say("%s", line) })
	if err != nil {
		return "", labErr("for the node image %s: %w", r.userNode.Tag, err)
	}
	return archive, nil
}

// sideLoadDevice is the block device under which the guest sees the side-loaded archive: the
// disk after the Docker disk.
const sideLoadDevice = "/dev/vdb"

// kindDisks are a kind machine's disks: the cached Docker disk as a snapshot, then the
// side-loaded archive, read-only, when there is one.
func kindDisks(dockerDisk, sideLoad string) []vm.Disk {
	disks := []vm.Disk{{Path: dockerDisk, Mode: vm.DiskSnapshot}}
	if sideLoad != "" {
		disks = append(disks, vm.Disk{Path: sideLoad, Mode: vm.DiskReadOnly})
	}
	return disks
}

// clusterConfig is what the agent creates kind clusters from (the kube-proxy mode is each
// cell's): the node image and the NFS server's image; with a side-loaded archive (a user's node
// image), the device to load it from and kind's own pod network.
func clusterConfig(nodeTag, sideLoad string) *kind.ClusterConfig {
	cfg := &kind.ClusterConfig{NodeImage: nodeTag, GaneshaImage: nodeimage.GaneshaImage, ReadyTimeout: clusterTimeout}
	if sideLoad != "" {
		cfg.SideLoad, cfg.KindCNI = []string{sideLoadDevice}, true
	}
	return cfg
}

// runEngine boots a kind-form machine of kernel k with disks (the Docker disk first), has its
// agent start Docker with cfg (Disk and ReadyTimeout filled in) and waits until the agent is
// done and the VM is off; it returns what the engine reported, the boot time and accelerator.
func (r *runner) runEngine(ctx context.Context, k kernel.Kernel, initrd, work string, disks []vm.Disk, cfg kind.EngineConfig) (engineResult, float64, string, error) {
	p := r.p
	booted, err := r.boot(ctx, k, initrd, work, machineSetup{disks: disks})
	if err != nil {
		return engineResult{}, 0, "", err
	}
	defer booted.release()
	machine := booted.VM
	bootTime, accel := machine.BootTime.Seconds(), machine.Accel

	p.say("engine: starting Docker in the VM")
	cfg.Disk, cfg.ReadyTimeout = "/dev/vda", engineTimeout
	if err := sendJob(machine, agent.Job{Engine: &cfg}); err != nil {
		return engineResult{}, bootTime, accel, labErr("kernel %s: %w", k.Name, err)
	}
	budget := engineTimeout + loadTimeout
	if cfg.CheckCluster != nil {
		budget += cfg.CheckCluster.ReadyTimeout
	}
	vctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	var (
		engineErr string
		eng       *event.EngineObs
		res       engineResult
	)
	for {
		ev, err := machine.Next(vctx)
		if err != nil {
			return res, bootTime, accel, labErr("kernel %s: lost the agent while starting Docker: %w; the VM console said:\n%s", k.Name, err, consoleTail(machine.ConsoleLog))
		}
		switch {
		case ev.Engine != nil:
			eng = ev.Engine
			p.event("", ev)
		case ev.Cluster != nil:
			res.cluster = ev.Cluster
			p.event("", ev)
		case ev.Kind == event.KindProgress:
			p.event("", ev)
		case ev.Kind == event.KindError:
			engineErr = ev.Msg
		case ev.Kind == event.KindBye:
			// The agent stops Docker (unmounting its disk) before the VM powers off.
			machine.WaitExit(time.Minute)
			if eng == nil {
				return res, bootTime, accel, labErr("kernel %s: Docker did not start: %s", k.Name, engineErr)
			}
			res.engine = *eng
			return res, bootTime, accel, nil
		}
	}
}

// engineResult is what a kind-form machine's agent reported.
type engineResult struct {
	engine  event.EngineObs
	cluster *event.ClusterObs
}

// nodeDisk returns a Docker disk (an ext4 image) whose engine already holds the node image,
// building it into the cache first, once per node image — per tag and content (node.Key), so a
// user's image never reuses another's disk; machines attach the result as a snapshot and leave
// it as it was. An image of one layer (nfslab's own) is written into the disk on the host
// (writeNodeDisk), in seconds; any other is loaded by Docker itself in a VM of kernel k, the
// archive attached read-only, which under TCG takes minutes (170 s for 1.2 GB).
func (r *runner) nodeDisk(ctx context.Context, k kernel.Kernel, initrd, work string, node nodeimage.Node) (string, error) {
	rootfsKey := filepath.Base(filepath.Dir(r.rootfs))
	// v2: written on the host where it can be (no tar-split in its layer store, which only a
	// docker save in the VM would need).
	inputs := image.Inputs{"recipe": "kind-docker-disk-v2", "node": node.Tag, "node-archive": node.Key,
		"rootfs": rootfsKey, "size-mib": fmt.Sprint(dockerDiskMiB), "label": dockerDiskLabel}
	dir, err := r.cache.Artefact(ctx, r.opts.Log, "kind-docker-disk", inputs, func(ctx context.Context, dir string) error {
		disk := filepath.Join(dir, "docker.img")
		if err := dockerDiskFits(dir, node.Archive); err != nil {
			return err
		}
		if written, err := r.writeNodeDisk(ctx, disk, dir, node); written || err != nil {
			return err
		}
		if err := image.NewExt4Disk(ctx, disk, dockerDiskLabel, dockerDiskMiB); err != nil {
			return err
		}
		r.p.say("node image: Docker loads it into a Docker disk in a VM (once per node image; minutes under TCG)")
		res, _, _, err := r.runEngine(ctx, k, initrd, work, []vm.Disk{{Path: disk}, {Path: node.Archive, Mode: vm.DiskReadOnly}},
			kind.EngineConfig{Load: []string{"/dev/vdb"}})
		if err != nil {
			return err
		}
		eng := res.engine
		if len(eng.Loaded) == 0 || !slices.Contains(eng.Loaded[0].Images, node.Tag) {
			return fmt.Errorf("the engine did not load %s: %+v", node.Tag, eng.Loaded)
		}
		return nil
	})
	if err != nil {
		return "", labErr("the kind form's Docker disk: %w", err)
	}
	return filepath.Join(dir, "docker.img"), nil
}

// writeNodeDisk writes the Docker disk with the node image on the host (image.NewDockerDisk),
// staging its tree in dir. It reports false, and no error, for an image that Docker must load
// itself, and says why in one line.
func (r *runner) writeNodeDisk(ctx context.Context, disk, dir string, node nodeimage.Node) (bool, error) {
	start := time.Now()
	staging := filepath.Join(dir, "docker-root")
	tags, err := image.NewDockerDisk(ctx, disk, dockerDiskLabel, dockerDiskMiB, node.Archive, staging)
	if rerr := image.RemoveTree(staging); err == nil && rerr != nil {
		err = fmt.Errorf("remove the Docker disk's staging tree: %w", rerr)
	}
	switch {
	case errors.Is(err, image.ErrNeedsDockerLoad):
		r.p.say("node image: not written on the host (%v): Docker loads it in a VM", err)
		return false, nil
	case err != nil:
		return false, err
	case !slices.Contains(tags, node.Tag):
		return false, fmt.Errorf("the Docker disk written on the host holds %q, not %s", tags, node.Tag)
	}
	r.p.say("node image: written into a Docker disk on the host in %.1f s", time.Since(start).Seconds())
	return true, nil
}

// dockerDiskFits checks that a Docker disk loaded with the node image archive fits in dir. The
// disk is sparse: it grows by what Docker writes, the archive's layers unpacked (about the
// archive's size). Twice that is asked for, to leave the host some room.
func dockerDiskFits(dir, archive string) error {
	st, err := os.Stat(archive)
	if err != nil {
		return fmt.Errorf("the node image: %w", err)
	}
	return image.EnsureFree(dir, 2*st.Size())
}

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

// keptAPIServerPort is where a kept cluster's API server listens in the VM.
const keptAPIServerPort = 6443

// freeLoopbackPort asks the kernel for a free TCP port on 127.0.0.1.
func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// KeptCluster is a kind cluster nfslab run --keep left up.
type KeptCluster struct {
	Kernel     string
	Kubeconfig string // a file whose API server is the host's forward
	Server     string // https://127.0.0.1:<port>
	ProxyMode  string
	// Result holds the cells' results so far: all of them, when the kept VM was the last.
	Result *reports.Result
}

// checkKeep refuses --keep for a run that has no kind cell, or kind cells on several kernels
// (one VM is kept).
func checkKeep(opts Options, groups [][]scenario.Cell) error {
	if !opts.Keep {
		return nil
	}
	var kernels []string
	for _, g := range groups {
		if g[0].Cluster == scenario.ClusterKind {
			kernels = append(kernels, g[0].Kernel)
		}
	}
	switch {
	case len(kernels) == 0:
		return &InputError{Err: errors.New("--keep keeps a kind cluster up: the run has no kind cell (add --cluster kind)")}
	case len(kernels) > 1:
		return &InputError{Err: fmt.Errorf("--keep keeps one VM, and the run's kind cells are on %d kernels (%s): choose one with --kernel", len(kernels), strings.Join(kernels, ", "))}
	}
	return nil
}

// keep hands the kept cluster to Options.Kept — its kubeconfig rewritten to the host's forward,
// written next to the reports — and holds the VM until ctx ends, then tells the agent to stop.
func (r *runner) keep(ctx context.Context, k kernel.Kernel, machine *vm.VM, kept *event.Kept, setup machineSetup) {
	kc := KeptCluster{Kernel: k.Name, ProxyMode: kept.ProxyMode}
	if len(setup.forwards) == 1 {
		kc.Server = fmt.Sprintf("https://127.0.0.1:%d", setup.forwards[0].HostPort)
	}
	dir := r.opts.ArtifactDir
	if dir == "" {
		dir = r.work
	}
	kc.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.p.say("kept: %v", err)
	}
	text := serverLine().ReplaceAllString(kept.Kubeconfig, "${1}"+kc.Server)
	if err := os.WriteFile(kc.Kubeconfig, []byte(text), 0o600); err != nil {
		r.p.say("kept: cannot write the kubeconfig: %v", err)
	}
	r.record(func(res *reports.Result) {
		snap := *res
		snap.Cells = slices.Clone(res.Cells)
		kc.Result = &snap
	})
	if r.opts.Kept != nil {
		r.opts.Kept(kc)
	}
	<-ctx.Done()
	_ = machine.Send(agent.Stop{Stop: true})
}

// serverLine matches a kubeconfig's server line, keeping its indentation and key.
func serverLine() *regexp.Regexp { return regexp.MustCompile(`(?m)^(\s*server:\s*).*$`) }

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
