package lab

// This file brings the VMs up: their size and how many run at once, the initramfs per kernel,
// the boot, and the loop that hands a VM its cells and follows its agent's events.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/nfslab/nfslab/lab/agent"
	"github.com/nfslab/nfslab/lab/cluster/vm"
	"github.com/nfslab/nfslab/lab/datapath"
	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/kernel"
	"github.com/nfslab/nfslab/lab/runstate"
	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/reports"
)

// vmCPUs is how many virtual CPUs each VM gets.
func vmCPUs() int { return min(2, runtime.NumCPU()) }

// vmMemoryMB is each VM's memory; kindMemoryMB a kind-form machine's (its root filesystem, in
// memory, carries Docker; each kind node takes about 0.5 GiB more); ciliumMemoryMB one with
// real Cilium, whose agent compiles its datapath with clang beside the cluster: with 6 GiB,
// twice on debian-stock × cilium@v1.15.19 the guest went silent for good a few minutes after
// Cilium's agent started (no event, no console line, both vCPUs busy), which looks like a
// guest out of memory that keeps reclaiming instead of killing; with 10 GiB the same cell ran.
const (
	vmMemoryMB     = 2048
	kindMemoryMB   = 6144
	ciliumMemoryMB = 10240
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

// KindParallelism is how many kind-form VMs of memoryMB each run at once by default: a kind
// cluster keeps both of a VM's vCPUs busy under TCG, so one VM per two host cores, bounded by
// memory.
func KindParallelism(memoryMB int) int {
	byMem := runtime.NumCPU()
	if total, err := memTotalMB(); err == nil {
		byMem = total / (memoryMB + memoryMB/4)
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

// bootedVM is a VM that came up, and how.
type bootedVM struct {
	*vm.VM
	start *reports.Start
	// prepared says the kind form's VM has its engine and cluster up already (restored at, or
	// brought to, snapshot.ClusterReady): its job is only the cells.
	prepared bool
	// warm, for a VM started from or brought to a snapshot point, is what it needs to take
	// its cells' snapshots (cellready.go); nil otherwise.
	warm *warmVM
	// release stops the VM and keeps its console log in the artifact directory.
	release func()
}

// boot brings up a VM of kernel k from initrd, with work as its directory, and waits for the
// agent: restored from a snapshot of the same machine at the same point when the cache has one
// (warm.go), else booted and, where snapshots are taken, brought to that point and snapshotted
// for later VMs. setup's disks are attached as virtio-blk devices (vm.Config.Disks), ports are
// virtio-serial ports besides the agent's (vm.Config.Ports).
func (r *runner) boot(ctx context.Context, k kernel.Kernel, initrd, work string, setup machineSetup, ports ...string) (*bootedVM, error) {
	cfg := r.machineConfig(k, initrd, work, setup, ports...)
	plan, warm, err := r.warmPlan(cfg, setup)
	if err != nil {
		r.opts.Log.Warn("booting without a snapshot", "err", err)
		warm = false
	}
	if warm {
		if b := r.restoreVM(ctx, k, cfg, plan, work); b != nil {
			return b, nil
		}
		return r.bootAndSnapshot(ctx, k, cfg, setup, plan, work)
	}
	machine, err := r.coldBoot(ctx, k, cfg)
	if err != nil {
		return nil, err
	}
	return r.booted(k, machine, coldStart(machine)), nil
}

// machineConfig is the VM a kernel k's cells run in, from initrd, with work as its directory.
func (r *runner) machineConfig(k kernel.Kernel, initrd, work string, setup machineSetup, ports ...string) vm.Config {
	opts := r.opts
	return vm.Config{
		Kernel: k.Vmlinuz, Initrd: initrd, Accel: opts.Accel, KVMMemo: r.kvm,
		CPUs: vmCPUs(), MemoryMB: r.form.memoryMB, Dir: work, Name: runstate.QEMUName(opts.RunID, k.Name),
		BootTimeout: 180 * time.Second, Log: opts.Log, Ports: ports, Disks: setup.disks, Forwards: setup.forwards,
	}
}

// booted wraps a VM that came up as start says.
func (r *runner) booted(k kernel.Kernel, machine *vm.VM, start *reports.Start) *bootedVM {
	return &bootedVM{VM: machine, start: start, release: func() {
		machine.Close()
		keepConsole(r.opts.ArtifactDir, k.Name, machine.ConsoleLog)
	}}
}

func coldStart(machine *vm.VM) *reports.Start {
	return &reports.Start{Mode: reports.StartCold, Seconds: round3(machine.BootTime.Seconds())}
}

// coldBoot boots a VM of cfg and waits for the agent's hello.
func (r *runner) coldBoot(ctx context.Context, k kernel.Kernel, cfg vm.Config) (*vm.VM, error) {
	opts, p := r.opts, r.p
	p.say("vm: booting %s (%s)", k.Name, accelName(cfg.Accel))
	machine, err := vm.Boot(ctx, cfg)
	if err != nil {
		var kept []string
		for _, a := range []string{vm.AccelKVM, vm.AccelTCG} {
			if p := keepConsole(opts.ArtifactDir, k.Name+"-"+a, vm.ConsolePath(cfg.Dir, a)); p != "" {
				kept = append(kept, p)
			}
		}
		if len(kept) > 0 {
			return nil, labErr("kernel %s: %w (console: %s)", k.Name, err, strings.Join(kept, ", "))
		}
		return nil, labErr("kernel %s: %w", k.Name, err)
	}
	r.record(func(res *reports.Result) {
		res.Host.Accel = machine.Accel
		res.Host.QEMU = r.qemu
		res.Timings["vm_boot:"+k.Name] = round3(machine.BootTime.Seconds())
	})
	if machine.KVMError != nil {
		r.kvmSaid.Do(func() {
			if machine.KVMRemembered {
				p.say("vm: using TCG: %v (remembered in %s; --accel kvm tries KVM again)", machine.KVMError, r.kvm.File)
			} else {
				p.say("vm: KVM does not work here, using TCG from now on (%v)", machine.KVMError)
			}
		})
	}
	p.say("vm: booted in %.1f s under %s, kernel %s", machine.BootTime.Seconds(), machine.Accel, machine.Hello.KernelRelease)
	return machine, nil
}

// sendJob sends the agent its job, with the host's wall clock and fresh random bytes for the
// guest (agent.Job.ClockNS, Entropy).
func sendJob(machine *vm.VM, job agent.Job) error {
	job.ClockNS = time.Now().UnixNano()
	job.Entropy = make([]byte, 32)
	if _, err := rand.Read(job.Entropy); err != nil {
		return fmt.Errorf("random bytes for the guest: %w", err)
	}
	return machine.Send(job)
}

// bootAndRun boots one VM, hands it the cells and collects events until the agent says bye, or
// until a cell leaves the VM unfit for the next (unfitAfter). It returns how many of the cells
// finished.
func (r *runner) bootAndRun(ctx context.Context, k kernel.Kernel, initrd, work string, cells []scenario.Cell, setup machineSetup) (int, error) {
	if setup.kind != nil && !setup.keep && len(cells) > 0 {
		// Where it is snapshotted, the VM creates the cluster of its first cell before the
		// cells: with its Cilium, ready and its datapath compiled, for a Cilium datapath.
		mode, _ := datapath.ProxyMode(cells[0].Datapath)
		setup.prepare = &agent.Prepare{ProxyMode: mode, Nodes: max(cells[0].Nodes, 1)}
		if cells[0].Cilium != "" {
			setup.prepare.Cilium = cilium.Key(cells[0].Datapath, cells[0].Cilium)
		}
	}
	if r.opts.CellSnapshots && !setup.keep {
		if done, ok, err := r.runRestoredCells(ctx, k, initrd, work, cells, setup); ok {
			return done, err
		}
	}
	machine, err := r.boot(ctx, k, initrd, work, setup)
	if err != nil {
		return 0, err
	}
	defer machine.release()

	job := agent.Job{Cells: cells, Engine: setup.engine, Kind: setup.kind, Cilium: setup.cilium, Keep: setup.keep, SetClock: setup.kind == nil}
	if machine.prepared {
		job = agent.Job{Cells: cells, Cilium: setup.cilium}
	}
	job.CellReady = r.opts.CellSnapshots && machine.warm != nil
	return r.follow(ctx, k, machine, cells, setup, job)
}

// follow sends a VM its job and collects its events until the agent says bye, or until a cell
// leaves the VM unfit for the next (unfitAfter); at a cell's snapshot point it takes the
// cell's snapshot (atCellReady). It returns how many of the cells finished.
func (r *runner) follow(ctx context.Context, k kernel.Kernel, machine *bootedVM, cells []scenario.Cell, setup machineSetup, job agent.Job) (int, error) {
	p := r.p
	start := machine.start
	if err := sendJob(machine.VM, job); err != nil {
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
	tctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	// A guest whose kernel wedged, or whose agent fell silent, ends early, with that as the cause.
	watch := newVMWatch(tctx, machine.ConsoleLog)
	defer watch.release()
	vctx := watch.ctx
	finish := func() {
		r.record(func(res *reports.Result) { finishCells(cells, timeline, k, machine.VM, *start, res, done) })
	}
	for {
		ev, err := machine.Next(vctx)
		if err != nil {
			finish()
			if ctx.Err() != nil {
				return done, labErr("kernel %s: interrupted after %d of %d cell(s)", k.Name, done, len(cells))
			}
			var w *wedgedError
			if errors.As(context.Cause(vctx), &w) {
				return done, &LabError{Err: fmt.Errorf("kernel %s: after %d of %d cell(s): %w", k.Name, done, len(cells), w)}
			}
			return done, labErr("kernel %s: lost the agent after %d of %d cell(s): %w; the VM console said:\n%s", k.Name, done, len(cells), err, consoleTail(machine.ConsoleLog))
		}
		if guestProgress(ev) {
			watch.stalls.agentSpoke(time.Now())
		}
		if ev.Kind == event.KindReady && ev.Cell >= 0 {
			if err := r.atCellReady(ctx, machine, cells, ev.Cell); err != nil {
				finish()
				return done, labErr("kernel %s: %w", k.Name, err)
			}
			watch.stalls.agentSpoke(time.Now())
			continue
		}
		switch {
		case ev.Cell >= 0:
			timeline[ev.Cell] = append(timeline[ev.Cell], ev)
		case ev.Kind == event.KindError:
			agentErr = ev.Msg
		case ev.Sync != nil:
			start.ClockSkewSeconds, start.ClockSet, start.Reseeded = round3(float64(ev.Sync.ClockSkewNS)/1e9), ev.Sync.ClockSet, ev.Sync.Reseeded
			if ev.Sync.Error != "" {
				p.say("vm: %s", ev.Sync.Error)
			}
		}
		r.recordCluster(k, ev)
		p.event(cellName(cells, ev.Cell), ev)
		if ev.Kind == event.KindStep && (ev.Step == event.StepTeardown || ev.Step == event.StepTeardownTainted) && done < len(cells) {
			// The next cell must not inherit what this one's teardown left: end the VM here,
			// whatever its agent does next, and let runKernel boot a fresh one.
			if why, unfit := unfitAfter(timeline[ev.Cell]); unfit {
				finish()
				p.say("kernel %s: cell %s: %s; the next cell gets a fresh VM", k.Name, cellName(cells, ev.Cell), why)
				return done, nil
			}
		}
		switch ev.Kind {
		case event.KindKept:
			finish()
			watch.stop() // a kept cluster's agent waits, silent, for as long as it is kept
			r.keep(ctx, k, machine.VM, ev.Kept, setup)
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
			if setup.kind == nil {
				// A kind VM would delete its cluster and stop Docker before powering off, on
				// disks that are thrown away (10 s under TCG): release kills it instead.
				machine.WaitExit(10 * time.Second)
			}
			if done == 0 && agentErr != "" {
				return 0, labErr("kernel %s: %s", k.Name, agentErr)
			}
			return done, nil
		}
	}
}

// recordCluster records the time a kind cluster's creation or kube-proxy switch took, when ev
// reports one.
func (r *runner) recordCluster(k kernel.Kernel, ev event.Event) {
	c := ev.Cluster
	if c == nil || c.Error != "" || ev.Cell >= 0 {
		return // a cell's copy of its cluster's record is no creation of this run
	}
	r.record(func(res *reports.Result) {
		if c.SwitchedFrom != "" {
			res.Timings["kind_switch:"+k.Name+":"+c.ProxyMode] = round3(c.SwitchSeconds)
		} else {
			res.Timings["kind_create:"+k.Name+":"+c.ProxyMode] = round3(c.CreateSeconds)
		}
	})
}

func cellName(cells []scenario.Cell, idx int) string {
	for _, c := range cells {
		if c.Index == idx {
			return c.ID
		}
	}
	return ""
}

func accelName(a string) string {
	if a == "" {
		return vm.AccelAuto
	}
	return a
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
