// Package vm is the VM provider: a qemu machine booting the kernel under test with the lab's
// initramfs, whose PID 1 is the nfslab agent. The host talks to the agent over a virtio-serial
// port (JSON lines both ways); the serial console goes to a log file for people to read and is
// never parsed.
package vm

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nfslab/nfslab/lab/event"
)

// Accelerators.
const (
	AccelAuto = "auto" // KVM when it works, else TCG
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// Config describes one VM.
type Config struct {
	Kernel   string // path to the bzImage
	Initrd   string // path to the initramfs
	Accel    string // AccelAuto, AccelKVM or AccelTCG
	CPUs     int
	MemoryMB int
	Dir      string // private directory for the console log
	// Name is qemu's -name, shown by ps: the run's marker (runstate.QEMUName), so that
	// nfslab cleanup can tell whose VM it is. None when empty.
	Name string
	// BootTimeout bounds the time from starting qemu to the agent's hello.
	BootTimeout time.Duration
	Log         *slog.Logger
	// Ports names more virtio-serial ports besides the agent's (event.PortName); each is a byte
	// stream between the guest and VM.Port(name) on the host.
	Ports []string
	// Disks are raw disk images attached as virtio-blk devices, /dev/vda first, in order.
	Disks []Disk
	// Forwards are guest TCP ports the host reaches on its loopback. With any, the guest gets
	// its only network interface: qemu's user-mode network, restricted so that the guest reaches
	// nothing outside (only the forwards come in). Without, the guest has no network at all.
	Forwards []Forward
	// KVMMemo remembers across runs that KVM failed here: with AccelAuto a boot skips KVM while
	// it says so, and records a failure; a boot with AccelKVM forgets it when KVM works.
	KVMMemo KVMMemo
	// Incoming, when set, starts the VM from the state file SaveState wrote instead of booting
	// it (Restore): every other field must describe the same machine as when it was saved. Its
	// agent does not say hello again; IncomingHello is what it said then.
	Incoming      string
	IncomingHello event.Hello
}

// VM is a running machine with a connected agent.
type VM struct {
	Accel    string // the accelerator that worked
	KVMError error  // with AccelAuto: why KVM was not used (nil when it was, or was not tried)
	// KVMRemembered says that KVMError comes from the memo of an earlier boot: KVM was not tried.
	KVMRemembered bool
	Hello         event.Hello   // what the agent said when it came up
	BootTime      time.Duration // from starting qemu to the agent's hello, or to a restored VM running
	ConsoleLog    string
	Restored      bool // started from a state file (Config.Incoming), not booted

	cmd     *exec.Cmd
	qmp     *qmp // qemu's machine protocol, for SaveState
	conn    net.Conn
	ports   map[string]net.Conn // Config.Ports by name
	lines   *bufio.Scanner
	pending []event.Event // read by AwaitReady, for Next
	exited  chan struct{}
	waitErr error
	once    sync.Once
	log     *slog.Logger
}

// Boot starts the VM and waits for the agent's hello. With AccelAuto it tries KVM first (when
// /dev/kvm is usable and cfg.KVMMemo does not say KVM failed here) and falls back to TCG if KVM
// fails to bring the agent up.
func Boot(ctx context.Context, cfg Config) (*VM, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return nil, fmt.Errorf("qemu-system-x86_64 not found: install it with apt-get install qemu-system-x86: %w", err)
	}
	switch cfg.Accel {
	case AccelTCG:
		return boot(ctx, cfg, AccelTCG)
	case AccelKVM:
		v, err := boot(ctx, cfg, AccelKVM)
		if err == nil {
			if ferr := cfg.KVMMemo.Forget(); ferr != nil {
				cfg.Log.Warn("KVM works again, but its memo stays", "err", ferr)
			}
		}
		return v, err
	case AccelAuto, "":
		return bootAuto(ctx, cfg)
	default:
		return nil, fmt.Errorf("unknown accelerator %q (want auto, kvm or tcg)", cfg.Accel)
	}
}

