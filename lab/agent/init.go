package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nfslab/nfslab/lab/cluster/kind"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/kernel"
	"github.com/nfslab/nfslab/lab/nfs"
	"github.com/nfslab/nfslab/lab/observe"
	"github.com/nfslab/nfslab/lab/scenario"
)

// CgroupRoot is where the agent mounts the cgroup2 hierarchy inside the VM.
const CgroupRoot = "/sys/fs/cgroup"

// RunInit is the agent's entry point as PID 1 of the VM. It sets up the minimal system, talks to
// the host over the virtio-serial port, runs the job and powers the VM off; it does not return.
func RunInit(ctx context.Context, log *slog.Logger) {
	if err := runInit(ctx, log); err != nil {
		log.Error("agent failed", "err", err)
	}
	powerOff(log)
}

func runInit(ctx context.Context, log *slog.Logger) error {
	// The kernel starts init with almost no environment.
	os.Setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	if err := mountBase(); err != nil {
		return fmt.Errorf("prepare guest: %w", err)
	}
	_ = unix.Sethostname([]byte("nfslab-node"))
	if err := modprobe(ctx, kernel.BootModules()...); err != nil {
		return err
	}
	port, err := openPort(ctx, event.PortName)
	if err != nil {
		return err
	}
	defer port.Close()
	return Serve(ctx, log, port)
}

