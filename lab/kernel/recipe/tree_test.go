package recipe

import (
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
