// Package image builds and caches what a nfslab VM boots from: the Debian root filesystem as a
// newc cpio archive, the agent archive, and the initrd assembled from them.
//
// Every artefact lives in the Cache under <kind>/<key>, where key is a sha256 of all the inputs
// it was built from. A build happens in a temporary directory next to its final place and is
// renamed into place only when complete, under an flock(2) per key, so an interrupted build is
// never reused and concurrent builders of the same key wait for each other instead of
// corrupting each other.
// Every hit sets the entry's modification time (MarkUsed): lab/cache lists and prunes by it.
package image

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Cache is a directory of built artefacts. The zero value is not usable: Dir must be set.
type Cache struct {
	// Dir is the cache root, e.g. ~/.cache/nfslab.
	Dir string
}

// DefaultCacheDir returns $NFSLAB_CACHE if set, else $XDG_CACHE_HOME/nfslab, else
// ~/.cache/nfslab.
func DefaultCacheDir() (string, error) {
	if d := os.Getenv("NFSLAB_CACHE"); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "nfslab"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("finding the nfslab cache directory (set NFSLAB_CACHE): %w", err)
	}
	return filepath.Join(home, ".cache", "nfslab"), nil
}

// Inputs are everything an artefact is built from, by name. Two builds with equal Inputs must
// produce interchangeable artefacts; anything that changes the result (a package list, a
// suite, a recipe version) belongs in them.
type Inputs map[string]string

