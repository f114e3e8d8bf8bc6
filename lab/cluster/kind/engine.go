// Package kind is the kind form of the lab: a Docker engine inside the VM of the kernel under
// test, whose containers are kind's nodes (they share that kernel, so the NFS client the cells
// exercise is the kernel under test's).
//
// This file is the guest side's first part: the Docker engine the agent starts on the
// machine's Docker disk. lab/machine.go and lab/nodedisk.go are the host side that sets such a
// machine up.
package kind

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nfslab/nfslab/lab/event"
)

// Where the engine keeps its state and talks, inside the guest.
const (
	// DataRoot is Docker's data directory, the mount point of the Docker disk.
	DataRoot = "/var/lib/docker"
	// Socket is dockerd's API socket.
	Socket = "/run/docker.sock"
	// engineLog is where dockerd (and the containerd it starts) write their logs.
	engineLog = "/run/dockerd.log"
	// cgroupControllers lists the controllers of the cgroup2 root the agent mounted.
	cgroupControllers = "/sys/fs/cgroup/cgroup.controllers"
)

// EngineConfig says where the engine's disk is.
type EngineConfig struct {
	// Disk is the block device holding an ext4 filesystem for DataRoot, e.g. /dev/vda.
	Disk string `json:"disk"`
	// ReadyTimeout bounds the time from starting dockerd to its API answering.
	ReadyTimeout time.Duration `json:"ready_timeout_ns"`
	// Load are block devices holding docker-archives (a node image) that StartEngine loads
	// into the engine once it answers.
	Load []string `json:"load,omitempty"`
	// CheckContainer makes StartEngine also run a node-like container (RunNodeLikeContainer).
	CheckContainer bool `json:"check_container,omitempty"`
	// CheckCluster, when set, makes the agent create a kind cluster on the engine and delete it
	// again (CheckCluster).
	CheckCluster *ClusterConfig `json:"check_cluster,omitempty"`
}

// Engine is a running dockerd.
type Engine struct {
	cmd    *exec.Cmd
	exited chan struct{}
	log    *slog.Logger
}

// StartEngine mounts the Docker disk on DataRoot and starts dockerd on it, then waits until its
// API answers and returns what it says about itself. The guest's root is an initramfs, from
// which no process can pivot_root: DOCKER_RAMDISK makes runc move the container's root into
// place instead (containers inside kind's nodes pivot as usual).
func StartEngine(ctx context.Context, log *slog.Logger, cfg EngineConfig) (*Engine, event.EngineObs, error) {
	filesystems, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return nil, event.EngineObs{}, fmt.Errorf("start Docker: %w", err)
	}
	controllers, err := os.ReadFile(cgroupControllers)
	if err != nil {
		return nil, event.EngineObs{}, fmt.Errorf("start Docker: %w", err)
	}
	if err := checkKernel(string(filesystems), string(controllers)); err != nil {
		return nil, event.EngineObs{}, err
	}
	if err := os.MkdirAll(DataRoot, 0o711); err != nil {
		return nil, event.EngineObs{}, fmt.Errorf("start Docker: %w", err)
	}
	if err := unix.Mount(cfg.Disk, DataRoot, "ext4", 0, ""); err != nil {
		return nil, event.EngineObs{}, fmt.Errorf("start Docker: mount its disk %s on %s: %w", cfg.Disk, DataRoot, err)
	}
	logf, err := os.OpenFile(engineLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		unmountData(log)
		return nil, event.EngineObs{}, fmt.Errorf("start Docker: %w", err)
	}
	defer logf.Close()
	start := time.Now()
	cmd := exec.Command("dockerd",
		"--host", "unix://"+Socket, "--data-root", DataRoot, "--storage-driver", "overlay2",
		"--log-level", "warn")
	cmd.Env = append(os.Environ(), "DOCKER_RAMDISK=true")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		unmountData(log)
		return nil, event.EngineObs{}, fmt.Errorf("start dockerd: %w", err)
	}
	e := &Engine{cmd: cmd, exited: make(chan struct{}), log: log}
	go func() { _ = cmd.Wait(); close(e.exited) }()

	info, err := e.waitReady(ctx, cfg.ReadyTimeout)
	if err != nil {
		e.Stop(context.Background())
		return nil, event.EngineObs{}, fmt.Errorf("start Docker: %w (its log: %s)", err, lastLines(engineLog, 5))
	}
	info.ReadySeconds = time.Since(start).Seconds()
	for _, dev := range cfg.Load {
		l, err := loadArchive(ctx, dev)
		if err != nil {
			e.Stop(context.Background())
			return nil, event.EngineObs{}, fmt.Errorf("start Docker: %w", err)
		}
		info.Loaded = append(info.Loaded, l)
	}
	out, err := Docker(ctx, "images", "--format", "{{.Repository}}:{{.Tag}}")
	if err != nil {
		e.Stop(context.Background())
		return nil, event.EngineObs{}, fmt.Errorf("start Docker: %w", err)
	}
	info.Images = strings.Fields(string(out))
	if cfg.CheckContainer {
		c, err := RunNodeLikeContainer(ctx)
		if err != nil {
			e.Stop(context.Background())
			return nil, event.EngineObs{}, fmt.Errorf("start Docker: %w (its log: %s)", err, lastLines(engineLog, 5))
		}
		info.Container = &c
	}
	return e, info, nil
}

