package agent

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/nfslab/nfslab/lab/scenario"
)

// The presenter's shell in a demo: bash on a pseudo-terminal in the VM's root namespaces (the
// node, where the mount is), its terminal's bytes relayed over the shell port.

// demoDir holds the demo's files in the VM: the shell's rc file and the nfslab-next socket.
const demoDir = "/run/nfslab-demo"

// nextCommand is the command the presenter types in the shell for the next step.
const nextCommand = "nfslab-next"

// demoShell is the presenter's shell, started at most once.
type demoShell struct {
	port   io.ReadWriter // the shell port
	cell   scenario.Cell
	agent  string // the agent binary, which nfslab-next runs
	log    *slog.Logger
	exited chan struct{} // closed when the shell has ended (or could not start)

	once     sync.Once
	startErr error

	mu   sync.Mutex
	size Demo // the terminal's type and size
	ptmx *os.File
	cmd  *exec.Cmd
}

func newDemoShell(port io.ReadWriter, c scenario.Cell, size Demo, agentBin string, log *slog.Logger) *demoShell {
	return &demoShell{port: port, cell: c, size: size, agent: agentBin, log: log, exited: make(chan struct{})}
}

// start starts the shell the first time it is called and returns why it could not.
func (s *demoShell) start() error {
	s.once.Do(func() {
		s.startErr = s.run()
		if s.startErr != nil {
			close(s.exited)
		}
	})
	return s.startErr
}

func (s *demoShell) run() error {
	if err := mountDevpts(); err != nil {
		return err
	}
	if err := os.MkdirAll(demoDir, 0o755); err != nil {
		return fmt.Errorf("demo shell: %w", err)
	}
	rc := filepath.Join(demoDir, "bashrc")
	if err := os.WriteFile(rc, []byte(bashrc(s.cell)), 0o644); err != nil {
		return fmt.Errorf("demo shell: %w", err)
	}
	next := filepath.Join("/usr/local/bin", nextCommand)
	if err := os.MkdirAll(filepath.Dir(next), 0o755); err != nil {
		return fmt.Errorf("demo shell: %w", err)
	}
	script := fmt.Sprintf("#!/bin/sh\nexec %s %s \"$@\"\n", s.agent, DemoNextCommand)
	if err := os.WriteFile(next, []byte(script), 0o755); err != nil {
		return fmt.Errorf("demo shell: %w", err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command("/bin/bash", "--rcfile", rc, "-i")
	cmd.Dir = "/root"
	cmd.Env = []string{
		"TERM=" + terminfoOr(s.size.Term, "xterm-256color"), "HOME=/root", "USER=root", "LOGNAME=root",
		"SHELL=/bin/bash", "LANG=C.UTF-8", "PATH=" + os.Getenv("PATH"),
	}
	ptmx, err := pty.StartWithSize(cmd, winsize(s.size))
	if err != nil {
		return fmt.Errorf("start the demo shell: %w", err)
	}
	s.ptmx, s.cmd = ptmx, cmd
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		_, _ = io.Copy(s.port, ptmx) // ends with EIO once nothing holds the terminal
	}()
	// The presenter's keys; this ends at the first key after the shell is gone.
	go func() { _, _ = io.Copy(ptmx, s.port) }()
	go func() {
		err := cmd.Wait()
		s.log.Info("demo shell ended", "err", err)
		// The shell's last words are drained; a process of the presenter's that outlives it
		// (one the kernel holds on the hung mount) keeps the terminal open, and is not
		// waited for: stop kills it.
		select {
		case <-drained:
		case <-time.After(time.Second):
		}
		close(s.exited)
	}()
	return nil
}

// resize sets the terminal's size, now or when the shell starts.
func (s *demoShell) resize(rows, cols uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.size.Rows, s.size.Cols = rows, cols
	if s.ptmx != nil {
		if err := pty.Setsize(s.ptmx, winsize(s.size)); err != nil {
			s.log.Warn("resize the demo shell's terminal", "err", err)
		}
	}
}

// stop ends the shell, if it still runs (a hang-up, then a kill), and kills whatever else of
// its session is left, so that nothing of the presenter's holds the mount.
func (s *demoShell) stop() {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	sid := cmd.Process.Pid // bash leads its own session
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGKILL} {
		select {
		case <-s.exited:
		default:
			_ = syscall.Kill(sid, sig)
			select {
			case <-s.exited:
			case <-time.After(2 * time.Second):
			}
		}
	}
	killSession(sid, s.log)
}

// killSession sends SIGKILL to every process of session sid.
func killSession(sid int, log *slog.Logger) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		log.Warn("list processes", "err", err)
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 {
			continue
		}
		if got, err := unix.Getsid(pid); err == nil && got == sid {
			log.Info("killing a process the demo shell left", "pid", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func winsize(d Demo) *pty.Winsize {
	if d.Rows == 0 || d.Cols == 0 {
		return nil
	}
	return &pty.Winsize{Rows: d.Rows, Cols: d.Cols}
}

// mountDevpts mounts the pseudo-terminal file system the shell's terminal lives on.
func mountDevpts() error {
	if err := os.MkdirAll("/dev/pts", 0o755); err != nil {
		return fmt.Errorf("mkdir /dev/pts: %w", err)
	}
	err := unix.Mount("devpts", "/dev/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "ptmxmode=0666,mode=0620")
	if err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount devpts on /dev/pts: %w", err)
	}
	return nil
}

// terminfoOr returns term when the guest has a terminfo entry for it, else fallback.
func terminfoOr(term, fallback string) string {
	if term == "" || strings.ContainsAny(term, "/.") {
		return fallback
	}
	for _, dir := range []string{"/etc/terminfo", "/lib/terminfo", "/usr/lib/terminfo", "/usr/share/terminfo"} {
		if _, err := os.Stat(filepath.Join(dir, term[:1], term)); err == nil {
			return term
		}
	}
	return fallback
}

// bashrc is the shell's rc file: Debian's own, then what the presenter can do here.
func bashrc(c scenario.Cell) string {
	return fmt.Sprintf(`[ -f /etc/bash.bashrc ] && . /etc/bash.bashrc
cat <<'EOF'
nfslab demo: cell %s, a shell on the node
  the mount: %s          try: mount | grep %s; ls %s; ss -tn; dmesg
  next step: %s (or %s on the keyboard): 1) kill backend A  2) bring backend B up
  leave:     exit, Ctrl-D, or %s when a command hangs: tears the lab down
EOF
`, c.ID, mountDir(c), mountType(c), mountDir(c), nextCommand, NextKeyName, LeaveKeyName)
}

// mountType is what `mount` lists the cell's mount as.
func mountType(c scenario.Cell) string {
	if c.Protocol == scenario.ProtocolSMB {
		return "cifs"
	}
	return "nfs"
}
