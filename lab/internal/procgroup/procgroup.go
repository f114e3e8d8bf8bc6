// Package procgroup runs a command in a process group of its own, so that cancelling its
// context reaches the whole tree it starts (make and its compilers, mmdebstrap and its apt and
// dpkg, go build and its compiles), not the leader alone.
package procgroup

import (
	"context"
	"os/exec"
	"syscall"
	"time"
)

// Command is exec.CommandContext in a new process group: on cancellation sig goes to the whole
// group (SIGINT or SIGTERM as a terminal's ^C or a shutdown would, SIGKILL to stop it at once);
// if the command has not returned waitDelay later, the leader is killed and its output pipes
// are closed.
func Command(ctx context.Context, sig syscall.Signal, waitDelay time.Duration, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, sig) }
	cmd.WaitDelay = waitDelay
	return cmd
}
