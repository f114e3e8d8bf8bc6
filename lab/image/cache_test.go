package image

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestInputsKey(t *testing.T) {
	base := Inputs{"suite": "bookworm", "packages": "a,b", "recipe": "v1"}
	// The key is part of the cache layout: changing how it is computed silently invalidates
	// every user's cache, so it is pinned here.
	const golden = "6ff258085dbece1034c6428ff8a241c4f4103bdac790e9941ab492a6e90fad69"
	tests := []struct {
		name string
		in   Inputs
		same bool
	}{
		{"same inputs built in another order", Inputs{"recipe": "v1", "packages": "a,b", "suite": "bookworm"}, true},
		{"another value", Inputs{"suite": "trixie", "packages": "a,b", "recipe": "v1"}, false},
		{"another package list", Inputs{"suite": "bookworm", "packages": "a,b,c", "recipe": "v1"}, false},
		{"an extra input", Inputs{"suite": "bookworm", "packages": "a,b", "recipe": "v1", "x": ""}, false},
		{"a missing input", Inputs{"suite": "bookworm", "packages": "a,b"}, false},
		{"separator moved between name and value", Inputs{"suite": "bookworm", "packages": "a,b", "recipe=": "v1"}, false},
	}
	k := base.Key()
	if len(k) != 64 {
		t.Fatalf("key %q is not a hex sha256", k)
	}
	if k != golden {
		t.Logf("key of the base inputs is %s (golden %s)", k, golden)
		t.Error("Inputs.Key changed: existing caches would all be rebuilt; update the golden value only on purpose")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.in.Key() == k; got != tt.same {
				t.Errorf("same key = %v, want %v", got, tt.same)
			}
		})
	}
	if Inputs(map[string]string{"a": "b=c"}).Key() == Inputs(map[string]string{"a=b": "c"}).Key() {
		t.Error("ambiguous encoding: a=(b=c) and (a=b)=c collide")
	}
}

