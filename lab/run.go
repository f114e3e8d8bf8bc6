// Package lab is the engine: Run takes a scenario, prepares the images, boots a VM per kernel,
// has the in-VM agent run the cells, and turns each cell's timeline into a verdict and a report.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nfslab/nfslab/lab/cluster/kind/nodeimage"
	"github.com/nfslab/nfslab/lab/cluster/vm"
	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/kernel"
	"github.com/nfslab/nfslab/lab/runstate"
	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/lab/tty"
	"github.com/nfslab/nfslab/reports"
)

// Options configure a run.
type Options struct {
	Scenario *scenario.Scenario
	CacheDir string    // artefact cache (rootfs, kernels); image.DefaultCacheDir() when empty
	Accel    string    // vm.AccelAuto, vm.AccelKVM, vm.AccelTCG
	Agent    string    // the static nfslab binary to run inside the VM; this executable when empty
	Progress io.Writer // live progress lines for people; nil for none
	Style    tty.Style // how they look (colours on a terminal)
	// RunID names what the run creates on the host (work directory, qemu -name), so that
	// nfslab cleanup can find it if the run is killed; runstate.NewID when empty.
	RunID string
	Log   *slog.Logger
	// ArtifactDir receives each VM's console log (console-<kernel>-<n>.log); none when empty.
	ArtifactDir string
	// Parallel is how many VMs (kernels) run at once; 0 means Parallelism().
	Parallel int
	// Keep keeps the kind form's VM, its cluster and the cells' workloads up after the cells,
	// with the API server forwarded to a port of the host's loopback; Kept is called then, and
	// the VM stays until ctx ends. The run's kind cells must be on one kernel.
	Keep bool
	Kept func(KeptCluster)
	// NodeImage is the kind node image the kind form's clusters are made of: empty or
	// OwnNodeImage for nfslab's own (built without a registry), else the path of a
	// docker-archive or an image reference the host's Docker holds or can pull (--node-image).
	NodeImage string
	// NoSnapshot boots every VM cold: no snapshot is restored or taken (--no-snapshot).
	NoSnapshot bool
	// CellSnapshots adds the cell-ready snapshot point, in either form: each cell of a later
	// run starts from a snapshot of its own, right before its fault (--cell-snapshots).
	CellSnapshots bool
	// CiliumValues are a user's Helm values for the Cilium datapaths' chart (--cilium-values,
	// checked by cilium.ParseValues): nfslab's own values are merged over them.
	CiliumValues map[string]any
	// CiliumImage names Cilium's agent and operator images to run instead of those nfslab builds
	// (--cilium-image): a docker-archive holding both, or the agent's image reference
	// (nodeimage.UserCilium). The run's Cilium cells must then be of one version.
	CiliumImage string
}

// setDefaults fills the fields whose zero value means "the default": a discarding logger, a new
// run ID.
func (o *Options) setDefaults() {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.RunID == "" {
		o.RunID = runstate.NewID(time.Now())
	}
}

// InputError means the user's input cannot work (e.g. a kernel image that is not a kernel, or
// lacks what the lab needs). The CLI maps it to exit code 2.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

// LabError means the lab itself could not run (a missing tool, an image that did not build, a VM
// that did not boot): no verdict could be reached. The CLI maps it to exit code 3.
type LabError struct{ Err error }

func (e *LabError) Error() string { return e.Err.Error() }
func (e *LabError) Unwrap() error { return e.Err }

func labErr(format string, args ...any) error {
	return &LabError{Err: fmt.Errorf(format, args...)}
}

// Run runs every cell of the scenario and returns the result. Cells whose evidence was gathered
// have verdicts even when Run also returns an error for others.
func Run(ctx context.Context, opts Options) (*reports.Result, error) {
	opts.setDefaults()
	p := newProgress(opts.Progress, opts.Style)
	start := time.Now()
	res := NewResult(opts.Scenario)
	res.StartedAt = start.UTC()
	res.Host.Kernel = hostKernel()
	defer func() {
		res.FinishedAt = time.Now().UTC()
		res.Timings["total"] = round3(time.Since(start).Seconds())
	}()

	groups := byKernel(opts.Scenario.Cells())
	for _, g := range groups {
		if err := kernel.Preflight(g[0].Kernel); err != nil {
			return res, &InputError{Err: err}
		}
	}
	if err := checkKeep(opts, groups); err != nil {
		return res, err
	}
	if err := checkNodeImage(opts, groups); err != nil {
		return res, err
	}
	userNode, err := userNodeImage(ctx, opts, p)
	if err != nil {
		return res, err
	}
	userCilium, err := userCiliumImages(ctx, opts, ciliumVersions(ciliumWants(groups)), p)
	if err != nil {
		return res, err
	}
	// The netns form's VMs first (seconds per cell), then the kind form's (minutes per cluster).
	var errs []error
	for _, form := range []machineForm{netnsMachine(), kindMachine()} {
		var mine [][]scenario.Cell
		for _, g := range groups {
			if (g[0].Cluster == scenario.ClusterKind) == form.kind {
				mine = append(mine, g)
			}
		}
		if len(mine) == 0 {
			continue
		}
		var wants []ciliumWant
		if form.kind {
			if wants = ciliumWants(mine); len(wants) > 0 {
				if userNode != nil {
					return res, &InputError{Err: fmt.Errorf("--node-image %q: real Cilium (%s) runs from nfslab's own node image, which carries its images", opts.NodeImage, wants[0].datapath)}
				}
				form = ciliumMachine()
			}
		}
		r, err := newRunner(ctx, opts, p, res, form)
		if err != nil {
			return res, err
		}
		if form.kind {
			r.userNode, r.userCilium, r.cilium = userNode, userCilium, wants
		}
		errs = append(errs, r.runGroups(ctx, mine)...)
		os.RemoveAll(r.work)
		if ctx.Err() != nil {
			break
		}
	}
	res.Pass = len(errs) == 0
	for _, c := range res.Cells {
		if !c.Pass {
			res.Pass = false
		}
	}
	return res, errors.Join(errs...)
}

