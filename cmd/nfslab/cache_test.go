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

// fakeCacheDir makes a cache with an old rootfs and a recent kernel.
func fakeCacheDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, age := range map[string]time.Duration{"rootfs/aaa": 40 * 24 * time.Hour, "kernel/bbb": time.Hour} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(p, "f"), make([]byte, 8192), 0o644); err != nil {
			t.Fatal(err)
		}
		at := time.Now().Add(-age)
		for _, q := range []string{filepath.Join(p, "f"), p} {
			if err := os.Chtimes(q, at, at); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func TestCacheCommand(t *testing.T) {
	t.Setenv("NFSLAB_RUN_DIR", t.TempDir())
	dir := fakeCacheDir(t)
	nfslab := func(want int, args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != want {
			t.Fatalf("nfslab %v: exit %d, want %d\n%s%s", args, code, want, stdout.String(), stderr.String())
		}
		return stdout.String() + stderr.String()
	}
	for _, args := range [][]string{{"cache"}, {"cache", "list"}} {
		out := nfslab(0, append(args, "--cache-dir", dir)...)
		for _, want := range []string{"rootfs", "kernel", "rootfs/aaa", "(40d ago)", "total: 2 entries"} {
			if !strings.Contains(out, want) {
				t.Errorf("nfslab %v: output lacks %q:\n%s", args, want, out)
			}
		}
	}
	var doc struct {
		Format  string `json:"format"`
		Entries []struct {
			Kind string `json:"kind"`
			Size int64  `json:"size"`
		} `json:"entries"`
		Total int64 `json:"total"`
	}
	if err := json.Unmarshal([]byte(nfslab(0, "cache", "list", "-o", "json", "--cache-dir", dir)), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Format != cacheListFormat || len(doc.Entries) != 2 || doc.Total < 16384 {
		t.Errorf("json: %+v", doc)
	}

	for _, bad := range [][]string{
		{"cache", "prune"},
		{"cache", "prune", "--older-than", "a while"},
		{"cache", "prune", "--older-than", "-3d"},
		{"cache", "prune", "--max-size", "20 parsecs"},
		{"cache", "prune", "--max-size", "0"},
		{"cache", "list", "-o", "yaml"},
	} {
		out := nfslab(exitUsage, append(bad, "--cache-dir", dir)...)
		if !strings.Contains(out, "nfslab: ") {
			t.Errorf("nfslab %v: no message: %q", bad, out)
		}
	}

	out := nfslab(0, "cache", "prune", "--older-than", "30d", "--dry-run", "--cache-dir", dir)
	if !strings.Contains(out, "would remove rootfs/aaa: rootfs, ") || strings.Contains(out, "kernel/bbb") {
		t.Errorf("dry run:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "rootfs", "aaa")); err != nil {
		t.Fatalf("the dry run removed rootfs/aaa: %v", err)
	}
	out = nfslab(0, "cache", "prune", "--older-than", "30d", "--cache-dir", dir)
	if !strings.Contains(out, "removed rootfs/aaa: rootfs, ") {
		t.Errorf("prune:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "rootfs", "aaa")); err == nil {
		t.Error("rootfs/aaa is still there")
	}
	if _, err := os.Stat(filepath.Join(dir, "kernel", "bbb")); err != nil {
		t.Errorf("kernel/bbb was removed: %v", err)
	}
}

// TestLiveRunOn: a live run registered on the cache protects what it used since it began; a
// dead one, or one on another cache, does not.
func TestLiveRunOn(t *testing.T) {
	reg := runstate.Registry{Dir: t.TempDir()}
	dir := t.TempDir()
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	dead := runstate.Record{ID: runstate.NewID(time.Now().Add(-time.Hour)), PID: gone.Process.Pid, Comm: "nfslab", Start: 1, Started: time.Now().Add(-time.Hour), CacheDir: dir}
	b, _ := json.Marshal(dead)
	if err := os.WriteFile(filepath.Join(reg.Dir, dead.ID+".json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if since, id := liveRunOn(reg, dir); !since.IsZero() || id != "" {
		t.Errorf("only a dead run: %v %q", since, id)
	}
	started := time.Now().Add(-time.Minute).Truncate(time.Second)
	live := runstate.Record{ID: runstate.NewID(started), Command: "run", Started: started, CacheDir: dir + "/"}
	release, err := reg.Register(live)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if since, id := liveRunOn(reg, dir); !since.Equal(started) || id != live.ID {
		t.Errorf("a live run: %v %q, want %v %q", since, id, started, live.ID)
	}
	if since, _ := liveRunOn(reg, t.TempDir()); !since.IsZero() {
		t.Errorf("a live run on another cache counted: %v", since)
	}
}
