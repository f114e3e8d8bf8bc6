package lab

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nfslab/nfslab/lab/agent"
	"github.com/nfslab/nfslab/lab/cluster/kind"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/kernel"
	"github.com/nfslab/nfslab/lab/runstate"
	"github.com/nfslab/nfslab/reports"
)

// The kind form's Docker disk: sparse, so its size is a ceiling (a kind node image and its
// cluster take a few GiB), not what the host spends.
const (
	dockerDiskMiB   = 20 << 10
	dockerDiskLabel = "nfslab-docker"
	// engineTimeout bounds dockerd's start under TCG (its first start initialises the disk).
	engineTimeout = 3 * time.Minute
)

// MachineReport is what CheckKindMachine found.
type MachineReport struct {
	Kernel      string          `json:"kernel"`
	Release     string          `json:"kernel_release"`
	Accel       string          `json:"accel"`
	BootSeconds float64         `json:"boot_seconds"`
	Engine      event.EngineObs `json:"engine"`
	// Seconds is the whole check, from preparing the images to the VM's power-off.
	Seconds float64 `json:"seconds"`
}

// CheckKindMachine boots the named kernel as the kind form's machine — the guest root
// filesystem with Docker, the kind form's modules, a fresh Docker disk — has the agent start the
// Docker engine on that disk, and returns what the engine says about itself. It answers "can the
// kind form run on this kernel": a kernel whose config lacks what Docker, kind or kube-proxy's
// modes need is an *InputError naming each missing feature, before anything boots.
func CheckKindMachine(ctx context.Context, opts Options, kernelName string) (MachineReport, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.RunID == "" {
		opts.RunID = runstate.NewID(time.Now())
	}
	start := time.Now()
	rep := MachineReport{Kernel: kernelName}
	if err := kernel.Preflight(kernelName); err != nil {
		return rep, &InputError{Err: err}
	}
	p := newProgress(opts.Progress, opts.Style)
	r, err := newRunner(ctx, opts, p, &reports.Result{Timings: map[string]float64{}}, kindMachine())
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(r.work)
	work := filepath.Join(r.work, "k0")
	k, initrd, err := r.kernelImage(ctx, work, kernelName)
	if err != nil {
		return rep, err
	}
	disk := filepath.Join(work, "docker.img")
	if err := image.NewExt4Disk(ctx, disk, dockerDiskLabel, dockerDiskMiB); err != nil {
		return rep, labErr("the Docker disk: %w", err)
	}
	machine, release, err := r.boot(ctx, k, initrd, work, []string{disk})
	if err != nil {
		return rep, err
	}
	defer release()
	rep.Release, rep.Accel, rep.BootSeconds = machine.Hello.KernelRelease, machine.Accel, machine.BootTime.Seconds()

	p.say("engine: starting Docker in the VM")
	if err := machine.Send(agent.Job{Engine: &kind.EngineConfig{Disk: "/dev/vda", ReadyTimeout: engineTimeout, CheckContainer: true}}); err != nil {
		return rep, labErr("kernel %s: %w", k.Name, err)
	}
	vctx, cancel := context.WithTimeout(ctx, engineTimeout+time.Minute)
	defer cancel()
	var engineErr string
	for {
		ev, err := machine.Next(vctx)
		if err != nil {
			return rep, labErr("kernel %s: lost the agent while starting Docker: %w; the VM console said:\n%s", k.Name, err, consoleTail(machine.ConsoleLog))
		}
		switch {
		case ev.Engine != nil:
			rep.Engine = *ev.Engine
			p.say("engine: Docker %s up in %.1f s (storage %s on %s, cgroup v%s)", ev.Engine.ServerVersion,
				ev.Engine.ReadySeconds, ev.Engine.Driver, ev.Engine.BackingFS, ev.Engine.CgroupVersion)
			if c := ev.Engine.Container; c != nil {
				p.say("engine: a node-like container ran (image built in %.1f s, run in %.1f s)", c.ImportSeconds, c.RunSeconds)
			}
		case ev.Kind == event.KindError:
			engineErr = ev.Msg
		case ev.Kind == event.KindBye:
			machine.WaitExit(30 * time.Second)
			rep.Seconds = time.Since(start).Seconds()
			if rep.Engine.ServerVersion == "" {
				return rep, labErr("kernel %s: Docker did not start: %s", k.Name, engineErr)
			}
			return rep, nil
		}
	}
}