func TestDefaultCacheDir(t *testing.T) {
	tests := []struct {
		name, nfslab, xdg, home, want string
	}{
		{"NFSLAB_CACHE wins", "/n", "/x", "/h", "/n"},
		{"then XDG_CACHE_HOME", "", "/x", "/h", "/x/nfslab"},
		{"then HOME", "", "", "/h", "/h/.cache/nfslab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("NFSLAB_CACHE", tt.nfslab)
			t.Setenv("XDG_CACHE_HOME", tt.xdg)
			t.Setenv("HOME", tt.home)
			got, err := DefaultCacheDir()
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestArtefactBuildsOnceAndPublishes(t *testing.T) {
	c := Cache{Dir: t.TempDir()}
	in := Inputs{"x": "1"}
	var builds int
	build := func(ctx context.Context, dir string) error {
		builds++
		return os.WriteFile(filepath.Join(dir, "out"), []byte("ok"), 0o644)
	}
	dir, err := c.Artefact(context.Background(), discard(), "thing", in, build)
	if err != nil {
		t.Fatal(err)
	}
	if want := c.Path("thing", in.Key()); dir != want {
		t.Errorf("dir %s, want %s", dir, want)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "out")); string(b) != "ok" {
		t.Errorf("out = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, InputsFile)); string(b) != "x=1\n" {
		t.Errorf("inputs file = %q", b)
	}
	again, err := c.Artefact(context.Background(), discard(), "thing", in, build)
	if err != nil || again != dir || builds != 1 {
		t.Errorf("second call: %s, %v, %d builds; want the cached dir and 1 build", again, err, builds)
	}
}

// leftovers lists the entries of the kind directory other than published artefacts and lock
// files.
func leftovers(t *testing.T, c Cache, kind string) []string {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(c.Dir, kind))
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestArtefactFailedBuildLeavesNothing(t *testing.T) {
	c := Cache{Dir: t.TempDir()}
	in := Inputs{"x": "1"}
	boom := errors.New("boom")
	_, err := c.Artefact(context.Background(), discard(), "thing", in, func(ctx context.Context, dir string) error {
		os.WriteFile(filepath.Join(dir, "half"), []byte("half"), 0o644)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if _, err := os.Stat(c.Path("thing", in.Key())); !os.IsNotExist(err) {
		t.Error("a failed build was published")
	}
	if l := leftovers(t, c, "thing"); len(l) != 0 {
		t.Errorf("temporary directories left: %v", l)
	}
}

func TestArtefactRemovesInterruptedBuild(t *testing.T) {
	c := Cache{Dir: t.TempDir()}
	in := Inputs{"x": "1"}
	// What a build killed with SIGKILL leaves behind.
	stale := filepath.Join(c.Dir, "thing", "."+in.Key()+".tmp-123")
	if err := os.MkdirAll(filepath.Join(stale, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := c.Artefact(context.Background(), discard(), "thing", in, func(ctx context.Context, dir string) error {
		if _, err := os.Stat(filepath.Join(dir, "sub")); err == nil {
			t.Error("the build reused the interrupted build's directory")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Error("interrupted build directory not removed")
	}
}

func TestArtefactConcurrentBuilders(t *testing.T) {
	c := Cache{Dir: t.TempDir()}
	in := Inputs{"x": "1"}
	var builds atomic.Int32
	build := func(ctx context.Context, dir string) error {
		builds.Add(1)
		time.Sleep(300 * time.Millisecond)
		return os.WriteFile(filepath.Join(dir, "out"), []byte("ok"), 0o644)
	}
	var wg sync.WaitGroup
	dirs := make([]string, 4)
	errs := make([]error, 4)
	for i := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dirs[i], errs[i] = c.Artefact(context.Background(), discard(), "thing", in, build)
		}()
	}
	wg.Wait()
	for i := range dirs {
		if errs[i] != nil || dirs[i] != dirs[0] {
			t.Errorf("builder %d: %s, %v", i, dirs[i], errs[i])
		}
	}
	if n := builds.Load(); n != 1 {
		t.Errorf("%d builds, want 1", n)
	}
}

func TestArtefactLockWaitHonoursContext(t *testing.T) {
	c := Cache{Dir: t.TempDir()}
	in := Inputs{"x": "1"}
	started := make(chan struct{})
	release := make(chan struct{})
	firstDone := make(chan struct{})
	go func() {
		defer close(firstDone)
		c.Artefact(context.Background(), discard(), "thing", in, func(ctx context.Context, dir string) error {
			close(started)
			<-release
			return nil
		})
	}()
	<-started
	// The first builder must have finished (renamed its temporary directory) before
	// t.TempDir's cleanup removes the cache, or the cleanup races its rename.
	defer func() {
		close(release)
		<-firstDone
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := c.Artefact(ctx, discard(), "thing", in, func(ctx context.Context, dir string) error {
		t.Error("second builder ran while the first held the lock")
		return nil
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want deadline exceeded", err)
	}
}

func TestUnescapeMountPath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/plain", "/plain"},
		{`/with\040space`, "/with space"},
		{`/tab\011and\134backslash`, "/tab\tand\\backslash"},
	}
	for _, tt := range tests {
		if got := unescapeMountPath(tt.in); got != tt.want {
			t.Errorf("unescapeMountPath(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRemoveTreeRefusesMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	dir := t.TempDir()
	mnt := filepath.Join(dir, "chroot", "proc")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "none", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	defer exec.Command("umount", mnt).Run()
	if err := RemoveTree(dir); err == nil || !strings.Contains(err.Error(), "umount") {
		t.Errorf("RemoveTree = %v, want a refusal naming the mount", err)
	}
	exec.Command("umount", mnt).Run()
	if err := RemoveTree(dir); err != nil {
		t.Errorf("RemoveTree after umount: %v", err)
	}
}

// TestUnmountBelow: what an interrupted mmdebstrap leaves mounted in its chroot, nested, is
// detached deepest first; dir itself and paths that merely share its prefix are left alone.
func TestUnmountBelow(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "chroot")
	outer, inner, twin := filepath.Join(root, "dev"), filepath.Join(root, "dev", "shm"), filepath.Join(dir, "chroot-twin")
	for _, m := range []string{outer, twin} {
		if err := os.MkdirAll(m, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mount := func(p string) {
		t.Helper()
		if out, err := exec.Command("mount", "-t", "tmpfs", "none", p).CombinedOutput(); err != nil {
			t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
		}
		t.Cleanup(func() { exec.Command("umount", "-l", p).Run() })
	}
	mount(outer)
	if err := os.MkdirAll(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	mount(inner)
	mount(twin)
	if err := UnmountBelow(root); err != nil {
		t.Fatal(err)
	}
	if left, _ := mountsBelow(root); len(left) != 0 {
		t.Errorf("still mounted below %s: %v", root, left)
	}
	if left, _ := mountsBelow(dir); len(left) != 1 || left[0] != twin {
		t.Errorf("mounted below %s: %v, want only %s", dir, left, twin)
	}
}

// TestLockFileSurvivesRemoval removes a lock file while one process holds it and another waits
// (as nfslab cleanup may remove an unused lock): the waiter must then lock the new file, so it
// and a newcomer never hold the lock at the same time.
func TestLockFileSurvivesRemoval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "entry.lock")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	unlockA, err := LockFile(ctx, discard(), path)
	if err != nil {
		t.Fatal(err)
	}
	var holders atomic.Int32
	waiterDone := make(chan func())
	go func() {
		unlock, err := LockFile(ctx, discard(), path)
		if err != nil {
			t.Error(err)
			close(waiterDone)
			return
		}
		holders.Add(1)
		waiterDone <- unlock
	}()
	time.Sleep(300 * time.Millisecond) // the waiter has opened the file and polls it
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	unlockA()
	unlockC, err := LockFile(ctx, discard(), path)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-waiterDone:
		t.Fatal("the waiter got the lock while a newcomer holds the lock file now at its path")
	case <-time.After(600 * time.Millisecond):
	}
	unlockC()
	if unlock := <-waiterDone; unlock != nil {
		unlock()
	}
	if holders.Load() != 1 {
		t.Errorf("the waiter never got the lock")
	}
}

// TestArtefactMarksUse: a cache hit sets the entry's modification time, which `nfslab cache`
// reads as its last use.
func TestArtefactMarksUse(t *testing.T) {
	c := Cache{Dir: t.TempDir()}
	in := Inputs{"x": "1"}
	build := func(_ context.Context, dir string) error { return os.WriteFile(filepath.Join(dir, "f"), nil, 0o644) }
	dir, err := c.Artefact(context.Background(), discard(), "k", in, build)
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	if err := os.Chtimes(dir, old, old); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Artefact(context.Background(), discard(), "k", in, build); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !st.ModTime().After(old.Add(time.Hour)) {
		t.Errorf("after a hit the entry's mtime is %v, still the old %v", st.ModTime(), old)
	}
}

func TestTryLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "e.lock")
	unlock, ok, err := TryLock(path)
	if err != nil || !ok {
		t.Fatalf("TryLock on a free lock: ok=%v err=%v", ok, err)
	}
	if _, ok, err := TryLock(path); err != nil || ok {
		t.Errorf("TryLock on a held lock: ok=%v err=%v, want false, nil", ok, err)
	}
	if !LockHeld(path) {
		t.Error("LockHeld = false while it is held")
	}
	unlock()
	if LockHeld(path) {
		t.Error("LockHeld = true after release")
	}
	missing := filepath.Join(t.TempDir(), "none.lock")
	if LockHeld(missing) {
		t.Error("LockHeld = true for a lock file that does not exist")
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("LockHeld created the lock file")
	}
	unlock2, ok, err := TryLock(path)
	if err != nil || !ok {
		t.Fatalf("TryLock after release: ok=%v err=%v", ok, err)
	}
	unlock2()
	if _, _, err := TryLock(filepath.Join(t.TempDir(), "missing", "e.lock")); err == nil {
		t.Error("TryLock in a directory that does not exist: no error")
	}
}
