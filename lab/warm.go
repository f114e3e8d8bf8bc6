package lab

// This file is the warm start of a VM: restore it from a snapshot of a VM of the same machine
// at the same point when the cache has one, else boot it, bring it to that point and take the
// snapshot for the VMs after it. The netns form's VMs are snapshotted booted (the agent waiting
// for its job); the kind form's with their Docker engine up and a kind cluster created in the
// kube-proxy mode of their first cell, or with its real Cilium ready (the agent waiting for the
// cells).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nfslab/nfslab/lab/agent"
	"github.com/nfslab/nfslab/lab/cluster/vm"
	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/kernel"
	"github.com/nfslab/nfslab/lab/snapshot"
	"github.com/nfslab/nfslab/reports"
)

// warmPlan is the snapshot a VM is restored from or taken as.
type warmPlan struct {
	spec snapshot.Spec
	// prepare is the kind cluster a kind form's VM creates before its snapshot is taken
	// (snapshot.ClusterReady); nil for a booted VM's (snapshot.Booted).
	prepare *agent.Prepare
}

// warmPlan returns how a VM of cfg (with setup) starts warm, ok false when it does not: with
// --no-snapshot, under KVM (a boot takes seconds there anyway), with forwarded ports or extra
// serial ports (--keep's and the demo's machines: the host's ends are not part of a saved state),
// and with disks other than the kind form's (a disk written in place, such as the one the node
// image is loaded into, cannot be kept as it was). The key covers everything that shapes the VM
// at its point: qemu's whole command line but for the names of this boot's files and sockets, the
// contents of the kernel and the initramfs (root filesystem, modules, the agent binary), and for
// the kind form the cached disks attached, the engine's and the cluster's settings, the
// cluster's kube-proxy mode and node count, and its Cilium install (the rendered chart) if any.
func (r *runner) warmPlan(cfg vm.Config, setup machineSetup) (warmPlan, bool, error) {
	if r.opts.NoSnapshot || len(cfg.Forwards) > 0 || len(cfg.Ports) > 0 {
		return warmPlan{}, false, nil
	}
	if cfg.Accel == vm.AccelKVM || (cfg.Accel != vm.AccelTCG && vm.KVMUsable()) {
		return warmPlan{}, false, nil
	}
	if len(cfg.Disks) > 0 && setup.prepare == nil {
		return warmPlan{}, false, nil
	}
	kernelSum, err := image.FileSHA256(cfg.Kernel)
	if err != nil {
		return warmPlan{}, false, fmt.Errorf("key a snapshot: %w", err)
	}
	initrdSum, err := image.FileSHA256(cfg.Initrd)
	if err != nil {
		return warmPlan{}, false, fmt.Errorf("key a snapshot: %w", err)
	}
	inputs := image.Inputs{"kernel": kernelSum, "initrd": initrdSum}
	shape := cfg
	shape.Kernel, shape.Initrd, shape.Dir, shape.Name = "KERNEL", "INITRD", "", ""
	shape.Disks = slices.Clone(cfg.Disks)
	for i, d := range cfg.Disks {
		if d.Mode == vm.DiskWritable {
			return warmPlan{}, false, nil
		}
		// A cached disk: its path names its inputs, and a disk built again there (after a
		// prune) has another modification time. A snapshot's overlay reads from it.
		st, err := os.Stat(d.Path)
		if err != nil {
			return warmPlan{}, false, fmt.Errorf("key a snapshot: %w", err)
		}
		inputs[fmt.Sprintf("disk%d", i)] = fmt.Sprintf("%s size %d modified %d", d.Path, st.Size(), st.ModTime().UnixNano())
		shape.Disks[i].Path = fmt.Sprintf("DISK%d", i)
	}
	inputs["machine"] = strings.Join(vm.Args(shape, vm.AccelTCG, "TAG", "CONSOLE"), " ")
	plan := warmPlan{spec: snapshot.Spec{Point: snapshot.Booted, Inputs: inputs, QEMU: r.qemu}}
	if setup.prepare != nil {
		parts := map[string]any{"prepare": setup.prepare, "engine": setup.engine, "kind": setup.kind}
		if key := setup.prepare.Cilium; key != "" {
			// The prepared cluster's Cilium: the chart rendered with its effective values.
			i := slices.IndexFunc(setup.cilium, func(in cilium.Install) bool { return in.Key() == key })
			if i < 0 {
				return warmPlan{}, false, fmt.Errorf("key a snapshot: no Cilium install %s", key)
			}
			parts["cilium"] = setup.cilium[i]
		}
		for name, v := range parts {
			b, err := json.Marshal(v)
			if err != nil {
				return warmPlan{}, false, fmt.Errorf("key a snapshot: %w", err)
			}
			inputs[name] = string(b)
		}
		plan.spec.Point, plan.prepare = snapshot.ClusterReady, setup.prepare
	}
	return plan, true, nil
}