// Serve says hello on rw, reads the job, runs its cells and says bye.
func Serve(ctx context.Context, log *slog.Logger, rw interface {
	Read([]byte) (int, error)
	Write([]byte) (int, error)
}) error {
	em := newEmitter(rw, log)
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	em.emit(event.Event{Kind: event.KindHello, Cell: -1, Hello: &event.Hello{
		KernelRelease: unix.ByteSliceToString(uts.Release[:]),
		KernelVersion: unix.ByteSliceToString(uts.Version[:]),
		Cgroup2:       CgroupRoot,
		BootMono:      now(),
	}})

	err := modprobe(ctx, kernel.PreloadModules()...)
	if err == nil {
		err = checkFeatures()
	}
	if err != nil {
		em.emit(event.Event{Kind: event.KindError, Msg: err.Error()})
		em.emit(event.Event{Kind: event.KindBye, Msg: "cannot run cells: " + err.Error()})
		return err
	}

	lines := bufio.NewScanner(rw)
	lines.Buffer(make([]byte, 0, 64<<10), 16<<20)
	em.emit(event.Event{Kind: event.KindReady, Cell: -1})
	job, err := readJob(lines)
	if err != nil {
		em.emit(event.Event{Kind: event.KindError, Msg: err.Error()})
		return err
	}
	em.emit(event.Event{Kind: event.KindObserve, Cell: -1, Sync: syncWithHost(job, sysClock{})})

	kctx, stopKmsg := context.WithCancel(ctx)
	defer stopKmsg()
	go followKernelLog(kctx, em)

	if job.Engine != nil {
		stop, err := startEngine(ctx, log, em, *job.Engine)
		if err != nil {
			em.emit(event.Event{Kind: event.KindError, Msg: err.Error()})
			em.emit(event.Event{Kind: event.KindBye, Msg: "cannot run cells: " + err.Error()})
			return err
		}
		defer stop()
	}

	if job.Demo != nil {
		return serveDemo(ctx, log, em, job, lines)
	}

	var session *kindSession
	if job.Kind != nil {
		session = &kindSession{cfg: *job.Kind, ciliums: job.Cilium, log: log, em: em, keep: job.Keep}
		defer session.close()
	}
	if job.Keep {
		if session == nil {
			err = errors.New("--keep needs the kind form's machine")
		} else if err = modprobe(ctx, "virtio_net"); err == nil {
			err = upGuestNet()
		}
		if err != nil {
			em.emit(event.Event{Kind: event.KindError, Msg: err.Error()})
			em.emit(event.Event{Kind: event.KindBye, Msg: "cannot keep the cluster: " + err.Error()})
			return err
		}
	}
	if job.Prepare != nil {
		next, err := prepareCluster(ctx, em, session, *job.Prepare, lines)
		if err != nil {
			em.emit(event.Event{Kind: event.KindError, Msg: err.Error()})
			em.emit(event.Event{Kind: event.KindBye, Msg: "cannot run cells: " + err.Error()})
			return err
		}
		job.Cells, job.CellReady = next.Cells, next.CellReady
	}
	cells, pausing := job.Cells, job.CellReady
	for i := 0; i < len(cells); i++ {
		c := cells[i]
		p, err := cellParts(ctx, c, em, session)
		if err != nil {
			em.beginCell(c.Index)
			em.fail(event.StepTopology, err)
			em.emit(event.Event{Kind: event.KindCellDone, Verdict: &event.VerdictRecord{Verdict: "failed", Reason: "setup: " + err.Error()}})
			em.endCell()
			continue
		}
		run := newCellRun(c, em, log.With("cell", c.ID), p)
		if pausing {
			run.pause = func() error {
				next, err := pauseForHost(em, lines)
				if err != nil {
					return err
				}
				cells, pausing = append(cells[:i+1:i+1], next.Cells...), next.CellReady
				return nil
			}
		}
		tainted := run.run(ctx)
		if tainted {
			em.emit(event.Event{Kind: event.KindBye, Msg: fmt.Sprintf("cell %s's teardown failed or left I/O stuck in the kernel; the remaining cells need a fresh VM", c.ID)})
			return nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	if job.Keep && ctx.Err() == nil {
		if err := serveKept(ctx, em, session, lines); err != nil {
			em.emit(event.Event{Kind: event.KindError, Msg: err.Error()})
		}
	}
	em.emit(event.Event{Kind: event.KindBye, Msg: "job done"})
	return em.err
}

// prepareCluster creates the session's kind cluster as p says (with real Cilium when it names an
// install) and warms it up (kind.WarmUp), says the machine is ready (the host may save its
// state here: snapshot.ClusterReady) and reads the job that follows, the cells', which it
// returns.
func prepareCluster(ctx context.Context, em *emitter, session *kindSession, p Prepare, lines *bufio.Scanner) (Job, error) {
	if session == nil {
		return Job{}, errors.New("prepare a kind cluster: the job has no kind cluster settings")
	}
	w := clusterWant{mode: p.ProxyMode, nodes: p.Nodes}
	if p.Cilium != "" {
		if w.cilium = session.install(p.Cilium); w.cilium == nil {
			return Job{}, fmt.Errorf("prepare a kind cluster: no Cilium install %s in the job", p.Cilium)
		}
	}
	kc, err := session.cluster(ctx, w)
	if err != nil {
		return Job{}, err
	}
	t0 := time.Now()
	say := func(line string) { em.emit(event.Event{Kind: event.KindProgress, Cell: -1, Msg: "kind: " + line}) }
	if err := kc.WarmUp(ctx, session.cfg.GaneshaImage, nfs.DefaultNFSPort, say); err != nil {
		return Job{}, err
	}
	em.emit(event.Event{Kind: event.KindProgress, Cell: -1, Msg: fmt.Sprintf("kind: cluster warmed up in %.1f s (kube-proxy ready, the NFS server's image started once)", time.Since(t0).Seconds())})
	em.emit(event.Event{Kind: event.KindReady, Cell: -1})
	next, err := readJob(lines)
	if err != nil {
		return Job{}, err
	}
	em.emit(event.Event{Kind: event.KindObserve, Cell: -1, Sync: syncWithHost(next, sysClock{})})
	if len(next.Cilium) > 0 {
		// Restored, the session holds the installs of the job it was snapshotted with; the
		// run's own decide the clusters created after this one (this one's is in the
		// snapshot's key).
		session.ciliums = next.Cilium
	}
	return next, nil
}

// pauseForHost holds the current cell at its snapshot point (snapshot.CellReady): it says so,
// sends nothing more while the host may save the VM's state, and reads the job that says how
// to go on (Job.CellReady). The guest's clock skew is measured and its generator reseeded
// again: a VM restored here must not draw the numbers of the one saved.
func pauseForHost(em *emitter, lines *bufio.Scanner) (Job, error) {
	em.hold(event.Event{Kind: event.KindReady})
	next, err := readJob(lines)
	em.release(err == nil && next.Replay)
	if err != nil {
		return Job{}, fmt.Errorf("wait for the host at the cell's snapshot point: %w", err)
	}
	em.emitRun(event.Event{Kind: event.KindObserve, Sync: syncWithHost(next, sysClock{})})
	return next, nil
}

// cellParts wires the cell's form: the netns form, or the kind form on the session's cluster.
func cellParts(ctx context.Context, c scenario.Cell, em *emitter, session *kindSession) (parts, error) {
	if c.Cluster != scenario.ClusterKind {
		return netnsParts(c, em)
	}
	if session == nil {
		return parts{}, errors.New("a kind cell in a VM without the kind form's machine (no Docker engine)")
	}
	return kindParts(ctx, c, em, session)
}

// startEngine loads what Docker needs, starts it on the job's disk and reports what it says
// about itself; the returned function stops it.
func startEngine(ctx context.Context, log *slog.Logger, em *emitter, cfg kind.EngineConfig) (func(), error) {
	if err := modprobe(ctx, kernel.KindPreloadModules()...); err != nil {
		return nil, err
	}
	eng, info, err := kind.StartEngine(ctx, log, cfg)
	if err != nil {
		return nil, err
	}
	em.emit(event.Event{Kind: event.KindObserve, Cell: -1, Engine: &info})
	if cfg.CheckCluster != nil {
		say := func(line string) {
			if line = strings.TrimSpace(line); line != "" {
				em.emit(event.Event{Kind: event.KindProgress, Cell: -1, Msg: "kind: " + line})
			}
		}
		obs := kind.CheckCluster(ctx, log, *cfg.CheckCluster, say)
		em.emit(event.Event{Kind: event.KindObserve, Cell: -1, Cluster: &obs})
	}
	return func() { eng.Stop(context.WithoutCancel(ctx)) }, nil
}

// checkFeatures verifies what the kernel must offer at run time, for kernels whose config the
// host could not check (a bzImage given without its .config).
func checkFeatures() error {
	var missing []string
	fs, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return fmt.Errorf("read /proc/filesystems: %w", err)
	}
	if !strings.Contains(string(fs), "\tnfs4\n") {
		missing = append(missing, "the NFSv4 client (nfs4 filesystem; CONFIG_NFS_V4)")
	}
	if !strings.Contains(string(fs), "\tcgroup2\n") {
		missing = append(missing, "cgroup2 (CONFIG_CGROUPS)")
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		missing = append(missing, "network namespaces (CONFIG_NET_NS)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("this kernel lacks what the lab needs: %s", strings.Join(missing, "; "))
	}
	return nil
}

// readJob reads the job, the host's first line.
func readJob(sc *bufio.Scanner) (Job, error) {
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return Job{}, fmt.Errorf("read job from host: %w", err)
		}
		return Job{}, errors.New("read job from host: the host closed the port")
	}
	var job Job
	if err := json.Unmarshal(sc.Bytes(), &job); err != nil {
		return Job{}, fmt.Errorf("decode job from host: %w", err)
	}
	return job, nil
}

