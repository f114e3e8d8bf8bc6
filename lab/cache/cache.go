// Package cache lists and prunes nfslab's artefact cache (image.DefaultCacheDir): what
// `nfslab cache` shows and removes.
//
// The cache holds, per kind, one directory per key, each built in a temporary directory beside
// it and renamed into place under a lock file beside it (image.Cache.Artefact):
//
//	<kind>/<key>/                     rootfs, kernel, modules, sources, k8s-binaries, kind-node,
//	                                  kind-ganesha, kind-user-node, kind-docker-disk, cilium-chart,
//	                                  cilium-binaries, cilium-bpftool, cilium-user-images;
//	                                  apt/<archive>
//	<kind>/<key>.lock                 taken by the builder (image.LockFile)
//	<kind>/.<key>.tmp-<random>/       a build in progress, or an interrupted one
//	kernels/<recipe>-<key>/           a kernel built from a recipe (recipe.Build)
//	kernels/tree-<key>/               a shared kernel build tree (the largest entries)
//	kernels/kbuild-steps-<key>.txt    a build's step count, for progress lines
//	snapshots/<key>/                  the saved state of a VM at a point (lab/snapshot): ~130 MiB
//	                                  booted, ~2 GiB cluster-ready (4.6 with Cilium), cell-ready
//	                                  115 MiB netns and 0.8-1.9 GiB kind; a cell-ready one taken
//	                                  in a restored VM needs its cluster-ready parent (pruning that
//	                                  makes it unusable: the next run says so, removes it and takes
//	                                  it again)
//	kvm-failed.txt                    the memo that KVM does not work on this host
//
// An entry's last use is its modification time, or a newer one of the files directly in it:
// image.MarkUsed sets it on every cache hit (Artefact, recipe.Build, the apt lists), a build
// sets it when it publishes, and a shared tree's marker changes whenever a build uses it.
package cache

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/nfslab/nfslab/lab/cluster/vm"
	"github.com/nfslab/nfslab/lab/snapshot"
)

// Kinds of entry besides the artefact kinds, which are named after their directory.
const (
	KindKernelBuild = "kernel-build" // kernels/<recipe>-<key>
	KindKernelTree  = "kernel-tree"  // kernels/tree-<key>
	KindKbuildSteps = "kbuild-steps" // kernels/kbuild-steps-<key>.txt
	KindKVMMemo     = "kvm-memo"     // kvm-failed.txt
	KindOther       = "other"        // a file nfslab does not know; listed, never removed
)

// kernelsDir is where recipe.Build keeps kernels and their shared trees.
const kernelsDir = "kernels"

// artefactKind reports whether name is a directory of the cache whose entries nfslab builds:
// a kind passed to image.Cache.Artefact, debian.Open's apt states, or kernelsDir. Anything else
// in the cache directory is listed as KindOther and never pruned, so a cache directory set by
// mistake to one holding other files loses none of them.
func artefactKind(name string) bool {
	switch name {
	case "rootfs", "kernel", "modules", "sources", "apt", "k8s-binaries", "kind-node",
		"kind-ganesha", "kind-user-node", "kind-docker-disk", "cilium-chart", "cilium-binaries", "cilium-bpftool", "cilium-user-images", snapshot.Dir, kernelsDir:
		return true
	}
	return false
}

// Entry is one thing in the cache.
type Entry struct {
	Kind string `json:"kind"`
	// Name is the entry's path relative to the cache directory, e.g. rootfs/<key>.
	Name string `json:"name"`
	Path string `json:"path"`
	// Size is the space it takes on disk (allocated blocks: the Docker disk is sparse).
	Size    int64     `json:"size"`
	LastUse time.Time `json:"last_use"`
	// Lock is the lock file its builders take; "" when it has none.
	Lock string `json:"lock,omitempty"`
	// Build is set for a temporary build directory: "building" while its lock is held,
	// "interrupted" otherwise (nfslab cleanup removes those). Prune never removes them.
	Build string `json:"build,omitempty"`
	// Keep says why prune never removes the entry ("" when it may).
	Keep string `json:"keep,omitempty"`
	// About says more of what the entry is, where its name does not: a snapshot's point, and
	// the snapshot it builds on (snapshot.About).
	About string `json:"about,omitempty"`
}

// Build states of a temporary build directory.
const (
	Building    = "building"
	Interrupted = "interrupted"
)