// warmVM is what a VM that may take snapshots as it runs needs for them: the plan it was
// started by, its memory, the disk overlays it writes to (by disk index) and, restored, the
// snapshot it came from, whose disks those overlays build on.
type warmVM struct {
	plan     warmPlan
	memoryMB int
	overlays map[int]string
	parent   *snapshot.Meta
}

// restoreVM restores a VM of kernel k and cfg from plan's snapshot (restore), nil when it cannot.
func (r *runner) restoreVM(ctx context.Context, k kernel.Kernel, cfg vm.Config, plan warmPlan, work string) *bootedVM {
	machine, snap, overlays := r.restore(ctx, cfg, plan, work)
	if machine == nil {
		return nil
	}
	taken := snap.Meta.Taken
	start := &reports.Start{
		Mode: reports.StartRestored, Seconds: round3(machine.BootTime.Seconds()),
		Snapshot: snap.Name(), SnapshotTaken: &taken,
	}
	r.p.say("vm: %s restored from snapshot %s (taken %s) in %.1f s", k.Name, start.Snapshot,
		taken.Local().Format(time.DateTime), machine.BootTime.Seconds())
	r.record(func(res *reports.Result) {
		res.Host.Accel, res.Host.QEMU = machine.Accel, r.qemu
		res.Timings["vm_restore:"+k.Name] = round3(machine.BootTime.Seconds())
	})
	b := r.booted(k, machine, start)
	b.prepared = plan.prepare != nil
	b.warm = &warmVM{plan: plan, memoryMB: cfg.MemoryMB, overlays: overlays, parent: &snap.Meta}
	return b
}

// bootAndSnapshot boots a VM of kernel k and cfg cold, brings it to plan's point — its agent
// ready for the job, or for a kind VM its cluster created (prepareKind) — and takes plan's
// snapshot of it. A kind VM's cached disks are attached through overlays in work, which the
// snapshot keeps a copy of.
func (r *runner) bootAndSnapshot(ctx context.Context, k kernel.Kernel, cfg vm.Config, setup machineSetup, plan warmPlan, work string) (*bootedVM, error) {
	overlaid, overlays, err := overlayDisks(ctx, cfg, work)
	if err != nil {
		r.p.say("vm: not taking a snapshot: %v", err)
		machine, err := r.coldBoot(ctx, k, cfg)
		if err != nil {
			return nil, err
		}
		return r.booted(k, machine, coldStart(machine)), nil
	}
	machine, err := r.coldBoot(ctx, k, overlaid)
	if err != nil {
		return nil, err
	}
	b := r.booted(k, machine, coldStart(machine))
	if ready, err := machine.AwaitReady(ctx); err != nil || !ready {
		if err != nil {
			r.p.say("vm: not taking a snapshot: %v", err)
		}
		return b, nil // an agent that says something else first says why it cannot run cells
	}
	if plan.prepare != nil {
		if err := r.prepareKind(ctx, k, machine, setup); err != nil {
			b.release()
			return nil, err
		}
		b.prepared = true
	}
	b.warm = &warmVM{plan: plan, memoryMB: cfg.MemoryMB, overlays: overlays}
	if snap, ok := r.takeSnapshot(ctx, machine, b.warm, plan.spec); ok {
		when := snap.Meta.Taken
		b.start.Snapshot, b.start.SnapshotTaken = snap.Name(), &when
	}
	return b, nil
}

