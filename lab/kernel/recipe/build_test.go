package recipe

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab/image"
)

// TestCachedMarksUse: finding a complete kernel in the cache sets its directory's mtime, which
// `nfslab cache` reads as its last use; an incomplete one is neither used nor marked.
func TestCachedMarksUse(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string
		complete bool
	}{
		{"complete", map[string]string{ReleaseFile: "6.1.0-x\n", BzImageFile: "k", ConfigFile: "c"}, true},
		{"no bzImage", map[string]string{ReleaseFile: "6.1.0-x\n", ConfigFile: "c"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			old := time.Now().Add(-72 * time.Hour).Truncate(time.Second)
			if err := os.Chtimes(dir, old, old); err != nil {
				t.Fatal(err)
			}
			b, ok := cached(slog.New(slog.DiscardHandler), "r", "key", dir)
			if ok != tt.complete {
				t.Fatalf("cached = %+v, %v; want ok %v", b, ok, tt.complete)
			}
			st, err := os.Stat(dir)
			if err != nil {
				t.Fatal(err)
			}
			if marked := st.ModTime().After(old.Add(time.Hour)); marked != tt.complete {
				t.Errorf("mtime %v (was %v): marked %v, want %v", st.ModTime(), old, marked, tt.complete)
			}
		})
	}
}

// TestPrepareTreeChecksFreeSpace: a fresh build tree is refused, before anything is unpacked,
// when its filesystem cannot hold the unpacked source and the build (a sparse 1 TiB "tarball"
// asks for 20 TiB).
func TestPrepareTreeChecksFreeSpace(t *testing.T) {
	dir := t.TempDir()
	tarball := filepath.Join(dir, "linux-source-6.1.tar.xz")
	f, err := os.Create(tarball)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 40); err != nil {
		f.Close()
		t.Skipf("no sparse 1 TiB file here: %v", err)
	}
	f.Close()
	tree := filepath.Join(dir, "kernels", "tree-x")
	b := &builder{r: Recipe{Name: "r", SourcePackage: "linux-source-6.1"}, tarball: tarball, tree: tree, log: slog.New(slog.DiscardHandler)}
	err = b.prepareTree(context.Background())
	var ns *image.NoSpaceError
	if !errors.As(err, &ns) {
		t.Fatalf("prepareTree = %v, want a NoSpaceError", err)
	}
	if _, err := os.Stat(tree); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the tree was created anyway (stat: %v)", err)
	}
}