// bootAuto boots under KVM unless it cannot work here, falling back to TCG.
func bootAuto(ctx context.Context, cfg Config) (*VM, error) {
	if !KVMUsable() {
		return boot(ctx, cfg, AccelTCG)
	}
	if reason, at, failed := cfg.KVMMemo.Failed(); failed {
		v, err := boot(ctx, cfg, AccelTCG)
		if err != nil {
			return nil, err
		}
		v.KVMError = fmt.Errorf("KVM failed on this host on %s: %s", at.Format(time.DateOnly), reason)
		v.KVMRemembered = true
		return v, nil
	}
	kcfg := cfg
	kcfg.BootTimeout = min(cfg.BootTimeout, 30*time.Second)
	v, err := boot(ctx, kcfg, AccelKVM)
	if err == nil {
		return v, nil
	}
	if ctx.Err() != nil {
		return nil, err
	}
	cfg.Log.Debug("KVM did not bring the VM up; falling back to TCG", "err", err)
	v, terr := boot(ctx, cfg, AccelTCG)
	if terr != nil {
		return nil, terr
	}
	// KVM failed where TCG worked: the host's KVM, not the guest, is at fault.
	if rerr := cfg.KVMMemo.Record(err, time.Now()); rerr != nil {
		cfg.Log.Warn("KVM failed; later runs will try it again", "err", rerr)
	}
	v.KVMError = err
	return v, nil
}

// ConsolePath is where a VM booted in dir under accel writes its serial console.
func ConsolePath(dir, accel string) string {
	return filepath.Join(dir, "console-"+accel+".log")
}

// KVMUsable reports whether /dev/kvm can be opened for reading and writing.
func KVMUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// newBootTag returns a tag unique to one boot of one VM on this host.
func newBootTag(accel string) (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("name the VM's sockets: %w", err)
	}
	return fmt.Sprintf("%d-%x-%s", os.Getpid(), b, accel), nil
}

// listen listens on the abstract unix socket name; the returned function closes it.
func listen(name string) (net.Listener, func(), error) {
	ln, err := net.Listen("unix", "@"+name)
	if err != nil {
		return nil, nil, fmt.Errorf("listen on abstract unix socket %s: %w", name, err)
	}
	return ln, func() { ln.Close() }, nil
}

// accept accepts one connection on ln in the background.
func accept(ln net.Listener) <-chan net.Conn {
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			ch <- c
		}
	}()
	return ch
}

func boot(ctx context.Context, cfg Config, accel string) (*VM, error) {
	start := time.Now()
	tag, err := newBootTag(accel)
	if err != nil {
		return nil, err
	}
	console := ConsolePath(cfg.Dir, accel)
	ln, unlisten, err := listen(socketName(tag, "agent"))
	if err != nil {
		return nil, err
	}
	defer unlisten()
	qln, unlistenQMP, err := listen(socketName(tag, "qmp"))
	if err != nil {
		return nil, err
	}
	defer unlistenQMP()
	qmpConn := accept(qln)
	// qemu connects every port's socket as it starts.
	portConns := make(map[string]<-chan net.Conn, len(cfg.Ports))
	for i, name := range cfg.Ports {
		pln, unlisten, err := listen(socketName(tag, fmt.Sprintf("port%d", i)))
		if err != nil {
			return nil, err
		}
		defer unlisten()
		portConns[name] = accept(pln)
	}

	cmd := exec.Command("qemu-system-x86_64", Args(cfg, accel, tag, console)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cfg.Log.Debug("starting qemu", "args", strings.Join(cmd.Args, " "))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start qemu: %w", err)
	}
	v := &VM{Accel: accel, ConsoleLog: console, cmd: cmd, exited: make(chan struct{}), log: cfg.Log, ports: map[string]net.Conn{}}
	go func() {
		v.waitErr = cmd.Wait()
		close(v.exited)
	}()

	bctx, cancel := context.WithTimeout(ctx, cfg.BootTimeout)
	defer cancel()
	fail := func(what string, err error) (*VM, error) {
		v.Close()
		if cfg.Incoming != "" {
			if errors.Is(err, errQEMUExited) {
				err = fmt.Errorf("%w: %w", ErrStateRefused, err)
			}
			return nil, fmt.Errorf("restore VM under %s from %s: %s: %w", accel, cfg.Incoming, what, withStderr(err, stderr.String()))
		}
		return nil, fmt.Errorf("boot VM under %s: %s: %w", accel, what, withStderr(err, stderr.String()))
	}

	select {
	case v.conn = <-accept(ln):
	case <-v.exited:
		return fail("starting", exitErr(v.waitErr))
	case <-bctx.Done():
		return fail("qemu did not connect its agent port", bctx.Err())
	}
	for _, name := range cfg.Ports {
		select {
		case v.ports[name] = <-portConns[name]:
		case <-v.exited:
			return fail("starting", exitErr(v.waitErr))
		case <-bctx.Done():
			return fail("qemu did not connect port "+name, bctx.Err())
		}
	}
	var qc net.Conn
	select {
	case qc = <-qmpConn:
	case <-v.exited:
		return fail("starting", exitErr(v.waitErr))
	case <-bctx.Done():
		return fail("qemu did not connect its monitor", bctx.Err())
	}
	if v.qmp, err = newQMP(bctx, qc); err != nil {
		qc.Close()
		return fail("qemu's monitor", err)
	}
	v.lines = bufio.NewScanner(v.conn)
	v.lines.Buffer(make([]byte, 0, 64<<10), 16<<20)

	if cfg.Incoming != "" {
		if err := v.awaitIncoming(bctx); err != nil {
			return fail("loading the state", err)
		}
		v.Hello, v.Restored = cfg.IncomingHello, true
		v.BootTime = time.Since(start)
		return v, nil
	}
	ev, err := v.Next(bctx)
	if err != nil {
		return fail("waiting for the agent", err)
	}
	if ev.Kind != event.KindHello {
		return fail("waiting for the agent", fmt.Errorf("first event was %q, not hello", ev.Kind))
	}
	v.Hello = *ev.Hello
	v.BootTime = time.Since(start)
	return v, nil
}

