package agent

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"

	"github.com/nfslab/nfslab/lab/nfs"
)

// PodExecCommand is the hidden subcommand that starts a pod's process. `ip netns exec` has
// already given it the pod's network namespace and a private copy of the node's mount
// namespace; PodExecMain removes the node's NFS and SMB mounts from that copy (a pod does not see
// them) and execs the program. Without this, nfs-ganesha's VFS backend scans every mount at
// start-up, blocks in an RPC on the node's NFS mount (served by nobody while the backend is
// replaced, or by itself), and then cannot be killed.
const PodExecCommand = "agent-pod-exec"

// PodExecMain is the body of PodExecCommand: args are the program and its arguments.
func PodExecMain(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: %s PROGRAM [ARG…]", PodExecCommand)
	}
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return fmt.Errorf("pod sandbox: %w", err)
	}
	entries, err := nfs.ParseMounts(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("pod sandbox: %w", err)
	}
	slices.Reverse(entries) // innermost first
	for _, m := range entries {
		if !strings.HasPrefix(m.FSType, "nfs") && m.FSType != "cifs" && m.FSType != "smb3" {
			continue
		}
		// MNT_DETACH does no I/O on the mount, so a dead server cannot block this.
		if err := syscall.Unmount(m.Target, syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("pod sandbox: hide %s: %w", m.Target, err)
		}
	}
	prog, err := exec.LookPath(args[0])
	if err != nil {
		return fmt.Errorf("pod sandbox: %w", err)
	}
	return syscall.Exec(prog, args, os.Environ())
}