// Key returns the hex sha256 of the inputs. It does not depend on map order.
func (in Inputs) Key() string {
	h := sha256.New()
	for _, k := range in.sortedKeys() {
		// Length-prefixed, so no choice of names and values can collide.
		fmt.Fprintf(h, "%d:%s=%d:%s\n", len(k), k, len(in[k]), in[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (in Inputs) sortedKeys() []string {
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// String renders the inputs one "name=value" per line, sorted, as stored next to an artefact.
func (in Inputs) String() string {
	var b strings.Builder
	for _, k := range in.sortedKeys() {
		fmt.Fprintf(&b, "%s=%s\n", k, strings.ReplaceAll(in[k], "\n", " "))
	}
	return b.String()
}

// InputsFile is the name of the file in each artefact directory that records its Inputs.
const InputsFile = "inputs.txt"

// Path returns the directory where the artefact of the given kind and key is (or would be)
// published.
func (c Cache) Path(kind, key string) string {
	return filepath.Join(c.Dir, kind, key)
}

// BuildFunc fills dir (an empty directory) with an artefact. It must honour ctx.
type BuildFunc func(ctx context.Context, dir string) error

// Artefact returns the directory of the artefact of the given kind built from inputs, calling
// build to make it first if it is not cached. The build runs in a temporary directory in the
// same parent that is renamed into place once build returns nil; concurrent callers for the
// same key wait on a lock file and then reuse the result. A hit, and a build, mark the entry
// used (MarkUsed).
func (c Cache) Artefact(ctx context.Context, log *slog.Logger, kind string, inputs Inputs, build BuildFunc) (string, error) {
	if c.Dir == "" {
		return "", errors.New("image cache: no directory set")
	}
	key := inputs.Key()
	final := c.Path(kind, key)
	if isDir(final) {
		log.Debug("cache hit", "kind", kind, "key", short(key), "dir", final)
		MarkUsed(log, final)
		return final, nil
	}
	parent := filepath.Dir(final)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", fmt.Errorf("creating cache directory: %w", err)
	}
	unlock, err := LockFile(ctx, log, filepath.Join(parent, key+".lock"))
	if err != nil {
		return "", fmt.Errorf("locking %s artefact %s: %w", kind, short(key), err)
	}
	defer unlock()
	if isDir(final) { // another process built it while we waited
		log.Debug("cache hit after wait", "kind", kind, "key", short(key))
		MarkUsed(log, final)
		return final, nil
	}
	tmpPrefix := "." + key + ".tmp-"
	RemoveStale(log, parent, tmpPrefix)

	tmp, err := os.MkdirTemp(parent, tmpPrefix)
	if err != nil {
		return "", fmt.Errorf("creating build directory: %w", err)
	}
	published := false
	defer func() {
		if !published {
			if err := RemoveTree(tmp); err != nil {
				log.Warn("could not remove failed build directory", "dir", tmp, "err", err)
			}
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("chmod build directory: %w", err)
	}
	start := time.Now()
	log.Info("building", "kind", kind, "key", short(key))
	if err := build(ctx, tmp); err != nil {
		return "", fmt.Errorf("building %s: %w", kind, err)
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("building %s: %w", kind, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, InputsFile), []byte(inputs.String()), 0o644); err != nil {
		return "", fmt.Errorf("recording inputs: %w", err)
	}
	if err := SyncDir(tmp); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("publishing %s artefact: %w", kind, err)
	}
	published = true
	MarkUsed(log, final)
	if err := SyncDir(parent); err != nil {
		return "", err
	}
	log.Info("built", "kind", kind, "key", short(key), "elapsed", time.Since(start).Round(time.Millisecond))
	return final, nil
}

func short(key string) string {
	if len(key) > 12 {
		return key[:12]
	}
	return key
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// SyncDir fsyncs the regular files directly in dir and dir itself, so that a published
// artefact survives a crash right after the rename. Subdirectories (large extracted trees) are
// not walked.
func SyncDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	for _, e := range append(entries, nil) {
		p := dir
		if e != nil {
			if !e.Type().IsRegular() {
				continue
			}
			p = filepath.Join(dir, e.Name())
		}
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("syncing %s: %w", p, err)
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return fmt.Errorf("syncing %s: %w", p, err)
		}
	}
	return nil
}

// LockFile takes an exclusive flock on path, polling so that ctx can cancel the wait. The
// returned function releases it. Builders of a cache entry outside Artefact (kernels) lock
// <entry>.lock with it, as Artefact does.
//
// A lock file nobody holds may be removed (nfslab cleanup does, while holding it). A process
// that opened the file before the removal would then hold a lock on a file no one else can
// open, so after taking the lock LockFile checks that path still names the file it locked,
// and starts over if not.
func LockFile(ctx context.Context, log *slog.Logger, path string) (func(), error) {
	waiting := false
	for {
		unlock, ok, err := TryLock(path)
		if err != nil {
			return nil, err
		}
		if ok {
			return unlock, nil
		}
		if !waiting {
			log.Info("waiting for another nfslab process building the same artefact", "lock", path)
			waiting = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TryLock is LockFile without the wait: ok is false when another process holds the lock.
// nfslab cache prune takes an entry's lock with it, so that it never removes an entry that is
// being built.
func TryLock(path string) (unlock func(), ok bool, err error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, false, err
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			if sameFile(f, path) {
				return func() {
					_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
					f.Close()
				}, true, nil
			}
			f.Close() // removed (or replaced) meanwhile: lock the file that is there now
			continue
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) || errors.Is(err, syscall.EINTR) {
			return nil, false, nil
		}
		return nil, false, err
	}
}

// LockHeld reports whether a process holds the lock file at path (taken with LockFile or
// TryLock). It creates nothing: a lock file that does not exist is not held.
func LockHeld(path string) bool {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return true
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// MarkUsed records that the cache entry at path (a directory or file) is being used, by
// setting its modification time to now: nfslab cache reads that as the entry's last use.
// Artefact and the kernel builds call it on every hit. A cache the caller can read but not
// write keeps its old time; that is logged and otherwise ignored.
func MarkUsed(log *slog.Logger, path string) {
	now := time.Now()
	if err := os.Chtimes(path, now, now); err != nil {
		log.Debug("could not record the use of a cache entry", "path", path, "err", err)
	}
}

// sameFile reports whether path still names the open file f.
func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

// RemoveStale deletes the temporary build directories (names starting with prefix) left in
// parent by interrupted builds of the entry whose lock the caller holds. It removes them with
// RemoveTree.
func RemoveStale(log *slog.Logger, parent, prefix string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		p := filepath.Join(parent, e.Name())
		if err := RemoveTree(p); err != nil {
			log.Warn("could not remove an interrupted build", "dir", p, "err", err)
			continue
		}
		log.Info("removed an interrupted build", "dir", p)
	}
}

// FileSHA256 is the hex sha256 of a file's contents.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// CopyFile copies the contents of the file src to dst, which is created (mode 0644) or
// truncated.
func CopyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// RemoveTree removes dir and everything below it like os.RemoveAll, but refuses to when
// anything is mounted below it (an interrupted mmdebstrap can leave /proc and /sys rbind
// mounts in its chroot; recursing into them would delete host state, e.g. cgroups).
func RemoveTree(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	} else if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	mounts, err := mountsBelow(abs)
	if err != nil {
		return err
	}
	if len(mounts) > 0 {
		return fmt.Errorf("refusing to remove %s: %d filesystem(s) still mounted below it (e.g. %s); run: umount -R %s",
			dir, len(mounts), mounts[0], mounts[0])
	}
	return os.RemoveAll(abs)
}

// UnmountBelow detaches every filesystem mounted strictly below dir, deepest first: what an
// interrupted or failed mmdebstrap leaves in its chroot (proc, sys, devpts, a tmpfs on dev/shm
// were seen after a node image build was interrupted mid-install). MNT_DETACH does no I/O.
func UnmountBelow(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	mounts, err := mountsBelow(abs)
	if err != nil {
		return err
	}
	// Deeper paths sort after their parents: undo in reverse.
	slices.Sort(mounts)
	var errs []error
	for _, m := range slices.Backward(mounts) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

// mountsBelow lists the mount points strictly below dir, from /proc/self/mountinfo.
func mountsBelow(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading mount table: %w", err)
	}
	defer f.Close()
	var below []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if strings.HasPrefix(mp, dir+"/") {
			below = append(below, mp)
		}
	}
	return below, sc.Err()
}

// unescapeMountPath undoes the octal escapes (\040 for space, ...) of /proc/self/mountinfo.
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
