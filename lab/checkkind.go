package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nfslab/nfslab/lab/agent"
	"github.com/nfslab/nfslab/lab/cluster/kind"
	"github.com/nfslab/nfslab/lab/cluster/kind/nodeimage"
	"github.com/nfslab/nfslab/lab/cluster/vm"
	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/datapath/cilium/build"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/kernel"
	"github.com/nfslab/nfslab/reports"
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
	userCilium, err := check.ciliumCheckImages(ctx, opts, p)
	if err != nil {
		return rep, err
	}
	r, err := newRunner(ctx, opts, p, &reports.Result{Timings: map[string]float64{}}, form)
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(r.work)
	r.userNode, r.userCilium = userNode, userCilium
	work := filepath.Join(r.work, "k0")
	k, initrd, err := r.kernelImage(ctx, work, kernelName)
	if err != nil {
		return rep, err
	}
	disks := []vm.Disk{{Path: filepath.Join(work, "docker.img")}}
	sideLoad := ""
	var ciliumBins []build.Binaries
	if check.Cilium != "" && userCilium == nil {
		bins, err := r.ciliumBinaries(ctx, check.CiliumVersion)
		if err != nil {
			return rep, err
		}
		ciliumBins = append(ciliumBins, bins)
	}
	if withNode {
		node, err := r.nodeImage(ctx, nodeimage.Extras{Cilium: ciliumBins, UserCilium: userCilium})
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