// List returns every entry of the cache in dir, sorted by name. A cache that does not exist
// is empty.
func List(dir string) ([]Entry, error) {
	top, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the cache %s: %w", dir, err)
	}
	var out []Entry
	for _, d := range top {
		p := filepath.Join(dir, d.Name())
		switch {
		case d.IsDir() && !artefactKind(d.Name()):
			out = append(out, dirEntry(dir, p, KindOther, "", "not an nfslab artefact"))
		case d.IsDir():
			es, err := listKind(dir, d.Name())
			if err != nil {
				return nil, err
			}
			out = append(out, es...)
		case d.Name() == vm.KVMMemoFile:
			out = append(out, fileEntry(dir, p, KindKVMMemo, "a note about this host's KVM, not an artefact"))
		default:
			out = append(out, fileEntry(dir, p, KindOther, "not an nfslab artefact"))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// listKind lists the entries in <dir>/<kind>/.
func listKind(dir, kind string) ([]Entry, error) {
	parent := filepath.Join(dir, kind)
	items, err := os.ReadDir(parent)
	if err != nil {
		return nil, fmt.Errorf("listing the cache %s: %w", parent, err)
	}
	var out []Entry
	for _, it := range items {
		name, p := it.Name(), filepath.Join(parent, it.Name())
		if !it.IsDir() {
			switch {
			case strings.HasSuffix(name, ".lock"):
				// Part of its entry (or a leftover for nfslab cleanup); nothing to list.
			case kind == kernelsDir && strings.HasPrefix(name, "kbuild-steps-"):
				out = append(out, fileEntry(dir, p, KindKbuildSteps, "a few bytes of build progress"))
			default:
				out = append(out, fileEntry(dir, p, KindOther, "not an nfslab artefact"))
			}
			continue
		}
		base := name
		build := ""
		if rest, ok := strings.CutPrefix(name, "."); ok {
			i := strings.LastIndex(rest, ".tmp-")
			if i <= 0 {
				out = append(out, dirEntry(dir, p, KindOther, "", "not an nfslab artefact"))
				continue
			}
			base = rest[:i]
			build = Interrupted
		}
		k := kind
		if kind == kernelsDir {
			k = KindKernelBuild
			if strings.HasPrefix(base, "tree-") {
				k = KindKernelTree
			}
		}
		e := dirEntry(dir, p, k, filepath.Join(parent, base+".lock"), "")
		if kind == snapshot.Dir && build == "" {
			e.About = snapshot.About(p)
		}
		if build != "" {
			e.Build = build
			if held(e.Lock) {
				e.Build = Building
			}
			e.Keep = "a build directory (nfslab cleanup removes interrupted ones)"
		}
		out = append(out, e)
	}
	return out, nil
}

func fileEntry(dir, p, kind, keep string) Entry {
	e := Entry{Kind: kind, Name: rel(dir, p), Path: p, Keep: keep}
	if st, err := os.Lstat(p); err == nil {
		e.Size = allocated(st)
		e.LastUse = st.ModTime()
	}
	return e
}

func dirEntry(dir, p, kind, lock, keep string) Entry {
	return Entry{Kind: kind, Name: rel(dir, p), Path: p, Size: DiskUsage(p), LastUse: LastUse(p), Lock: lock, Keep: keep}
}

func rel(dir, p string) string {
	r, err := filepath.Rel(dir, p)
	if err != nil {
		return p
	}
	return r
}

// LastUse is the last use of the entry at p: its modification time, or a newer one of the
// files directly in it.
func LastUse(p string) time.Time {
	st, err := os.Lstat(p)
	if err != nil {
		return time.Time{}
	}
	last := st.ModTime()
	if !st.IsDir() {
		return last
	}
	items, _ := os.ReadDir(p)
	for _, it := range items {
		if info, err := it.Info(); err == nil && info.ModTime().After(last) {
			last = info.ModTime()
		}
	}
	return last
}

// DiskUsage is the space the tree at p takes on disk: the blocks allocated to it, each inode
// counted once, without following symbolic links or entering other filesystems (a build
// interrupted with /proc mounted in its chroot). What cannot be read is not counted.
func DiskUsage(p string) int64 {
	root, err := os.Lstat(p)
	if err != nil {
		return 0
	}
	dev := devOf(root)
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	var total int64
	_ = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if d.IsDir() && uint64(st.Dev) != dev {
			return fs.SkipDir
		}
		if st.Nlink > 1 && !d.IsDir() {
			k := inode{uint64(st.Dev), st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		total += allocated(info)
		return nil
	})
	return total
}

func allocated(info fs.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return info.Size()
}

func devOf(info fs.FileInfo) uint64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev)
	}
	return 0
}

// Total is the space the entries take.
func Total(entries []Entry) int64 {
	var n int64
	for _, e := range entries {
		n += e.Size
	}
	return n
}
