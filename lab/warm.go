package lab

// This file is the warm start of a VM: restore it from the snapshot of a booted VM of the same
// machine when the cache has one, else boot it and take that snapshot for the VMs after it.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nfslab/nfslab/lab/cluster/vm"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/snapshot"
	"github.com/nfslab/nfslab/reports"
)

// warmSpec returns the snapshot a VM of cfg is restored from and taken as, ok false when it
// gets none: with --no-snapshot, under KVM (a boot takes seconds there anyway), and for a VM
// with disks, forwarded ports or extra serial ports (the kind form's and the demo's machines:
// their disks' contents and the host's ends are not part of a saved state yet). The key covers
// everything that shapes the booted VM: qemu's whole command line but for the names of this
// boot's files and sockets, and the contents of the kernel and the initramfs (root filesystem,
// modules, the agent binary).
func (r *runner) warmSpec(cfg vm.Config) (snapshot.Spec, bool, error) {
	if r.opts.NoSnapshot || len(cfg.Disks) > 0 || len(cfg.Forwards) > 0 || len(cfg.Ports) > 0 {
		return snapshot.Spec{}, false, nil
	}
	if cfg.Accel == vm.AccelKVM || (cfg.Accel != vm.AccelTCG && vm.KVMUsable()) {
		return snapshot.Spec{}, false, nil
	}
	kernelSum, err := image.FileSHA256(cfg.Kernel)
	if err != nil {
		return snapshot.Spec{}, false, fmt.Errorf("key a snapshot: %w", err)
	}
	initrdSum, err := image.FileSHA256(cfg.Initrd)
	if err != nil {
		return snapshot.Spec{}, false, fmt.Errorf("key a snapshot: %w", err)
	}
	shape := cfg
	shape.Kernel, shape.Initrd, shape.Dir, shape.Name = "KERNEL", "INITRD", "", ""
	return snapshot.Spec{
		Point: snapshot.Booted,
		Inputs: image.Inputs{
			"kernel":  kernelSum,
			"initrd":  initrdSum,
			"machine": strings.Join(vm.Args(shape, vm.AccelTCG, "TAG", "CONSOLE"), " "),
		},
		QEMU: r.qemu,
	}, true, nil
}

// restore starts a VM of cfg from the snapshot of spec when the cache has a usable one; nil
// when it has none or the restore failed (said once per run; a snapshot qemu refused is
// removed, and the cold boot that follows takes it again).
func (r *runner) restore(ctx context.Context, cfg vm.Config, spec snapshot.Spec) (*vm.VM, *reports.Start) {
	snap, ok, err := snapshot.Lookup(r.cache, r.opts.Log, spec)
	if err != nil {
		r.p.say("vm: %v: removed it; booting cold and taking it again", err)
		return nil, nil
	}
	if !ok {
		return nil, nil
	}
	cfg.Accel, cfg.Incoming, cfg.IncomingHello = vm.AccelTCG, snap.State(), snap.Meta.Hello
	machine, err := vm.Boot(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil
		}
		if errors.Is(err, vm.ErrStateRefused) {
			if rerr := snapshot.Remove(r.cache, r.opts.Log, snap); rerr != nil {
				r.opts.Log.Warn("could not remove a refused snapshot", "dir", snap.Dir, "err", rerr)
			}
			r.restoreFailed.Do(func() {
				r.p.say("vm: snapshot %s could not be restored, removed it; booting cold and taking it again (%v)", snap.Name(), err)
			})
		} else {
			r.restoreFailed.Do(func() { r.p.say("vm: snapshot %s could not be restored; booting cold instead (%v)", snap.Name(), err) })
		}
		return nil, nil
	}
	taken := snap.Meta.Taken
	return machine, &reports.Start{
		Mode: reports.StartRestored, Seconds: round3(machine.BootTime.Seconds()),
		Snapshot: snap.Name(), SnapshotTaken: &taken,
	}
}

// takeSnapshot saves the state of machine, booted cold from cfg, as the snapshot of spec, once
// its agent says it is ready for the job. A snapshot that cannot be taken (no room, the agent
// said something else first) is skipped with a line; the VM runs on either way.
func (r *runner) takeSnapshot(ctx context.Context, machine *vm.VM, cfg vm.Config, spec snapshot.Spec, start *reports.Start) {
	ready, err := machine.AwaitReady(ctx)
	if err != nil {
		r.p.say("vm: not taking a snapshot of the booted VM: %v", err)
		return
	}
	if !ready {
		return // the agent said something else first (why it cannot run cells): Next returns it
	}
	t0 := time.Now()
	snap, taken, err := snapshot.Take(ctx, r.cache, r.opts.Log, spec, snapshot.Meta{Hello: machine.Hello, MemoryMB: cfg.MemoryMB}, machine.SaveState)
	if err != nil {
		var full *image.NoSpaceError
		if errors.As(err, &full) {
			r.p.say("vm: not taking a snapshot of the booted VM: %v", err)
		} else {
			r.p.say("vm: could not take a snapshot of the booted VM: %v", err)
		}
		return
	}
	when := snap.Meta.Taken
	start.Snapshot, start.SnapshotTaken = snap.Name(), &when
	if !taken {
		return // another VM took it meanwhile
	}
	r.record(func(res *reports.Result) {
		res.Timings["snapshot_take:"+string(snap.Meta.Point)] = round3(time.Since(t0).Seconds())
	})
	r.p.say("vm: snapshot %s taken in %.1f s (%s); later VMs of this kernel start from it",
		snap.Name(), time.Since(t0).Seconds(), image.FormatSize(snap.Meta.StateBytes))
}
