package cache

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab/image"
)

var now = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

// put writes a file (and its directories) and sets its mtime and its directory's to at.
func put(t *testing.T, path string, size int, at time.Time) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, make([]byte, size), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, filepath.Dir(path)} {
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
}

// lock holds the lock file at path until the test ends.
func lock(t *testing.T, path string) {
	t.Helper()
	unlock, ok, err := image.TryLock(path)
	if err != nil || !ok {
		t.Fatalf("locking %s: %v %v", path, ok, err)
	}
	t.Cleanup(unlock)
}

func TestList(t *testing.T) {
	dir := t.TempDir()
	day := 24 * time.Hour
	put(t, filepath.Join(dir, "rootfs", "k1", "rootfs.cpio"), 64<<10, now.Add(-10*day))
	put(t, filepath.Join(dir, "rootfs", "k1.lock"), 0, now)
	// The Docker disk is sparse: 1 GiB long, 128 KiB written.
	disk := filepath.Join(dir, "kind-docker-disk", "k2", "docker.img")
	put(t, disk, 128<<10, now.Add(-2*day))
	if err := os.Truncate(disk, 1<<30); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(disk, now.Add(-2*day), now.Add(-2*day))
	put(t, filepath.Join(dir, "kernels", "vulnerable-6.1-k3", "bzImage"), 32<<10, now.Add(-3*day))
	tree := filepath.Join(dir, "kernels", "tree-k4")
	put(t, filepath.Join(tree, "src", "linux", "Makefile"), 16<<10, now.Add(-4*day))
	if err := os.Chtimes(filepath.Join(tree, "src"), now.Add(-4*day), now.Add(-4*day)); err != nil {
		t.Fatal(err)
	}
	put(t, filepath.Join(tree, "pristine"), 10, now.Add(-1*day)) // a build used the tree since
	before := DiskUsage(tree)
	if err := os.Link(filepath.Join(tree, "src", "linux", "Makefile"), filepath.Join(tree, "src", "linux", "Makefile.link")); err != nil {
		t.Fatal(err)
	}
	if after := DiskUsage(tree); after != before {
		t.Errorf("a hard link changed the tree's size on disk from %d to %d: counted twice", before, after)
	}
	put(t, filepath.Join(dir, "kernels", "kbuild-steps-k4.txt"), 5, now.Add(-4*day))
	put(t, filepath.Join(dir, "kernels", ".tree-k5.tmp-123", "x"), 4<<10, now)
	put(t, filepath.Join(dir, "modules", ".k6.tmp-9", "x"), 4<<10, now)
	lock(t, filepath.Join(dir, "modules", "k6.lock"))
	put(t, filepath.Join(dir, "kvm-failed.txt"), 20, now.Add(-30*day))
	put(t, filepath.Join(dir, "photos", "2019", "x.jpg"), 4<<10, now.Add(-300*day))
	if err := os.Chtimes(filepath.Join(dir, "photos"), now.Add(-300*day), now.Add(-300*day)); err != nil {
		t.Fatal(err)
	}

	got, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		kind, build string
		lastUse     time.Time
		prunable    bool
		minSize     int64
		maxSize     int64
	}
	wants := map[string]want{
		"kind-docker-disk/k2":         {"kind-docker-disk", "", now.Add(-2 * day), true, 128 << 10, 1 << 20},
		"kernels/vulnerable-6.1-k3":   {KindKernelBuild, "", now.Add(-3 * day), true, 32 << 10, 1 << 20},
		"kernels/tree-k4":             {KindKernelTree, "", now.Add(-1 * day), true, 16 << 10, 1 << 20},
		"kernels/kbuild-steps-k4.txt": {KindKbuildSteps, "", now.Add(-4 * day), false, 0, 8 << 10},
		"kernels/.tree-k5.tmp-123":    {KindKernelTree, Interrupted, now, false, 4 << 10, 1 << 20},
		"modules/.k6.tmp-9":           {"modules", Building, now, false, 4 << 10, 1 << 20},
		"rootfs/k1":                   {"rootfs", "", now.Add(-10 * day), true, 64 << 10, 1 << 20},
		"photos":                      {KindOther, "", now.Add(-300 * day), false, 4 << 10, 1 << 20},
		"kvm-failed.txt":              {KindKVMMemo, "", now.Add(-30 * day), false, 0, 8 << 10},
	}
	if len(got) != len(wants) {
		t.Errorf("%d entries, want %d: %+v", len(got), len(wants), got)
	}
	for _, e := range got {
		w, ok := wants[e.Name]
		if !ok {
			t.Errorf("unexpected entry %+v", e)
			continue
		}
		if e.Kind != w.kind || e.Build != w.build || !e.LastUse.Equal(w.lastUse) || (len(Candidates([]Entry{e})) == 1) != w.prunable {
			t.Errorf("%s: kind %q build %q last use %v prunable %v; want %q %q %v %v",
				e.Name, e.Kind, e.Build, e.LastUse, len(Candidates([]Entry{e})) == 1, w.kind, w.build, w.lastUse, w.prunable)
		}
		if e.Size < w.minSize || e.Size > w.maxSize {
			t.Errorf("%s: size on disk %d, want between %d and %d", e.Name, e.Size, w.minSize, w.maxSize)
		}
		if w.prunable && e.Lock != filepath.Join(dir, e.Name+".lock") {
			t.Errorf("%s: lock %q", e.Name, e.Lock)
		}
		if strings.HasPrefix(filepath.Base(e.Name), ".") && e.Lock != filepath.Join(dir, filepath.Dir(e.Name), strings.TrimPrefix(strings.SplitN(filepath.Base(e.Name), ".tmp-", 2)[0], ".")+".lock") {
			t.Errorf("%s: a build directory's lock is %q", e.Name, e.Lock)
		}
	}
	if es, err := List(filepath.Join(dir, "none")); err != nil || len(es) != 0 {
		t.Errorf("a cache that does not exist: %v, %v", es, err)
	}
}

// TestArtefactKindsKnown: every kind nfslab's code builds with image.Cache.Artefact is one List
// treats as an artefact kind (else its entries would be listed as "other" and never pruned).
func TestArtefactKindsKnown(t *testing.T) {
	call := regexp.MustCompile(`\.Artefact\(ctx, [^,]+, (\w+|"[^"]+"),`)
	var kinds []string
	consts := map[string]string{}
	constDecl := regexp.MustCompile(`(\w+)\s*=\s*"([^"]+)"`)
	err := filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range call.FindAllStringSubmatch(string(b), -1) {
			kinds = append(kinds, m[1])
		}
		for _, m := range constDecl.FindAllStringSubmatch(string(b), -1) {
			consts[m[1]] = m[2]
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(kinds) < 8 {
		t.Fatalf("found only %d Artefact calls (%v): the pattern no longer matches the code", len(kinds), kinds)
	}
	for _, k := range kinds {
		name, err := strconv.Unquote(k)
		if err != nil {
			name = consts[k]
		}
		if !artefactKind(name) {
			t.Errorf("kind %s (%q) is built by Artefact but not an artefact kind of List", k, name)
		}
	}
}