// restore starts a VM of cfg from the snapshot of plan when the cache has a usable one; nil
// when it has none or the restore failed (said once per run; a snapshot qemu refused is
// removed, and the cold boot that follows takes it again). The snapshot's disks each get an
// overlay of their own in work, returned by disk index.
func (r *runner) restore(ctx context.Context, cfg vm.Config, plan warmPlan, work string) (*vm.VM, snapshot.Snapshot, map[int]string) {
	snap, ok, err := snapshot.Lookup(r.cache, r.opts.Log, plan.spec)
	if err != nil {
		r.p.say("vm: %v: removed it; %s and taking it again", err, instead(plan.spec.Point))
		return nil, snap, nil
	}
	if !ok {
		return nil, snap, nil
	}
	overlays := map[int]string{}
	cfg.Disks = slices.Clone(cfg.Disks)
	for i, d := range cfg.Disks {
		if d.Mode != vm.DiskSnapshot {
			continue
		}
		overlay := filepath.Join(work, fmt.Sprintf("restored-disk%d.qcow2", i))
		if !slices.Contains(snap.Meta.Disks, snapshot.DiskFile(i)) {
			err = fmt.Errorf("it has no copy of disk %d", i)
		} else {
			err = vm.CreateOverlay(ctx, overlay, snap.Disk(i), true)
		}
		if err != nil {
			r.restoreFailed.Do(func() { r.p.say("vm: snapshot %s: %v; %s instead", snap.Name(), err, instead(plan.spec.Point)) })
			return nil, snap, nil
		}
		cfg.Disks[i], overlays[i] = vm.Disk{Path: overlay, Qcow2: true}, overlay
	}
	cfg.Accel, cfg.Incoming, cfg.IncomingHello = vm.AccelTCG, snap.State(), snap.Meta.Hello
	machine, err := vm.Boot(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil, snap, nil
		}
		if errors.Is(err, vm.ErrStateRefused) {
			if rerr := snapshot.Remove(r.cache, r.opts.Log, snap); rerr != nil {
				r.opts.Log.Warn("could not remove a refused snapshot", "dir", snap.Dir, "err", rerr)
			}
			r.restoreFailed.Do(func() {
				r.p.say("vm: snapshot %s could not be restored, removed it; %s and taking it again (%v)", snap.Name(), instead(plan.spec.Point), err)
			})
		} else {
			r.restoreFailed.Do(func() {
				r.p.say("vm: snapshot %s could not be restored; %s instead (%v)", snap.Name(), instead(plan.spec.Point), err)
			})
		}
		return nil, snap, nil
	}
	return machine, snap, overlays
}

// instead says what a run does when a snapshot of point p cannot be restored.
func instead(p snapshot.Point) string {
	if p == snapshot.CellReady {
		return "running the cells from their VM's own start"
	}
	return "booting cold"
}

// overlayDisks returns cfg with each cached disk the VM would write to as a throw-away
// snapshot (vm.DiskSnapshot) attached instead through an overlay in work, which takeSnapshot
// keeps a copy of; overlays maps the disks' indexes to those files.
func overlayDisks(ctx context.Context, cfg vm.Config, work string) (vm.Config, map[int]string, error) {
	overlays := map[int]string{}
	cfg.Disks = slices.Clone(cfg.Disks)
	for i, d := range cfg.Disks {
		if d.Mode != vm.DiskSnapshot {
			continue
		}
		overlay := filepath.Join(work, fmt.Sprintf("disk%d.qcow2", i))
		if err := vm.CreateOverlay(ctx, overlay, d.Path, d.Qcow2); err != nil {
			return cfg, nil, err
		}
		cfg.Disks[i], overlays[i] = vm.Disk{Path: overlay, Qcow2: true}, overlay
	}
	return cfg, overlays, nil
}

