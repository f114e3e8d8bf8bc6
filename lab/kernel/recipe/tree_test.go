package recipe

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestSharedTrees pins which shipped recipes share a build tree: a kernel and its control (and
// the partial revert) are built from one tree, so the second costs a relink, not a compile; a
// different kernel line never shares one.
func TestSharedTrees(t *testing.T) {
	tree := func(name string) string {
		t.Helper()
		r, err := Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		return treeDir("/cache/kernels", r, "1.0") // the same source version for all
	}
	for _, group := range [][]string{
		{"vulnerable-6.1", "control-6.1", "partial-6.1", "namelen-6.1"},
		{"vulnerable-6.12", "control-6.12"},
		{"vulnerable-5.10", "control-5.10"},
	} {
		for _, name := range group[1:] {
			if got, want := tree(name), tree(group[0]); got != want {
				t.Errorf("%s builds in %s, %s in %s: want one tree", name, got, group[0], want)
			}
		}
	}
	for _, pair := range [][2]string{{"vulnerable-6.1", "vulnerable-6.12"}, {"control-6.1", "control-5.10"}, {"vulnerable-6.12", "vulnerable-5.10"}} {
		if tree(pair[0]) == tree(pair[1]) {
			t.Errorf("%s and %s share a tree", pair[0], pair[1])
		}
	}
}

// TestTreeLifecycle runs the shared tree's steps on a tiny source tarball: a first build
// unpacks, applies its patch and leaves the tree pristine (patch reverted, marker written); a
// second recipe reuses it as it is (its objects survive); a tree whose marker is missing (a
// build died in it) is unpacked afresh.
func TestTreeLifecycle(t *testing.T) {
	for _, c := range []string{"tar", "xz", "patch"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("%s not installed", c)
		}
	}
	const pkg = "linux-source-9.9"
	work := t.TempDir()
	src := filepath.Join(work, pkg)
	original := "int kernel_connect(void) { return copy(); }\n"
	writeFile(t, filepath.Join(src, "Makefile"), "all:\n")
	writeFile(t, filepath.Join(src, "net", "socket.c"), original)
	tarball := filepath.Join(work, pkg+".tar.xz")
	if out, err := exec.CommandContext(t.Context(), "tar", "-cJf", tarball, "-C", work, pkg).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	patch := "--- a/net/socket.c\n+++ b/net/socket.c\n@@ -1 +1 @@\n-int kernel_connect(void) { return copy(); }\n+int kernel_connect(void) { return direct(); }\n"

	parent := filepath.Join(work, "kernels")
	tree := filepath.Join(parent, "tree-x")
	newBuilder := func(name, patch string) *builder {
		dir := filepath.Join(parent, "."+name+".tmp")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return &builder{
			r:       Recipe{Name: name, SourcePackage: pkg, Patch: []byte(patch)},
			tarball: tarball, dir: dir, tree: tree, reused: treePristine(tree, pkg),
			log: slog.New(slog.DiscardHandler), st: newStatus(name, time.Now(), 0),
		}
	}
	socket := filepath.Join(tree, "src", pkg, "net", "socket.c")
	object := filepath.Join(tree, "src", pkg, "net", "socket.o")

	first := newBuilder("vulnerable", patch)
	if first.reused {
		t.Fatal("an empty cache reported a pristine tree")
	}
	if err := first.prepareTree(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := first.applyPatch(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, socket); got == original {
		t.Fatal("the patch did not change net/socket.c")
	}
	if treePristine(tree, pkg) {
		t.Fatal("a patched tree is marked pristine")
	}
	writeFile(t, object, "compiled") // what make leaves behind
	if err := first.restoreTree(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, socket); got != original {
		t.Fatalf("after restoreTree net/socket.c = %q, want the original", got)
	}
	if !treePristine(tree, pkg) {
		t.Fatal("a restored tree is not marked pristine")
	}

	second := newBuilder("control", "")
	if !second.reused {
		t.Fatal("a pristine tree was not taken for reuse")
	}
	if err := second.prepareTree(t.Context()); err != nil {
		t.Fatal(err)
	}
	if readFile(t, object) != "compiled" {
		t.Fatal("reusing the tree lost its objects")
	}
	if treePristine(tree, pkg) {
		t.Fatal("a tree in use is still marked pristine")
	}

	// The second build dies here: its tree stays unmarked, and the next one starts afresh.
	third := newBuilder("partial", patch)
	if third.reused {
		t.Fatal("a tree left by a build that did not finish was taken for reuse")
	}
	if err := third.prepareTree(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(object); !os.IsNotExist(err) {
		t.Fatalf("a tree of unknown state was not unpacked afresh (stat object: %v)", err)
	}
	if readFile(t, socket) != original {
		t.Fatal("a fresh unpack does not hold the original source")
	}

	// The third build applies its patch, then is cut short while compiling: its tree is kept,
	// with the half-written target removed and the patch reverted, even with its context gone.
	if err := third.applyPatch(t.Context()); err != nil {
		t.Fatal(err)
	}
	record := filepath.Join(tree, "src", pkg, "net", ".socket.o.cmd")
	writeFile(t, record, "savedcmd_net/socket.o := gcc ...")
	past := time.Now().Add(-time.Minute)
	if err := os.Chtimes(record, past, past); err != nil {
		t.Fatal(err)
	}
	writeFile(t, object, "half")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if !third.salvageTree(ctx) {
		t.Fatal("a tree cut short while compiling was not kept")
	}
	if !treePristine(tree, pkg) || readFile(t, socket) != original {
		t.Fatal("a kept tree is not pristine: marker or patch")
	}
	if _, err := os.Stat(object); !os.IsNotExist(err) {
		t.Fatalf("the half-written target survived (stat: %v)", err)
	}

	// A build whose patch did not apply is never kept.
	broken := newBuilder("broken", "--- a/net/socket.c\n+++ b/net/socket.c\n@@ -1 +1 @@\n-no such line\n+x\n")
	if err := broken.prepareTree(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := broken.applyPatch(t.Context()); err == nil {
		t.Fatal("a patch that does not fit applied")
	}
	if broken.salvageTree(t.Context()) {
		t.Fatal("a tree whose patch failed was kept")
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRemoveUnrecorded pins which targets an interrupted build's tree loses: those newer than
// kbuild's record of them (half written, or remade and not yet recorded), nothing else.
func TestRemoveUnrecorded(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-time.Hour)
	files := []struct {
		name    string
		mtime   time.Time
		removed bool
	}{
		{"net/.socket.o.cmd", old, false},
		{"net/socket.o", time.Now(), true}, // newer than its record: cut short while writing
		{"fs/.inode.o.cmd", time.Now(), false},
		{"fs/inode.o", old, false},        // recorded after it was made
		{"fs/super.o", time.Now(), false}, // no record: kbuild remakes it by itself
		{"fs/.gone.o.cmd", old, false},    // a record without its target
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		writeFile(t, p, "x")
		if err := os.Chtimes(p, f.mtime, f.mtime); err != nil {
			t.Fatal(err)
		}
	}
	n, err := removeUnrecorded(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("removed %d targets, want 1", n)
	}
	for _, f := range files {
		_, err := os.Stat(filepath.Join(dir, f.name))
		if gone := os.IsNotExist(err); gone != f.removed {
			t.Errorf("%s: removed %v, want %v", f.name, gone, f.removed)
		}
	}
}