// waitReady polls `docker info` until it answers, dockerd exits or the timeout passes.
func (e *Engine) waitReady(ctx context.Context, timeout time.Duration) (event.EngineObs, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		info, err := Info(ctx)
		if err == nil {
			return info, nil
		}
		last = err
		select {
		case <-e.exited:
			return event.EngineObs{}, errors.New("dockerd exited")
		case <-ctx.Done():
			return event.EngineObs{}, fmt.Errorf("dockerd did not answer within %s: %w", timeout, last)
		case <-tick.C:
		}
	}
}

// loadArchive loads the docker-archive on the block device dev into the engine.
func loadArchive(ctx context.Context, dev string) (event.LoadedObs, error) {
	start := time.Now()
	out, err := Docker(ctx, "load", "--input", dev)
	if err != nil {
		return event.LoadedObs{}, fmt.Errorf("load the images on %s: %w", dev, err)
	}
	l := event.LoadedObs{Source: dev, Images: loadedImages(string(out)), Seconds: time.Since(start).Seconds()}
	if len(l.Images) == 0 {
		return l, fmt.Errorf("load the images on %s: docker load named none: %q", dev, strings.TrimSpace(string(out)))
	}
	return l, nil
}

// loadedImages reads the image names `docker load` reports ("Loaded image: NAME").
func loadedImages(out string) []string {
	var imgs []string
	for _, line := range strings.Split(out, "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "Loaded image: "); ok {
			imgs = append(imgs, name)
		}
	}
	return imgs
}

// Info asks the engine about itself.
func Info(ctx context.Context) (event.EngineObs, error) {
	out, err := Docker(ctx, "info", "--format", "{{json .}}")
	if err != nil {
		return event.EngineObs{}, err
	}
	return parseInfo(out)
}

// parseInfo reads the fields of event.EngineObs from `docker info --format '{{json .}}'`.
func parseInfo(out []byte) (event.EngineObs, error) {
	var raw struct {
		ServerVersion string
		Driver        string
		DriverStatus  [][2]string
		CgroupVersion string
		CgroupDriver  string
		KernelVersion string
		Warnings      []string
		ServerErrors  []string
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		return event.EngineObs{}, fmt.Errorf("read docker info: %w", err)
	}
	if len(raw.ServerErrors) > 0 {
		return event.EngineObs{}, fmt.Errorf("docker info: %s", strings.Join(raw.ServerErrors, "; "))
	}
	if raw.ServerVersion == "" {
		return event.EngineObs{}, errors.New("docker info: no server version (is dockerd up?)")
	}
	info := event.EngineObs{
		ServerVersion: raw.ServerVersion, Driver: raw.Driver, CgroupVersion: raw.CgroupVersion,
		CgroupDriver: raw.CgroupDriver, KernelVersion: raw.KernelVersion, Warnings: raw.Warnings,
	}
	for _, kv := range raw.DriverStatus {
		if kv[0] == "Backing Filesystem" {
			info.BackingFS = kv[1]
		}
	}
	return info, nil
}

// Docker runs the docker CLI against the engine and returns its standard output; a failure
// carries its standard error.
func Docker(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "docker", append([]string{"--host", "unix://" + Socket}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Stop stops dockerd (SIGTERM, then SIGKILL to its process group when ctx ends or 30 s pass)
// and unmounts the Docker disk, so that its filesystem is clean for the next boot.
func (e *Engine) Stop(ctx context.Context) {
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	select {
	case <-e.exited:
	case <-ctx.Done():
		e.log.Warn("dockerd did not stop in time; killing it", "pid", e.cmd.Process.Pid)
		_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
		<-e.exited
	}
	// containerd (started by dockerd, in its process group) may still hold the disk for a moment.
	_ = syscall.Kill(-e.cmd.Process.Pid, syscall.SIGKILL)
	unmountData(e.log)
}

// unmountData unmounts DataRoot, lazily when something still holds it.
func unmountData(log *slog.Logger) {
	if err := unix.Unmount(DataRoot, 0); err != nil {
		log.Warn("unmount the Docker disk", "err", err)
		_ = unix.Unmount(DataRoot, unix.MNT_DETACH)
	}
}

// lastLines returns the last n lines of the file at path, joined by " | ", for an error message.
func lastLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return lastOf(string(b), n)
}

// checkKernel verifies, in the guest, what Docker and kind's nodes need of the running kernel
// (for a kernel whose config the host could not read, e.g. a bare bzImage): overlayfs and ext4,
// and the cgroup v2 controllers containers are limited with. Every missing piece is named.
func checkKernel(filesystems, controllers string) error {
	var missing []string
	for _, fs := range []struct{ name, what string }{
		{"overlay", "overlayfs (CONFIG_OVERLAY_FS)"},
		{"ext4", "ext4 for the Docker disk (CONFIG_EXT4_FS)"},
	} {
		if !strings.Contains(filesystems, "\t"+fs.name+"\n") {
			missing = append(missing, fs.what)
		}
	}
	have := map[string]bool{}
	for _, c := range strings.Fields(controllers) {
		have[c] = true
	}
	for _, c := range []struct{ name, what string }{
		{"memory", "the memory cgroup controller (CONFIG_MEMCG)"},
		{"pids", "the pids cgroup controller (CONFIG_CGROUP_PIDS)"},
		{"cpuset", "the cpuset cgroup controller (CONFIG_CPUSETS)"},
		{"cpu", "the cpu cgroup controller (CONFIG_CGROUP_SCHED)"},
	} {
		if !have[c.name] {
			missing = append(missing, c.what)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("this kernel lacks what the kind form needs: %s", strings.Join(missing, "; "))
	}
	return nil
}