// Send writes x to the agent as one JSON line.
func (v *VM) Send(x any) error {
	b, err := json.Marshal(x)
	if err != nil {
		return fmt.Errorf("encode message for the agent: %w", err)
	}
	if _, err := v.conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("send to the agent: %w", err)
	}
	return nil
}

// Next returns the agent's next event. It fails when ctx ends, the VM exits, or a line is not a
// valid event.
func (v *VM) Next(ctx context.Context) (event.Event, error) {
	if len(v.pending) > 0 {
		ev := v.pending[0]
		v.pending = v.pending[1:]
		return ev, nil
	}
	type result struct {
		ev  event.Event
		err error
	}
	ch := make(chan result, 1)
	go func() {
		if !v.lines.Scan() {
			err := v.lines.Err()
			if err == nil {
				err = errors.New("the agent closed the connection")
			}
			ch <- result{err: err}
			return
		}
		ev, err := event.Decode(v.lines.Bytes())
		ch <- result{ev, err}
	}()
	select {
	case r := <-ch:
		return r.ev, r.err
	case <-ctx.Done():
		// Unblock the reader; the VM is not usable after this.
		_ = v.conn.SetReadDeadline(time.Now())
		<-ch
		return event.Event{}, ctx.Err()
	}
}

// AwaitReady reads the agent's next event and reports whether it says the agent is ready for
// its job (event.KindReady); any other event is left for Next.
func (v *VM) AwaitReady(ctx context.Context) (bool, error) {
	ev, err := v.Next(ctx)
	if err != nil {
		return false, err
	}
	if ev.Kind == event.KindReady {
		return true, nil
	}
	v.pending = append(v.pending, ev)
	return false, nil
}

// Port is the host's end of the extra virtio-serial port name (Config.Ports); nil for another
// name. It is closed with the VM.
func (v *VM) Port(name string) net.Conn { return v.ports[name] }

// Exited is closed when qemu has exited.
func (v *VM) Exited() <-chan struct{} { return v.exited }

// WaitExit waits up to d for the VM to power itself off and reports whether it did.
func (v *VM) WaitExit(d time.Duration) bool {
	select {
	case <-v.exited:
		return true
	case <-time.After(d):
		return false
	}
}

// Close kills the VM if it still runs and releases its resources. It is safe to call twice.
func (v *VM) Close() {
	v.once.Do(func() {
		if v.conn != nil {
			v.conn.Close()
		}
		if v.qmp != nil {
			v.qmp.close()
		}
		for _, c := range v.ports {
			c.Close()
		}
		if v.cmd.Process != nil {
			_ = syscall.Kill(-v.cmd.Process.Pid, syscall.SIGKILL)
		}
		<-v.exited
	})
}

// errQEMUExited marks the error of a qemu that exited while the host waited on it.
var errQEMUExited = errors.New("qemu exited")

func exitErr(err error) error {
	if err == nil {
		return fmt.Errorf("%w with status 0", errQEMUExited)
	}
	return fmt.Errorf("%w: %w", errQEMUExited, err)
}

// withStderr adds the last line qemu wrote on its standard error, if any, to err.
func withStderr(err error, stderr string) error {
	if msg := strings.TrimSpace(stderr); msg != "" {
		return fmt.Errorf("%w (qemu: %s)", err, lastLine(msg))
	}
	return err
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
