package recipe

// This file is the shared build tree. Recipes that differ only in their patch and local version
// (a vulnerable kernel, its control, a partial revert: the same Debian source, base configs and
// config fragment) are built in one source tree kept in the cache. The first build unpacks and
// compiles everything; a later one applies its own patch to the pristine tree, sets its local
// version, and make rebuilds only what changed (the patched files, the few that include the
// release string) and relinks. On 2 cores that is a minute or two instead of a whole compile.
//
// The tree is <cacheDir>/kernels/tree-<stepsKey>/src/<SourcePackage>, guarded by
// tree-<stepsKey>.lock. Its marker file holds the source package's name while the tree holds the
// unpatched source and objects kbuild can trust; a build removes the marker before it changes
// anything and writes it back once it has reverted its patch.
//
// A build that fails or is interrupted after its patch applied keeps the tree too: a cold
// compile cut short by a deadline is most of the work of the next attempt. kbuild records each
// target's command in .<target>.cmd only after the target was made, and remakes a target whose
// record is missing; salvageTree removes the targets that are newer than their record (made,
// or half written, by the interrupted build), reverts the patch and marks the tree. A failure
// before that (a partial unpack, a patch that half applied) deletes the tree.

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nfslab/nfslab/lab/image"
)

// treeMarker is the file in a shared tree's directory that says the tree is pristine.
const treeMarker = "pristine"

// treePrefix starts the name of a shared tree's directory (and its lock) in <cacheDir>/kernels.
const treePrefix = "tree-"

// treeSpaceFactor is the free space a fresh build tree is asked for, in multiples of its xz
// source tarball: an estimate, not a measurement — the source unpacks to about ten times the
// tarball and a build's objects take about as much again.
const treeSpaceFactor = 20

// treeDir is the shared build tree of recipe r built from sourceVersion, under parent.
func treeDir(parent string, r Recipe, sourceVersion string) string {
	return filepath.Join(parent, treePrefix+r.stepsKey(sourceVersion))
}

// treePristine reports whether the shared tree in dir can be reused: its marker names the
// source package and its Makefile is there.
func treePristine(dir, sourcePackage string) bool {
	b, err := os.ReadFile(filepath.Join(dir, treeMarker))
	if err != nil || strings.TrimSpace(string(b)) != sourcePackage {
		return false
	}
	st, err := os.Stat(filepath.Join(dir, "src", sourcePackage, "Makefile"))
	return err == nil && st.Mode().IsRegular()
}

// markTree writes (pristine) or removes (!pristine) the shared tree's marker.
func markTree(dir, sourcePackage string, pristine bool) error {
	p := filepath.Join(dir, treeMarker)
	if !pristine {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("marking the shared build tree in use: %w", err)
		}
		return image.SyncDir(dir)
	}
	if err := os.WriteFile(p, []byte(sourcePackage+"\n"), 0o644); err != nil {
		return fmt.Errorf("marking the shared build tree pristine: %w", err)
	}
	return image.SyncDir(dir)
}

// prepareTree makes the shared tree ready for this build: a pristine tree (b.reused, decided
// under the tree's lock) is taken as it is; anything else is deleted and the source unpacked
// afresh. Either way the marker is removed before the build changes the tree.
func (b *builder) prepareTree(ctx context.Context) error {
	if b.reused {
		b.log.Info("reusing the shared kernel build tree", "recipe", b.r.Name, "tree", b.tree)
		return markTree(b.tree, b.r.SourcePackage, false)
	}
	if err := image.RemoveTree(b.tree); err != nil {
		return fmt.Errorf("removing the shared build tree %s: %w", b.tree, err)
	}
	st, err := os.Stat(b.tarball)
	if err != nil {
		return fmt.Errorf("the kernel source: %w", err)
	}
	if err := image.EnsureFree(b.tree, treeSpaceFactor*st.Size()); err != nil {
		return fmt.Errorf("unpacking and compiling %s: %w", filepath.Base(b.tarball), err)
	}
	if err := os.MkdirAll(b.tree, 0o755); err != nil {
		return fmt.Errorf("creating the shared build tree: %w", err)
	}
	return b.unpack(ctx)
}

// restoreTree reverts the recipe's patch and marks the tree pristine for the next recipe of
// the same source and config. When the patch does not come off cleanly the tree stays
// unmarked, so the next build starts from a fresh unpack.
func (b *builder) restoreTree(ctx context.Context) error {
	if b.patched {
		p := filepath.Join(b.dir, PatchFile)
		if _, err := b.run(ctx, b.srcTree(), nil, "patch", "-p1", "-R", "--batch", "--fuzz=0", "--no-backup-if-mismatch", "-i", p); err != nil {
			return fmt.Errorf("reverting %s in the shared build tree: %w", PatchFile, err)
		}
	}
	return markTree(b.tree, b.r.SourcePackage, true)
}

// salvageTree keeps the shared tree of a build that failed or was cut short, when that can be
// done safely (see the file comment): it returns false when the tree must be deleted instead.
// It runs on its own deadline, since the build's context may be what ended the build.
func (b *builder) salvageTree(ctx context.Context) bool {
	if !b.readyToBuild {
		return false
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	removed, err := removeUnrecorded(ctx, b.srcTree())
	if err != nil {
		b.log.Warn("could not check the interrupted build's targets", "tree", b.tree, "err", err)
		return false
	}
	if err := b.restoreTree(ctx); err != nil {
		b.log.Warn("could not restore the shared build tree after a failed build", "tree", b.tree, "err", err)
		return false
	}
	b.log.Info("kept the shared build tree of a failed build for the next attempt", "tree", b.tree, "targets-removed", removed)
	return true
}

// removeUnrecorded removes, below dir, every file T whose kbuild record .T.cmd sits beside it
// and is older than T: a target an interrupted make was writing, or had remade without yet
// recording it. kbuild remakes a target without a record by itself. It returns how many it removed.
func removeUnrecorded(ctx context.Context, dir string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() || !strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".cmd") {
			return nil
		}
		target := filepath.Join(filepath.Dir(path), strings.TrimSuffix(strings.TrimPrefix(name, "."), ".cmd"))
		rec, err := d.Info()
		if err != nil {
			return err
		}
		t, err := os.Lstat(target)
		if err != nil || !t.Mode().IsRegular() || !t.ModTime().After(rec.ModTime()) {
			return nil
		}
		if err := os.Remove(target); err != nil {
			return fmt.Errorf("removing %s: %w", target, err)
		}
		n++
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("checking the targets of an interrupted build in %s: %w", dir, err)
	}
	return n, nil
}
