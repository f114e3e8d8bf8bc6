package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab/runstate"
)

// TestCleanupCommand: what a dead run left is listed by --dry-run and removed by cleanup, which
// names it; a run without a record is left alone, and says so.
func TestCleanupCommand(t *testing.T) {
	runs, tmp, cache := t.TempDir(), t.TempDir(), t.TempDir()
	t.Setenv("NFSLAB_RUN_DIR", runs)
	t.Setenv("TMPDIR", tmp)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	dead := runstate.Record{ID: runstate.NewID(time.Now()), Command: "run", PID: gone.Process.Pid, Comm: "nfslab", Start: 1, TempDir: tmp, CacheDir: cache}
	b, _ := json.Marshal(dead)
	if err := os.WriteFile(filepath.Join(runs, dead.ID+".json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(tmp, runstate.WorkDirPrefix+dead.ID+"-42")
	unknown := filepath.Join(tmp, runstate.WorkDirPrefix+runstate.NewID(time.Now().Add(time.Hour))+"-1")
	for _, d := range []string{work, unknown} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cleanup := func(args ...string) string {
		var stdout, stderr bytes.Buffer
		if code := run(append([]string{"cleanup", "--cache-dir", cache}, args...), &stdout, &stderr); code != 0 {
			t.Fatalf("nfslab cleanup %v: exit %d\n%s%s", args, code, stdout.String(), stderr.String())
		}
		return stdout.String()
	}
	out := cleanup("--dry-run")
	for _, want := range []string{"would remove work directory " + work + " of run " + dead.ID, "would remove run record of run " + dead.ID, "left alone work directory " + unknown} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(work); err != nil {
		t.Fatalf("the dry run removed %s", work)
	}
	out = cleanup()
	for _, want := range []string{"removed work directory " + work, "removed run record of run " + dead.ID, "left alone work directory " + unknown} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("colours in output that is not a terminal:\n%q", out)
	}
	for p, want := range map[string]bool{work: false, filepath.Join(runs, dead.ID+".json"): false, unknown: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s exists = %v after cleanup, want %v", p, err == nil, want)
		}
	}
	if out := cleanup(); !strings.Contains(out, "nothing to clean up") {
		t.Errorf("a second cleanup:\n%s", out)
	}
}
