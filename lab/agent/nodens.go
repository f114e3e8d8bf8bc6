package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nfslab/nfslab/lab/nfs"
)

// NodeNSCommand is the hidden subcommand that mounts or unmounts in a kind node's network and
// mount namespaces: the NFS client's transport belongs to the network namespace of whoever
// mounts (so kube-proxy's rules in the node apply to it), and the mount to the node's mount
// namespace (so `mount` in the node shows it). A child process does it, so that a mount that
// hangs is abandoned with the child, never the agent.
const NodeNSCommand = "agent-node-ns"

// NodeNSMain is the body of NodeNSCommand:
//
//	PID mount SOURCE TARGET FSTYPE DATA
//	PID umount TARGET
func NodeNSMain(args []string) error {
	usage := fmt.Errorf("usage: %s PID mount SOURCE TARGET FSTYPE DATA | PID umount TARGET", NodeNSCommand)
	if len(args) < 3 {
		return usage
	}
	pid, err := strconv.Atoi(args[0])
	if err != nil || pid <= 0 {
		return usage
	}
	// The thread enters the node's namespaces and is never handed back to the runtime: it dies
	// with the process.
	runtime.LockOSThread()
	if err := enterNode(pid); err != nil {
		return err
	}
	switch {
	case args[1] == "mount" && len(args) == 6:
		if err := os.MkdirAll(args[3], 0o755); err != nil {
			return fmt.Errorf("in the node: %w", err)
		}
		if err := unix.Mount(args[2], args[3], args[4], 0, args[5]); err != nil {
			var errno unix.Errno
			if errors.As(err, &errno) {
				return &MountError{Errno: errno}
			}
			return fmt.Errorf("in the node: mount: %w", err)
		}
		return nil
	case args[1] == "umount" && len(args) == 3:
		return nfs.UnmountNow(args[2])
	}
	return usage
}

// MountError is a mount(2) failure in the node, carried from the child by its exit status.
type MountError struct{ Errno unix.Errno }

func (e *MountError) Error() string { return e.Errno.Error() }
func (e *MountError) Unwrap() error { return e.Errno }

// enterNode moves the calling (locked) thread into process pid's network and mount namespaces.
func enterNode(pid int) error {
	// setns(CLONE_NEWNS) refuses a thread that shares its filesystem context with others.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare the filesystem context: %w", err)
	}
	for _, ns := range []struct {
		name string
		kind int
	}{{"net", unix.CLONE_NEWNET}, {"mnt", unix.CLONE_NEWNS}} {
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, ns.name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open the node's %s namespace: %w", ns.name, err)
		}
		err = unix.Setns(fd, ns.kind)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("enter the node's %s namespace: %w", ns.name, err)
		}
	}
	return nil
}

// inNode runs NodeNSCommand with args for the node of process pid and waits for it, or for ctx
// (the child is then killed; a syscall stuck in the kernel stays behind with it). A mount(2)
// failure comes back as a *MountError (its errno is the child's exit status).
func inNode(ctx context.Context, pid int, args ...string) error {
	cmd := exec.CommandContext(ctx, "/proc/self/exe", append([]string{NodeNSCommand, strconv.Itoa(pid)}, args...)...)
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s in the node: abandoned, the syscall may still be blocked in the kernel: %w", args[0], ctx.Err())
	}
	msg := strings.TrimSpace(stderr.String())
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() > mountErrnoBase {
		return &MountError{Errno: unix.Errno(ee.ExitCode() - mountErrnoBase)}
	}
	return fmt.Errorf("%s in the node: %w: %s", args[0], err, msg)
}

// mountErrnoBase offsets a mount errno in the child's exit status, above the status of a plain
// failure (1).
const mountErrnoBase = 100

// NodeNSExitCode is the exit status the CLI gives NodeNSMain's error.
func NodeNSExitCode(err error) int {
	var me *MountError
	if errors.As(err, &me) && int(me.Errno) < 256-mountErrnoBase {
		return mountErrnoBase + int(me.Errno)
	}
	return 1
}