// machineForm is what a run's VMs are built for: the netns form's cells, or the kind form's
// Docker engine (a bigger root filesystem, more modules and memory, a Docker disk).
type machineForm struct {
	name     string
	kind     bool // the kind form: a Docker disk with the node image, and a cluster per kube-proxy mode
	rootfs   func(image.Cache, context.Context, *slog.Logger) (string, error)
	modules  func() []string
	features func() []kernel.Feature // beyond kernel.RequiredFeatures; nil for none
	memoryMB int
}

func netnsMachine() machineForm {
	return machineForm{name: "the netns form", rootfs: image.Cache.Rootfs, modules: kernel.LabModules, memoryMB: vmMemoryMB}
}

func kindMachine() machineForm {
	return machineForm{
		name: "the kind form", kind: true, rootfs: image.Cache.KindRootfs, features: kernel.KindFeatures, memoryMB: kindMemoryMB,
		modules: func() []string { return append(kernel.LabModules(), kernel.KindModules()...) },
	}
}

// newRunner checks the host and prepares what every VM of the form boots with: the cache, the
// run's work directory (the caller removes r.work) and the guest root filesystem with the agent.
func newRunner(ctx context.Context, opts Options, p *progress, res *reports.Result, form machineForm) (*runner, error) {
	if err := image.CheckHostTools(); err != nil {
		return nil, &LabError{Err: err}
	}
	cache, err := cacheOf(opts)
	if err != nil {
		return nil, err
	}
	agentBin := opts.Agent
	if agentBin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, labErr("find the nfslab binary for the VM agent: %w", err)
		}
		agentBin = exe
	}

	work, err := os.MkdirTemp("", runstate.WorkDirPrefix+opts.RunID+"-")
	if err != nil {
		return nil, labErr("make a work directory: %w", err)
	}

	p.say("image: preparing the guest root filesystem (cache %s)", cache.Dir)
	t0 := time.Now()
	rootfs, err := form.rootfs(cache, ctx, opts.Log)
	if err != nil {
		os.RemoveAll(work)
		return nil, labErr("build the guest root filesystem: %w", err)
	}
	res.Timings["image"] = round3(time.Since(t0).Seconds())
	p.say("image: root filesystem ready in %.1f s", time.Since(t0).Seconds())
	agentArchive := filepath.Join(work, "agent.cpio")
	if err := image.AgentArchive(agentArchive, agentBin, rootfs); err != nil {
		os.RemoveAll(work)
		return nil, labErr("package the agent: %w", err)
	}

	qemu := vm.QEMUVersion(ctx)
	return &runner{
		opts: opts, p: p, form: form, cache: cache, work: work, rootfs: rootfs, agentArchive: agentArchive, res: res,
		qemu: qemu, kvm: vm.NewKVMMemo(cache.Dir, hostKernel(), qemu),
	}, nil
}

// cacheOf is the run's artefact cache: Options.CacheDir, else the default directory.
func cacheOf(opts Options) (image.Cache, error) {
	if opts.CacheDir != "" {
		return image.Cache{Dir: opts.CacheDir}, nil
	}
	d, err := image.DefaultCacheDir()
	if err != nil {
		return image.Cache{}, labErr("find a cache directory: %w", err)
	}
	return image.Cache{Dir: d}, nil
}

