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
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/nfslab/nfslab/lab/agent"
	"github.com/nfslab/nfslab/lab/cluster/kind/nodeimage"
	"github.com/nfslab/nfslab/lab/cluster/vm"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/kernel"
	"github.com/nfslab/nfslab/lab/runstate"
	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/lab/tty"
	"github.com/nfslab/nfslab/lab/verdict"
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
	res := &reports.Result{Schema: reports.Schema, Scenario: opts.Scenario.Name, StartedAt: start.UTC(), Timings: map[string]float64{}}
	res.Host.Kernel = hostKernel()
	defer func() {
		res.FinishedAt = time.Now().UTC()
		res.Timings["total"] = round3(time.Since(start).Seconds())
	}()

	cells := opts.Scenario.Cells()
	res.Cells = make([]reports.Cell, len(cells))
	for i, c := range cells {
		res.Cells[i] = pendingCell(c)
	}
	groups := byKernel(cells)
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
		r, err := newRunner(ctx, opts, p, res, form)
		if err != nil {
			return res, err
		}
		if form.kind {
			r.userNode = userNode
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

	return &runner{opts: opts, p: p, form: form, cache: cache, work: work, rootfs: rootfs, agentArchive: agentArchive, res: res}, nil
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

	mu  sync.Mutex
	res *reports.Result
	// noKVM records that KVM failed to bring a VM of this run up: later boots go straight to
	// TCG instead of paying KVM's boot timeout again.
	noKVM bool

	// userNode is the kind form's node image given by the user (Options.NodeImage), resolved
	// before anything was created; nil for nfslab's own.
	userNode *nodeimage.Node

	// The kind form's node image, the Docker disk that holds it and the archive side-loaded into
	// its nodes (none for nfslab's own image), prepared once per run (kindMachineSetup).
	kindOnce     sync.Mutex
	kindDisk     string
	kindNode     string
	kindSideLoad string
}

// vmCPUs is how many virtual CPUs each VM gets.
func vmCPUs() int { return min(2, runtime.NumCPU()) }

// vmMemoryMB is each VM's memory; kindMemoryMB a kind-form machine's (its root filesystem, in
// memory, carries Docker; each kind node takes about 0.5 GiB more).
const (
	vmMemoryMB   = 2048
	kindMemoryMB = 6144
)

// Parallelism is how many VMs run at once by default: one per host core (the VMs spend much
// of their time waiting on each other's steps: on 2 cores two VMs ran the fidelity matrix in
// 14 s against 22 s one after the other), as far as the host's memory holds them with room to
// spare, at least one.
func Parallelism() int {
	byMem := runtime.NumCPU()
	if total, err := memTotalMB(); err == nil {
		byMem = total / (vmMemoryMB + vmMemoryMB/2)
	}
	return max(1, min(runtime.NumCPU(), byMem))
}

// KindParallelism is how many kind-form VMs run at once by default: a kind cluster keeps both
// of a VM's vCPUs busy under TCG, so one VM per two host cores, bounded by memory.
func KindParallelism() int {
	byMem := runtime.NumCPU()
	if total, err := memTotalMB(); err == nil {
		byMem = total / (kindMemoryMB + kindMemoryMB/4)
	}
	return max(1, min(runtime.NumCPU()/vmCPUs(), byMem))
}

// memTotalMB reads MemTotal from /proc/meminfo.
func memTotalMB() (int, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			var kb int
			if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err != nil {
				return 0, fmt.Errorf("parse MemTotal %q: %w", rest, err)
			}
			return kb / 1024, nil
		}
	}
	return 0, errors.New("no MemTotal in /proc/meminfo")
}