// followKernelLog streams NFS/SUNRPC kernel log lines as observations until ctx ends.
func followKernelLog(ctx context.Context, em *emitter) {
	// From the end: boot messages are not evidence of any cell.
	err := observe.FollowKmsg(ctx, observe.KmsgPath, true, observe.NFSRelevant, func(msg string) {
		em.emit(event.Event{Kind: event.KindObserve, Kernel: &event.KernelLogObs{Line: msg}})
	})
	if err != nil && ctx.Err() == nil {
		em.emit(event.Event{Kind: event.KindError, Msg: fmt.Sprintf("follow the kernel log: %v", err)})
	}
}

func mountBase() error {
	mounts := []struct{ src, dst, fstype, data string }{
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
		{"devtmpfs", "/dev", "devtmpfs", ""},
		{"tmpfs", "/run", "tmpfs", "mode=0755"},
		{"tmpfs", "/tmp", "tmpfs", "mode=1777"},
		{"cgroup2", CgroupRoot, "cgroup2", ""},
		{"bpf", "/sys/fs/bpf", "bpf", ""},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", m.dst, err)
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, 0, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dst, err)
		}
	}
	for _, d := range []string{"/run/netns", "/run/ganesha", "/var/lib/nfs/ganesha"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", d, err)
		}
	}
	// `ip netns` needs /run/netns to be a shared mount point.
	if err := unix.Mount("tmpfs", "/run/netns", "tmpfs", 0, ""); err != nil {
		return fmt.Errorf("mount /run/netns: %w", err)
	}
	if err := unix.Mount("", "/run/netns", "", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make /run/netns shared: %w", err)
	}
	if err := setLoopbackUp(); err != nil {
		return err
	}
	return nil
}

// modprobe loads modules. A kernel without a modules tree (one built with what the lab needs
// built in) needs none, and the features are checked afterwards either way.
func modprobe(ctx context.Context, modules ...string) error {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	if _, err := os.Stat(filepath.Join("/usr/lib/modules", unix.ByteSliceToString(uts.Release[:]))); err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	args := append([]string{"-a"}, modules...)
	out, err := exec.CommandContext(ctx, "modprobe", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("load kernel modules %s: %w: %s", strings.Join(modules, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// openPort finds the virtio-serial port with the given name and opens it.
func openPort(ctx context.Context, name string) (*os.File, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err != nil || strings.TrimSpace(string(b)) != name {
				continue
			}
			dev := "/dev/" + filepath.Base(filepath.Dir(n))
			f, err := os.OpenFile(dev, os.O_RDWR, 0)
			if err != nil {
				return nil, fmt.Errorf("open virtio port %s (%s): %w", name, dev, err)
			}
			return f, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("find virtio port %s: not present (is virtio_console loaded and the qemu -device virtserialport given?)", name)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// powerOff flushes filesystems and powers the VM off through sysrq; as PID 1 the agent must not
// simply exit (that would panic the kernel).
func powerOff(log *slog.Logger) {
	unix.Sync()
	if err := os.WriteFile("/proc/sysrq-trigger", []byte("o"), 0); err != nil {
		log.Error("power off", "err", err)
		_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	}
	time.Sleep(10 * time.Second)
}

func setLoopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	return nil
}