// prepareKind has a kind form's VM, booted cold and its agent ready for its first job, create
// the cluster of setup.prepare and waits until its agent says it is ready for the cells; the engine's and the cluster's
// events are shown and recorded as bootAndRun does.
func (r *runner) prepareKind(ctx context.Context, k kernel.Kernel, machine *vm.VM, setup machineSetup) error {
	if err := sendJob(machine, agent.Job{Engine: setup.engine, Kind: setup.kind, Cilium: setup.cilium, Prepare: setup.prepare}); err != nil {
		return labErr("kernel %s: %w", k.Name, err)
	}
	budget := engineTimeout + clusterTimeout
	if setup.prepare.Cilium != "" {
		budget += ciliumTimeout
	}
	pctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	watch := newVMWatch(pctx, machine.ConsoleLog)
	defer watch.release()
	agentErr := ""
	for {
		ev, err := machine.Next(watch.ctx)
		var w *wedgedError
		switch {
		case err != nil && errors.As(context.Cause(watch.ctx), &w):
			return &LabError{Err: fmt.Errorf("kernel %s: while it created the kind cluster: %w", k.Name, w)}
		case err != nil:
			return labErr("kernel %s: lost the agent while it created the kind cluster: %w; the VM console said:\n%s", k.Name, err, consoleTail(machine.ConsoleLog))
		}
		if guestProgress(ev) {
			watch.stalls.agentSpoke(time.Now())
		}
		r.recordCluster(k, ev)
		switch ev.Kind {
		case event.KindReady:
			return nil
		case event.KindError:
			agentErr = ev.Msg
		case event.KindBye:
			if agentErr == "" {
				agentErr = ev.Msg
			}
			return labErr("kernel %s: %s", k.Name, agentErr)
		}
		r.p.event("", ev)
	}
}

// takeSnapshot saves the state of machine, started as w says and brought to spec's point, as
// spec's snapshot, with a copy of the disk overlays it writes to. A snapshot that cannot be
// taken (no room, qemu failed) is skipped with a line, ok false; the VM runs on either way.
// taken is false when another VM took it meanwhile (snap is that one).
func (r *runner) takeSnapshot(ctx context.Context, machine *vm.VM, w *warmVM, spec snapshot.Spec) (snap snapshot.Snapshot, ok bool) {
	t0 := time.Now()
	save := func(ctx context.Context, dir, state string) ([]string, error) {
		var disks []string
		err := machine.SaveState(ctx, state, func(context.Context) error {
			for i, overlay := range w.overlays {
				if err := image.CopyFile(overlay, filepath.Join(dir, snapshot.DiskFile(i))); err != nil {
					return fmt.Errorf("keep a copy of disk %d: %w", i, err)
				}
				disks = append(disks, snapshot.DiskFile(i))
			}
			return nil
		})
		slices.Sort(disks)
		return disks, err
	}
	var diskBytes int64
	for _, o := range w.overlays {
		if st, err := os.Stat(o); err == nil {
			diskBytes += st.Size()
		}
	}
	meta := snapshot.Meta{Hello: machine.Hello, MemoryMB: w.memoryMB, DiskBytes: diskBytes}
	if w.parent != nil && len(w.overlays) > 0 {
		meta.Parent, meta.ParentTaken = w.parent.Key, w.parent.Taken
	}
	snap, taken, err := snapshot.Take(ctx, r.cache, r.opts.Log, spec, meta, save)
	if err != nil {
		var full *image.NoSpaceError
		if errors.As(err, &full) {
			r.p.say("vm: not taking a snapshot (%s): %v", spec.Point, err)
		} else {
			r.p.say("vm: could not take a snapshot (%s): %v", spec.Point, err)
		}
		return snap, false
	}
	if !taken {
		return snap, true // another VM took it meanwhile
	}
	r.record(func(res *reports.Result) {
		res.Timings["snapshot_take:"+string(snap.Meta.Point)] = round3(time.Since(t0).Seconds())
	})
	r.p.say("vm: snapshot %s taken in %.1f s (%s); later VMs of this machine start from it",
		snap.Name(), time.Since(t0).Seconds(), image.FormatSize(snap.Size()))
	return snap, true
}