// runGroups runs the kernel groups, Options.Parallel (or Parallelism()) at a time, and returns
// their errors.
func (r *runner) runGroups(ctx context.Context, groups [][]scenario.Cell) []error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	n := r.opts.Parallel
	if n <= 0 {
		n = Parallelism()
		if r.form.kind {
			n = KindParallelism()
		}
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

// runKernel boots the kernel of a group of cells and runs them, booting again after a cell that
// left I/O stuck in the kernel. work is the group's own directory.
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
	for len(remaining) > 0 {
		done, err := r.bootAndRun(ctx, k, initrd, work, remaining, setup)
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

// kernelImage resolves the kernel name (building or fetching it into the cache) and assembles in
// work, which it creates, the initramfs its VMs boot: root filesystem, modules, agent.
func (r *runner) kernelImage(ctx context.Context, work, name string) (kernel.Kernel, string, error) {
	if err := os.MkdirAll(work, 0o755); err != nil {
		return kernel.Kernel{}, "", labErr("kernel %s: %w", name, err)
	}
	r.p.say("kernel %s: preparing", name)
	t0 := time.Now()
	k, err := kernel.Resolve(ctx, r.cache, name, r.opts.Log, func(line string) { r.p.say("%s", line) })
	if err != nil {
		return kernel.Kernel{}, "", labErr("kernel %s: %w", name, err)
	}
	if r.form.features != nil {
		if err := kernel.CheckConfigFor(k, r.form.name, r.form.features()); err != nil {
			return kernel.Kernel{}, "", &InputError{Err: err}
		}
	}
	modules, err := kernel.ModulesArchive(ctx, r.cache, k, r.form.modules())
	if err != nil {
		return kernel.Kernel{}, "", labErr("kernel %s: modules for the guest: %w", name, err)
	}
	initrd := filepath.Join(work, "initrd.cpio")
	parts := []string{r.rootfs, r.agentArchive}
	if modules != "" {
		parts = []string{r.rootfs, modules, r.agentArchive}
	}
	if err := image.Assemble(initrd, parts...); err != nil {
		return kernel.Kernel{}, "", labErr("assemble the initramfs: %w", err)
	}
	r.record(func(res *reports.Result) { res.Timings["kernel:"+name] = round3(time.Since(t0).Seconds()) })
	r.p.say("kernel %s: %s ready in %.1f s", name, k.Release, time.Since(t0).Seconds())
	return k, initrd, nil
}

// boot boots a VM of kernel k from initrd, with work as its directory, and waits for the agent's
// hello; disks are attached as virtio-blk devices (vm.Config.Disks), ports are virtio-serial
// ports besides the agent's (vm.Config.Ports). release stops the VM and keeps its console log
// in the artifact directory.
func (r *runner) boot(ctx context.Context, k kernel.Kernel, initrd, work string, disks []vm.Disk, forwards []vm.Forward, ports ...string) (machine *vm.VM, release func(), err error) {
	opts, p := r.opts, r.p
	accel := opts.Accel
	r.mu.Lock()
	if r.noKVM && (accel == vm.AccelAuto || accel == "") {
		accel = vm.AccelTCG
	}
	r.mu.Unlock()
	p.say("vm: booting %s (%s)", k.Name, accelName(accel))
	machine, err = vm.Boot(ctx, vm.Config{
		Kernel: k.Vmlinuz, Initrd: initrd, Accel: accel,
		CPUs: vmCPUs(), MemoryMB: r.form.memoryMB, Dir: work, Name: runstate.QEMUName(opts.RunID, k.Name),
		BootTimeout: 180 * time.Second, Log: opts.Log, Ports: ports, Disks: disks, Forwards: forwards,
	})
	if err != nil {
		var kept []string
		for _, a := range []string{vm.AccelKVM, vm.AccelTCG} {
			if p := keepConsole(opts.ArtifactDir, k.Name+"-"+a, vm.ConsolePath(work, a)); p != "" {
				kept = append(kept, p)
			}
		}
		if len(kept) > 0 {
			return nil, nil, labErr("kernel %s: %w (console: %s)", k.Name, err, strings.Join(kept, ", "))
		}
		return nil, nil, labErr("kernel %s: %w", k.Name, err)
	}
	release = func() {
		machine.Close()
		keepConsole(opts.ArtifactDir, k.Name, machine.ConsoleLog)
	}
	qemu := qemuVersion(ctx)
	r.record(func(res *reports.Result) {
		res.Host.Accel = machine.Accel
		res.Host.QEMU = qemu
		res.Timings["vm_boot:"+k.Name] = round3(machine.BootTime.Seconds())
	})
	if machine.KVMError != nil {
		r.mu.Lock()
		r.noKVM = true
		r.mu.Unlock()
		p.say("vm: KVM does not work here, using TCG (%v)", machine.KVMError)
	}
	p.say("vm: booted in %.1f s under %s, kernel %s", machine.BootTime.Seconds(), machine.Accel, machine.Hello.KernelRelease)
	return machine, release, nil
}

// bootAndRun boots one VM, hands it the cells and collects events until the agent says bye. It
// returns how many of the cells finished.
func (r *runner) bootAndRun(ctx context.Context, k kernel.Kernel, initrd, work string, cells []scenario.Cell, setup machineSetup) (int, error) {
	p := r.p
	machine, release, err := r.boot(ctx, k, initrd, work, setup.disks, setup.forwards)
	if err != nil {
		return 0, err
	}
	defer release()

	if err := machine.Send(agent.Job{Cells: cells, Engine: setup.engine, Kind: setup.kind, Keep: setup.keep}); err != nil {
		return 0, labErr("kernel %s: %w", k.Name, err)
	}

	timeline := make(map[int][]event.Event)
	done := 0
	agentErr := "" // the agent's last error outside any cell
	// Each cell may take its setup steps, its recovery window and teardown; bound the whole VM.
	var budget time.Duration
	for _, c := range cells {
		budget += 8*c.Timeouts.Setup.Duration + c.Timeouts.Recovery.Duration + 30*time.Second
	}
	budget += setup.budget(cells)
	vctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	finish := func() {
		r.record(func(res *reports.Result) { finishCells(cells, timeline, k, machine, res, done) })
	}
	for {
		ev, err := machine.Next(vctx)
		if err != nil {
			finish()
			if ctx.Err() != nil {
				return done, labErr("kernel %s: interrupted after %d of %d cell(s)", k.Name, done, len(cells))
			}
			return done, labErr("kernel %s: lost the agent after %d of %d cell(s): %w; the VM console said:\n%s", k.Name, done, len(cells), err, consoleTail(machine.ConsoleLog))
		}
		if ev.Cell >= 0 {
			timeline[ev.Cell] = append(timeline[ev.Cell], ev)
		} else if ev.Kind == event.KindError {
			agentErr = ev.Msg
		}
		if c := ev.Cluster; c != nil && c.Error == "" {
			r.record(func(res *reports.Result) {
				if c.SwitchedFrom != "" {
					res.Timings["kind_switch:"+k.Name+":"+c.ProxyMode] = round3(c.SwitchSeconds)
				} else {
					res.Timings["kind_create:"+k.Name+":"+c.ProxyMode] = round3(c.CreateSeconds)
				}
			})
		}
		p.event(cellName(cells, ev.Cell), ev)
		switch ev.Kind {
		case event.KindKept:
			finish()
			r.keep(ctx, k, machine, ev.Kept, setup)
			// The end of a kept VM is asked for (Ctrl-C): its agent says bye and powers off.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			for {
				if ev, err := machine.Next(dctx); err != nil || ev.Kind == event.KindBye {
					break
				}
			}
			cancel()
			machine.WaitExit(30 * time.Second)
			return done, nil
		case event.KindCellDone:
			done++
		case event.KindBye:
			finish()
			machine.WaitExit(10 * time.Second)
			if done == 0 && agentErr != "" {
				return 0, labErr("kernel %s: %s", k.Name, agentErr)
			}
			return done, nil
		}
	}
}

// finishCells turns the timelines of the first n cells into report cells with verdicts.
func finishCells(cells []scenario.Cell, timeline map[int][]event.Event, k kernel.Kernel, machine *vm.VM, res *reports.Result, n int) {
	for i, c := range cells {
		rc := Judge(c, timeline[c.Index], i < n)
		rc.KernelRelease = machine.Hello.KernelRelease
		rc.KernelBuild = k.Build
		res.Cells[c.Index] = rc
	}
}

// Judge decides a cell's verdict from its timeline and fills its report entry. complete says
// whether the agent finished the cell; an unfinished cell is judged on what it had.
func Judge(c scenario.Cell, events []event.Event, complete bool) reports.Cell {
	rc := pendingCell(c)
	rc.Events = events
	ev := verdict.Collect(c.Port, events)
	d := verdict.Decide(ev, true)
	if !complete && d.Verdict != verdict.Recovered && d.Verdict != verdict.BugReproduced {
		last := "before its first step"
		for _, e := range events {
			if e.Kind == event.KindStep {
				last = "after " + string(e.Step)
			}
		}
		d = verdict.Decision{Verdict: verdict.Inconclusive, Reason: "the cell was cut short " + last, Final: true}
	}
	rc.Verdict, rc.Reason = string(d.Verdict), d.Reason
	rc.Pass = rc.Verdict == rc.Expected
	// The addresses are the ones the cluster reported on the timeline.
	rc.VIP, rc.BackendA, rc.BackendB = ev.VIP, ev.OldBackend, ev.NewBackend
	rc.ReconnectTargets = ev.ReconnectTargets
	rc.AskedOld = ev.AskedOld
	rc.InstrumentFailures = ev.InstrumentFailures
	if ev.FirstIOOKAfter != nil {
		s := ev.FirstIOOKAfter.Seconds()
		rc.RecoverySeconds = &s
	}
	var first, prev event.Mono
	for _, e := range events {
		if first == 0 {
			first, prev = e.Mono, e.Mono
		}
		switch {
		case e.Mount != nil && e.Phase == event.PhaseBefore:
			rc.MountAddrBefore = e.Mount.Addr
		case e.Mount != nil && e.Phase == event.PhaseAfter:
			rc.MountAddrAfter = e.Mount.Addr
		case e.Kernel != nil:
			rc.KernelLog = append(rc.KernelLog, e.Kernel.Line)
		case e.Kind == event.KindStep:
			rc.Phases[string(e.Step)] = round3(e.Mono.Sub(prev).Seconds())
			prev = e.Mono
		case e.Kind == event.KindError && rc.Error == "":
			rc.Error = e.Msg
		case e.Window != nil && e.Window.Seconds > 0:
			w := e.Window
			rc.NoEndpointWindow = &reports.Window{
				Seconds: round3(w.Seconds), ConnectAttempts: w.ConnectAttempts, Refused: w.Refused,
				AttemptsPerSecond: round3(float64(w.ConnectAttempts) / w.Seconds),
				KernelLogLines:    w.KernelLogLines, KernelLogPerSecond: round3(float64(w.KernelLogLines) / w.Seconds),
				SocketLBWithoutEnds: c.SocketLBNoBackend,
			}
		}
	}
	return rc
}

func pendingCell(c scenario.Cell) reports.Cell {
	return reports.Cell{
		ID: c.ID, Kernel: c.Kernel, Cluster: c.Cluster, Datapath: c.Datapath, Protocol: c.Protocol, NFS: c.NFS, Fault: c.Fault,
		Verdict: string(verdict.Inconclusive), Expected: c.Expected, Reason: "not run",
		ProbeTimeout:     c.Timeouts.Probe.Seconds(),
		ReconnectTargets: []string{}, KernelLog: []string{}, Phases: map[string]float64{}, Events: []event.Event{},
	}
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

func cellName(cells []scenario.Cell, idx int) string {
	for _, c := range cells {
		if c.Index == idx {
			return c.ID
		}
	}
	return ""
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

func accelName(a string) string {
	if a == "" {
		return vm.AccelAuto
	}
	return a
}

func hostKernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func qemuVersion(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "qemu-system-x86_64", "--version").Output()
	if err != nil {
		return ""
	}
	return strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0]
}

// consoleTail returns the last lines of a VM's console log, indented, for an error message.
func consoleTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "    (no console log)"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return "    " + strings.Join(lines, "\n    ")
}

// keepConsole copies a VM's console log into the artifact directory under a name that does not
// collide with earlier boots, and returns the copy's path ("" when nothing was kept).
func keepConsole(dir, kernelName, path string) string {
	if dir == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil || os.MkdirAll(dir, 0o755) != nil {
		return ""
	}
	base := "console-" + strings.NewReplacer("/", "_", " ", "_").Replace(filepath.Base(kernelName))
	for n := 1; ; n++ {
		dst := filepath.Join(dir, fmt.Sprintf("%s-%d.log", base, n))
		f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return ""
		}
		_, err = f.Write(b)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return ""
		}
		return dst
	}
}
