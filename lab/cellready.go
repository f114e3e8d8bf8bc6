package lab

// This file is the third snapshot point, cell-ready (--cell-snapshots): a cell set up, its
// server serving, the mount made and its baseline I/O done, right before its fault. The
// agent stops each cell there (agent.Job.CellReady); the first run takes a snapshot of the VM
// at each cell's point, and later runs start each cell from its own, running only what comes
// after: the fault, the recovery, the verdict. The state at a cell's point depends on the cells
// that ran before it in the same VM (their leftovers, kube-proxy's switches), so a cell's
// snapshot is keyed by the VM's own snapshot and by those cells and the cell itself. A netns
// VM's snapshot is its memory alone; a kind VM's keeps a copy of its Docker disk's overlay.

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/nfslab/nfslab/lab/agent"
	"github.com/nfslab/nfslab/lab/kernel"
	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/lab/snapshot"
)

// cellSpec is the snapshot of the VM of vmSpec (its booted or cluster-ready point) at the point
// of the last of ran, the cells the VM ran so far.
func cellSpec(vmSpec snapshot.Spec, ran []scenario.Cell) (snapshot.Spec, error) {
	b, err := json.Marshal(ran)
	if err != nil {
		return snapshot.Spec{}, fmt.Errorf("key a cell's snapshot: %w", err)
	}
	inputs := maps.Clone(vmSpec.Inputs)
	inputs["cells"] = string(b)
	return snapshot.Spec{Point: snapshot.CellReady, Inputs: inputs, QEMU: vmSpec.QEMU}, nil
}

// atCellReady is the host's side of a cell's snapshot point: the agent of machine stopped cell
// idx of cells there. Unless the cache has that snapshot, it is taken (the VM is paused while
// its state is saved); then the agent goes on, stopping at the later cells' points too.
func (r *runner) atCellReady(ctx context.Context, machine *bootedVM, cells []scenario.Cell, idx int) error {
	i := slices.IndexFunc(cells, func(c scenario.Cell) bool { return c.Index == idx })
	if i < 0 {
		return fmt.Errorf("the agent stopped at the snapshot point of cell %d, not one of its cells", idx)
	}
	if w := machine.warm; w != nil {
		spec, err := cellSpec(w.plan.spec, cells[:i+1])
		if err != nil {
			return err
		}
		_, ok, err := snapshot.Lookup(r.cache, r.opts.Log, spec)
		if err != nil {
			r.p.say("vm: %v: removed it; taking it again", err)
		}
		if !ok {
			r.takeSnapshot(ctx, machine.VM, w, spec)
		}
	}
	if err := sendJob(machine.VM, agent.Job{Cells: cells[i+1:], CellReady: true}); err != nil {
		return fmt.Errorf("cell %s, at its snapshot point: %w", cells[i].ID, err)
	}
	return nil
}

// runRestoredCells runs cells each in a VM restored from the cell's own snapshot, when the
// cache has one for every cell (ok false, nothing run, otherwise). It returns how many cells
// finished; when a restore fails, the cells from there on are left to a VM started as usual.
func (r *runner) runRestoredCells(ctx context.Context, k kernel.Kernel, initrd, work string, cells []scenario.Cell, setup machineSetup) (done int, ok bool, err error) {
	cfg := r.machineConfig(k, initrd, work, setup)
	plan, warm, err := r.warmPlan(cfg, setup)
	if err != nil || !warm {
		return 0, false, nil
	}
	specs := make([]snapshot.Spec, len(cells))
	for i := range cells {
		if specs[i], err = cellSpec(plan.spec, cells[:i+1]); err != nil {
			return 0, false, nil
		}
		_, found, unusable := snapshot.Lookup(r.cache, r.opts.Log, specs[i])
		if unusable != nil {
			r.p.say("vm: %v: removed it; %s and taking it again", unusable, instead(snapshot.CellReady))
		}
		if !found {
			return 0, false, nil
		}
	}
	r.p.say("kernel %s: each of the %d cell(s) starts from its own snapshot, right before its fault", k.Name, len(cells))
	for i := range cells {
		machine := r.restoreVM(ctx, k, cfg, warmPlan{spec: specs[i]}, work)
		if machine == nil {
			return i, i > 0, nil
		}
		n, err := r.follow(ctx, k, machine, cells[i:i+1], setup, agent.Job{Replay: true})
		machine.release()
		if err != nil || n == 0 {
			return i + n, true, err
		}
	}
	return len(cells), true, nil
}