// runner runs the kernel groups of one run; res is shared between groups running in parallel.
type runner struct {
	opts         Options
	p            *progress
	form         machineForm
	cache        image.Cache
	work         string
	rootfs       string
	agentArchive string

	mu   sync.Mutex
	res  *reports.Result
	qemu string // qemu's version, for the report and the KVM memo
	// kvm remembers, in the cache, that KVM failed to bring a VM up on this host: later boots
	// (of this run and later ones) go straight to TCG instead of paying KVM's boot timeout again.
	kvm     vm.KVMMemo
	kvmSaid sync.Once // the progress line about it, once a run
	// restoreFailed is the progress line about a restore that failed, once a run.
	restoreFailed sync.Once

	// userNode is the kind form's node image given by the user (Options.NodeImage), resolved
	// before anything was created; nil for nfslab's own. userCilium likewise are the user's
	// images of Cilium (Options.CiliumImage); nil for those nfslab builds.
	userNode   *nodeimage.Node
	userCilium *nodeimage.CiliumImages

	// The kind form's node image, the Docker disk that holds it and the archive side-loaded into
	// its nodes (none for nfslab's own image), prepared once per run (kindMachineSetup).
	kindOnce     sync.Mutex
	kindDisk     string
	kindNode     string
	kindSideLoad string
	// cilium are the Cilium datapaths and versions the run's kind cells install (ciliumWants),
	// and ciliumInstalls their charts rendered, once per run (kindMachineSetup).
	cilium         []ciliumWant
	ciliumInstalls []cilium.Install
}

// defaultParallelism is how many of the run's VMs run at once without --parallel: Parallelism()
// for the netns form, KindParallelism for the kind form's larger VMs.
func (r *runner) defaultParallelism() int {
	if r.form.kind {
		return KindParallelism(r.form.memoryMB)
	}
	return Parallelism()
}

// runGroups runs the kernel groups, Options.Parallel (or defaultParallelism()) at a time, and
// returns their errors.
func (r *runner) runGroups(ctx context.Context, groups [][]scenario.Cell) []error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	n := r.defaultParallelism()
	switch {
	case r.opts.Parallel > n && r.form.kind:
		r.p.say("run: warning: --parallel %d runs more kind VMs at once than this machine holds well (%d: one per two cores, as memory allows); their clusters share the cores, and under TCG a cell's pods and mount can slow down until its mount times out", r.opts.Parallel, n)
		n = r.opts.Parallel
	case r.opts.Parallel > 0:
		n = r.opts.Parallel
	}
	slots := make(chan struct{}, n)
	for i, group := range groups {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			mu.Lock()
			errs = append(errs, labErr("interrupted before kernel %s", group[0].Kernel))
			mu.Unlock()
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if err := r.runKernel(ctx, filepath.Join(r.work, fmt.Sprintf("k%d", i)), group); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errs
}

func (r *runner) record(f func(res *reports.Result)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r.res)
}

// runKernel boots the kernel of a group of cells and runs them, booting again after a cell whose
// teardown failed or left I/O stuck in the kernel (unfitAfter). work is the group's own
// directory.
func (r *runner) runKernel(ctx context.Context, work string, group []scenario.Cell) error {
	name := group[0].Kernel
	k, initrd, err := r.kernelImage(ctx, work, name)
	if err != nil {
		return err
	}
	setup := machineSetup{}
	if r.form.kind {
		if setup, err = r.kindMachineSetup(ctx, k, initrd, work); err != nil {
			return err
		}
		group = byProxyMode(group)
	}
	remaining := group
	retried := false // a VM whose kernel wedged is booted again, once per group
	for len(remaining) > 0 {
		done, err := r.bootAndRun(ctx, k, initrd, work, remaining, setup)
		var w *wedgedError
		if err != nil && errors.As(err, &w) && !retried && ctx.Err() == nil {
			retried = true
			remaining = remaining[done:]
			r.p.say("kernel %s: %v; booting a fresh VM for the %d remaining cell(s)", name, w, len(remaining))
			continue
		}
		if err != nil {
			return err
		}
		if done == 0 {
			return labErr("kernel %s: the VM ran no cell", name)
		}
		remaining = remaining[done:]
		if len(remaining) > 0 {
			r.p.say("kernel %s: booting a fresh VM for the %d remaining cell(s)", name, len(remaining))
		}
	}
	return nil
}

// unfitAfter says whether a VM may run another cell after the cell whose timeline is events,
// and if not why: not once the cell's teardown failed or left I/O stuck in the kernel. What a
// failed teardown left — a mount, rules, a BPF link, a namespace — would be part of the next
// cell's lab. It answers only once the teardown has ended (its last step is on the timeline).
func unfitAfter(events []event.Event) (why string, unfit bool) {
	var failed, tainted, ended bool
	var msg string
	for _, e := range events {
		switch {
		case e.Kind == event.KindError && e.Step == event.StepTeardown:
			failed, msg = true, e.Msg
		case e.Kind == event.KindStep && e.Step == event.StepTeardownTainted:
			tainted, ended = true, true
			if msg == "" {
				msg = e.Msg
			}
		case e.Kind == event.KindStep && e.Step == event.StepTeardown:
			ended = true
		}
	}
	switch {
	case !ended:
		return "", false
	case failed:
		return "its teardown failed: " + msg, true
	case tainted:
		return "its teardown left the VM unfit: " + msg, true
	}
	return "", false
}

func byKernel(cells []scenario.Cell) [][]scenario.Cell {
	var groups [][]scenario.Cell
	idx := map[string]int{}
	for _, c := range cells {
		i, ok := idx[c.Kernel]
		if !ok {
			i = len(groups)
			idx[c.Kernel] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], c)
	}
	return groups
}

func hostKernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
