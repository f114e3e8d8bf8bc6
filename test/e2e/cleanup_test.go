package e2e

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nfslab/nfslab/reports"
)

// runIDLine is the first line of `nfslab run`: "nfslab: run <id>: scenario …".
var runIDLine = regexp.MustCompile(`^nfslab: run ([0-9]{8}-[0-9]{6}-[0-9a-f]{6}): `)

// hostEnv is the environment of an nfslab process whose temp files and run records go under
// private directories, so that the test sees only its own runs' leftovers.
func hostEnv(tmp, runs string) []string {
	return append(os.Environ(), "TMPDIR="+tmp, "NFSLAB_RUN_DIR="+runs)
}

func withCache(args ...string) []string {
	if *cacheDir != "" {
		args = append(args, "--cache-dir", *cacheDir)
	}
	return args
}

// startRun starts `nfslab run` with args and returns it with a channel of its output lines
// (closed when the output ends); every line is also logged.
func startRun(t *testing.T, bin string, env []string, args ...string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(bin, withCache(append([]string{"run"}, args...)...)...)
	cmd.Env = env
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			t.Logf("[%d] %s", cmd.Process.Pid, sc.Text())
			lines <- sc.Text()
		}
	}()
	return cmd, lines
}

// markedProcesses lists the live processes whose command line carries run id's qemu name.
func markedProcesses(id string) []string {
	var found []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if strings.Contains(string(b), "nfslab-"+id+"-") {
			found = append(found, filepath.Base(filepath.Dir(p)))
		}
	}
	return found
}

// TestCleanupAfterKill kills `nfslab run` with SIGKILL once its VM has booted (nothing of the run
// gets a chance to clean up), checks that it left its work directory and run record, then runs
// `nfslab cleanup`: a dry run lists them and removes nothing, the real one removes them and
// names each.
func TestCleanupAfterKill(t *testing.T) {
	requireE2E(t)
	bin := buildNfslab(t)
	tmp, runs := t.TempDir(), t.TempDir()
	env := hostEnv(tmp, runs)
	cmd, lines := startRun(t, bin, env, "--report-dir", t.TempDir())
	var id string
	booted := false
	deadline := time.After(10 * time.Minute)
	for !booted {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("nfslab exited before its VM booted: %v", cmd.Wait())
			}
			if m := runIDLine.FindStringSubmatch(l); m != nil {
				id = m[1]
			}
			// Booted cold, or restored from a snapshot an earlier test took.
			booted = strings.Contains(l, "vm: booted") || strings.Contains(l, " restored from snapshot ")
		case <-deadline:
			cmd.Process.Kill()
			t.Fatal("the VM did not boot within 10 minutes")
		}
	}
	if id == "" {
		t.Fatal("nfslab run did not print its run ID")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	for range lines {
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("nfslab run: %v, want killed by SIGKILL", err)
	}

	workDirs, _ := filepath.Glob(filepath.Join(tmp, "nfslab-run-"+id+"-*"))
	record := filepath.Join(runs, id+".json")
	if len(workDirs) != 1 {
		t.Fatalf("work directories of run %s after SIGKILL: %v, want one", id, workDirs)
	}
	if _, err := os.Stat(record); err != nil {
		t.Fatalf("the run's record after SIGKILL: %v", err)
	}
	// qemu is started with a parent-death signal, so it normally dies with nfslab; whatever
	// still runs must be removed by cleanup.
	time.Sleep(time.Second)
	procs := markedProcesses(id)
	t.Logf("left by the killed run: %s, %s, processes %v", workDirs[0], record, procs)

	cleanup := func(args ...string) string {
		c := exec.Command(bin, append([]string{"cleanup"}, withCache(args...)...)...)
		c.Env = env
		out, err := c.CombinedOutput()
		t.Logf("nfslab cleanup %s:\n%s", strings.Join(args, " "), out)
		if err != nil {
			t.Fatalf("nfslab cleanup %s: %v", strings.Join(args, " "), err)
		}
		return string(out)
	}
	dry := cleanup("--dry-run")
	for _, want := range []string{"would remove work directory " + workDirs[0] + " of run " + id, "would remove run record of run " + id} {
		if !strings.Contains(dry, want) {
			t.Errorf("dry run output lacks %q", want)
		}
	}
	if _, err := os.Stat(workDirs[0]); err != nil {
		t.Errorf("the dry run removed %s: %v", workDirs[0], err)
	}

	out := cleanup()
	wants := []string{"removed work directory " + workDirs[0] + " of run " + id, "removed run record of run " + id}
	for _, pid := range procs {
		wants = append(wants, "removed process "+pid+" (")
	}
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("cleanup output lacks %q", want)
		}
	}
	for _, p := range []string{workDirs[0], record} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is still there after cleanup", p)
		}
	}
	if left := markedProcesses(id); len(left) > 0 {
		t.Errorf("processes of run %s still running after cleanup: %v", id, left)
	}
	if again := cleanup(); strings.Contains(again, "removed ") && strings.Contains(again, id) {
		t.Errorf("a second cleanup found more of run %s", id)
	}
}

// TestTwoRunsAtOnce runs the default scenario twice at the same time on this machine, sharing
// the temp directory, the run registry and the cache: both must pass with their own run IDs and
// report directories, and leave nothing behind. A third run asking for a report directory that
// one of them writes to is refused.
func TestTwoRunsAtOnce(t *testing.T) {
	requireE2E(t)
	bin := buildNfslab(t)
	tmp, runs := t.TempDir(), t.TempDir()
	env := hostEnv(tmp, runs)
	dirs := []string{filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		ids  []string
		errs = make([]error, len(dirs))
	)
	firstStarted := make(chan struct{}) // the first run has registered and writes to dirs[0]
	for i, dir := range dirs {
		cmd, lines := startRun(t, bin, env, "--report-dir", dir)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l := range lines {
				if m := runIDLine.FindStringSubmatch(l); m != nil {
					mu.Lock()
					ids = append(ids, m[1])
					mu.Unlock()
					if i == 0 {
						close(firstStarted)
					}
				}
			}
			errs[i] = cmd.Wait()
		}()
	}
	select {
	case <-firstStarted:
	case <-time.After(5 * time.Minute):
		t.Fatal("the first run did not start")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	third := exec.CommandContext(ctx, bin, withCache("run", "--report-dir", dirs[0])...)
	third.Env = env
	out, err := third.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "in use by nfslab run") {
		t.Errorf("a third run into %s: %v, %s; want exit 2, in use", dirs[0], err, out)
	}
	wg.Wait()

	for i, dir := range dirs {
		if errs[i] != nil {
			t.Errorf("run %d: %v, want exit 0", i, errs[i])
			continue
		}
		res, err := reports.ReadJSON(filepath.Join(dir, "result.json"))
		if err != nil {
			t.Error(err)
			continue
		}
		if !res.Pass || len(res.Cells) != 2 {
			t.Errorf("run %d: pass=%v with %d cells, want pass with 2", i, res.Pass, len(res.Cells))
		}
		for _, c := range res.Cells {
			checkVerdict(t, c)
		}
	}
	if len(ids) != 2 || ids[0] == ids[1] {
		t.Errorf("run IDs %v, want two different ones", ids)
	}
	if left := leftovers(t, tmp); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	if recs, _ := filepath.Glob(filepath.Join(runs, "*.json")); len(recs) > 0 {
		t.Errorf("run records left behind: %v", recs)
	}
}
