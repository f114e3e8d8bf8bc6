package vm

// This file saves a running VM's whole state to a file and starts a VM from one: qemu's own
// migration, to a zstd compressor on the way out (QMP "migrate" to an exec: URI) and from a
// decompressor on the way in (-incoming). The guest does not notice: its memory, CPUs, devices
// and virtual clock continue where they were, and its virtio-serial ports are connected again
// to the new host ends as the restored qemu starts.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// ErrStateRefused marks a restore that qemu refused: the state file is truncated, corrupt or
// does not fit this qemu or machine. The file is of no use; a cold boot is.
var ErrStateRefused = errors.New("qemu refused the saved state")

// SaveState pauses the VM, writes its whole state to path (zstd-compressed) and lets it run on.
// Nothing reaches path unless the whole state was written: the compressor writes a temporary
// file beside it that is renamed when complete. The state refers to the VM's disks as they are
// now: paused, when not nil, runs while the VM is paused with its disks flushed and closed by
// qemu, to keep a copy of those the guest writes (a restore needs them as they were).
func (v *VM) SaveState(ctx context.Context, path string, paused func(ctx context.Context) error) error {
	if _, err := exec.LookPath("zstd"); err != nil {
		return fmt.Errorf("save the VM's state: zstd not found (apt-get install zstd): %w", err)
	}
	tmp := path + ".partial"
	if err := v.qmp.execute(ctx, "stop", nil, nil); err != nil {
		return fmt.Errorf("save the VM's state: pause it: %w", err)
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = v.qmp.execute(context.WithoutCancel(ctx), "cont", nil, nil)
		}
		os.Remove(tmp)
	}()
	// qemu's default bandwidth cap (32 MiB/s) is for live migration over a network; a paused VM
	// into a local compressor has no reason to wait.
	if err := v.qmp.execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": int64(1) << 40}, nil); err != nil {
		return fmt.Errorf("save the VM's state: %w", err)
	}
	uri := "exec:zstd -q -1 -T0 -o " + shellQuote(tmp) + " && mv " + shellQuote(tmp) + " " + shellQuote(path)
	if err := v.qmp.execute(ctx, "migrate", map[string]any{"uri": uri}, nil); err != nil {
		return fmt.Errorf("save the VM's state: %w", err)
	}
	if err := v.awaitMigration(ctx); err != nil {
		return fmt.Errorf("save the VM's state: %w", err)
	}
	// qemu reports completion when it has sent the last byte; the compressor may still be
	// writing. The rename says it is done.
	if err := v.awaitFile(ctx, path); err != nil {
		return fmt.Errorf("save the VM's state: the compressor did not finish %s: %w", path, err)
	}
	if paused != nil {
		if err := paused(ctx); err != nil {
			return fmt.Errorf("save the VM's state: %w", err)
		}
	}
	resumed = true
	if err := v.qmp.execute(ctx, "cont", nil, nil); err != nil {
		return fmt.Errorf("resume the VM after saving its state: %w", err)
	}
	return nil
}

// awaitMigration polls the outgoing migration until it completes or fails.
func (v *VM) awaitMigration(ctx context.Context) error {
	for {
		m, err := v.qmp.migration(ctx)
		if err != nil {
			return err
		}
		switch m.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("migration %s: %s", m.Status, m.ErrorDesc)
		}
		if err := v.pollWait(ctx); err != nil {
			return err
		}
	}
}

// awaitIncoming waits until a VM started with Config.Incoming has loaded its state and runs.
// qemu exits when it cannot load the state.
func (v *VM) awaitIncoming(ctx context.Context) error {
	for {
		st, err := v.qmp.status(ctx)
		if err != nil {
			// qemu that refuses the state exits, and its monitor socket closes a moment before
			// the process is reaped: a monitor error is that exit when one follows soon.
			select {
			case <-v.exited:
				return exitErr(v.waitErr)
			case <-time.After(exitGrace):
				return err
			}
		}
		switch st {
		case "running":
			return nil
		case "paused":
			// The state was saved from a paused VM (SaveState pauses it first), and qemu keeps
			// the run state it was saved in.
			if err := v.qmp.execute(ctx, "cont", nil, nil); err != nil {
				return fmt.Errorf("run the restored VM: %w", err)
			}
			continue
		case "inmigrate", "prelaunch":
		default:
			return fmt.Errorf("after loading its state the VM is %q, not running", st)
		}
		if err := v.pollWait(ctx); err != nil {
			return err
		}
	}
}

// exitGrace is how long a monitor error waits for qemu's exit, which tells a refused state from
// a broken monitor.
const exitGrace = 5 * time.Second

// awaitFile waits until path exists.
func (v *VM) awaitFile(ctx context.Context, path string) error {
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if err := v.pollWait(ctx); err != nil {
			return err
		}
	}
}

// pollWait waits for the next round of a poll of qemu: a short while, unless qemu exits or ctx
// ends first, which it returns as the error.
func (v *VM) pollWait(ctx context.Context) error {
	select {
	case <-v.exited:
		return exitErr(v.waitErr)
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(50 * time.Millisecond):
		return nil
	}
}

// shellQuote quotes s for /bin/sh, which runs qemu's exec: migration commands.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
