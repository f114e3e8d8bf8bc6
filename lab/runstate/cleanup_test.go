package runstate

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startMarked starts `sleep` carrying run id in its environment, as a process nfslab started.
func startMarked(t *testing.T, id string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	cmd.Env = append(os.Environ(), EnvVar+"="+id)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
	})
	return cmd
}

// deadPID returns the pid of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func mkdirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "file"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// TestCleanupOnThisHost runs the whole cleanup against the real process table, real processes,
// directories and flock(2) locks: a dead run's process, work directory and record go; a live
// run's (this test process's) stay; so do leftovers of a run without a record and a cache build
// whose lock is held; an unheld build and its lock go.
func TestCleanupOnThisHost(t *testing.T) {
	root := t.TempDir()
	reg := Registry{Dir: filepath.Join(root, "runs")}
	tmp, cache := filepath.Join(root, "tmp"), filepath.Join(root, "cache")
	liveID, deadID, otherID := NewID(time.Now()), NewID(time.Now().Add(-time.Hour)), NewID(time.Now().Add(-2*time.Hour))

	release, err := reg.Register(Record{ID: liveID, Command: "run", TempDir: tmp, CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	writeRecord(t, reg, Record{ID: deadID, Command: "run", PID: deadPID(t), Comm: "nfslab", Start: 1, TempDir: tmp, CacheDir: cache})

	liveProc, deadProc, otherProc := startMarked(t, liveID), startMarked(t, deadID), startMarked(t, otherID)
	liveDir := filepath.Join(tmp, WorkDirPrefix+liveID+"-1")
	deadDir := filepath.Join(tmp, WorkDirPrefix+deadID+"-1")
	otherDir := filepath.Join(tmp, WorkDirPrefix+otherID+"-1")
	oldDir := filepath.Join(tmp, WorkDirPrefix+"1971279426")
	heldBuild := filepath.Join(cache, "rootfs", ".aaaa.tmp-1")
	staleBuild := filepath.Join(cache, "kernels", ".v-bbbb.tmp-2")
	staleLock := filepath.Join(cache, "kernels", "v-bbbb.lock")
	mkdirs(t, liveDir, deadDir, otherDir, oldDir, heldBuild, staleBuild)
	if err := os.WriteFile(staleLock, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	heldLock, err := os.OpenFile(filepath.Join(cache, "rootfs", "aaaa.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer heldLock.Close()
	if err := syscall.Flock(int(heldLock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}

	c := Cleaner{Registry: reg, TempDirs: []string{tmp}}
	snap, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	plan := Decide(snap)
	mine := map[string]bool{liveID: true, deadID: true, otherID: true}
	var removed []string
	for _, it := range plan.Remove {
		// The snapshot saw the whole host: make sure nothing of anyone else is in the plan.
		if it.Kind == KindProcess && !mine[it.RunID] || it.Path != "" && !strings.HasPrefix(it.Path, root) {
			t.Fatalf("the plan would remove something this test did not create: %s", it)
		}
		removed = append(removed, it.String())
	}
	t.Logf("plan: remove %q", removed)
	ctx, cancel := context.WithTimeout(context.Background(), WaitBudget)
	defer cancel()
	for _, r := range c.Apply(ctx, plan) {
		if r.Err != nil {
			t.Errorf("%s: %v", r.Item, r.Err)
		}
	}

	err = deadProc.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Errorf("the dead run's process: %v, want killed by SIGKILL", err)
	}
	for _, p := range []*exec.Cmd{liveProc, otherProc} {
		if err := p.Process.Signal(syscall.Signal(0)); err != nil {
			t.Errorf("process %d (a live run's, or of a run without a record) was killed: %v", p.Process.Pid, err)
		}
	}
	for _, gone := range []string{deadDir, staleBuild, staleLock, reg.path(deadID)} {
		if exists(gone) {
			t.Errorf("%s is still there", gone)
		}
	}
	for _, kept := range []string{liveDir, otherDir, oldDir, heldBuild, reg.path(liveID)} {
		if !exists(kept) {
			t.Errorf("%s was removed", kept)
		}
	}
}
