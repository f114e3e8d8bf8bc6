package kind

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// CgroupRoot is where the VM's cgroup v2 hierarchy is mounted: kind's nodes and the pods in them
// are cgroups below it, since they all share the VM's kernel.
const CgroupRoot = "/sys/fs/cgroup"

// KillContainer kills every process of the container whose CRI id is id, the way a crash or the
// kernel's OOM killer ends it: nothing is asked of the kubelet or the runtime, which only see it
// die. The container is found as the cgroup named after its id under root (runc names it
// cri-containerd-<id>.scope with the systemd driver, <id> with cgroupfs). The kernel's
// cgroup.kill kills them all at once where it has one (5.14 and later); older kernels get a
// SIGKILL per process. It returns the container's cgroup.
func KillContainer(ctx context.Context, root, id string) (string, error) {
	dir, err := containerCgroup(ctx, root, id)
	if err != nil {
		return "", err
	}
	err = os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	if err == nil {
		return dir, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return dir, fmt.Errorf("kill container %s: %w", id, err)
	}
	procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return dir, fmt.Errorf("kill container %s: %w", id, err)
	}
	for _, f := range strings.Fields(string(procs)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return dir, fmt.Errorf("kill container %s: process %d: %w", id, pid, err)
		}
	}
	return dir, nil
}

// containerCgroup finds the cgroup directory under root whose name carries the container id.
func containerCgroup(ctx context.Context, root, id string) (string, error) {
	if len(id) < 12 || strings.ContainsAny(id, "/.") {
		return "", fmt.Errorf("container id %q: want the runtime's hex id", id)
	}
	var found string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a cgroup removed while walking
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !d.IsDir() {
			return nil
		}
		if name := d.Name(); name == id || strings.HasSuffix(name, "-"+id+".scope") {
			found = path
			return fs.SkipAll
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("find container %s's cgroup under %s: %w", id, root, err)
	}
	if found == "" {
		return "", fmt.Errorf("container %s has no cgroup under %s", id, root)
	}
	return found, nil
}
