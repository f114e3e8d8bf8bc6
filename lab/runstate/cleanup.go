package runstate

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nfslab/nfslab/lab/image"
)

// Cleaner finds and removes what dead runs left on this host.
type Cleaner struct {
	Registry Registry
	// TempDirs are searched for work directories, besides the temp directory each record names.
	TempDirs []string
	// CacheDirs are searched for interrupted builds, besides the cache each record names.
	CacheDirs []string
	// RemoveTree removes a directory; os.RemoveAll when nil. (The CLI passes image.RemoveTree,
	// which refuses to recurse into filesystems still mounted below it.)
	RemoveTree func(string) error
}

// Snapshot reads the registry, the process table, the work directories and the cache builds.
func (c Cleaner) Snapshot() (Snapshot, error) {
	var s Snapshot
	recs, rerr := c.Registry.List()
	s.Records = recs
	procs, err := c.Registry.procs().List()
	if err != nil {
		return s, err
	}
	s.Procs = procs
	temps, caches := slices.Clone(c.TempDirs), slices.Clone(c.CacheDirs)
	for _, r := range recs {
		temps = append(temps, r.TempDir)
		caches = append(caches, r.CacheDir)
	}
	for _, d := range unique(temps) {
		found, _ := filepath.Glob(filepath.Join(d, WorkDirPrefix+"*"))
		for _, f := range found {
			if st, err := os.Lstat(f); err == nil && st.IsDir() {
				s.WorkDirs = append(s.WorkDirs, f)
			}
		}
	}
	s.WorkDirs = unique(s.WorkDirs)
	for _, d := range unique(caches) {
		s.Builds = append(s.Builds, findBuilds(d)...)
	}
	return s, rerr
}

// findBuilds lists the cache builds in <cache>/<kind>/: each lock file with the build
// directories of the same entry, and whether a process holds the lock.
func findBuilds(cache string) []Build {
	kinds, err := os.ReadDir(cache)
	if err != nil {
		return nil
	}
	var out []Build
	for _, k := range kinds {
		if !k.IsDir() {
			continue
		}
		parent := filepath.Join(cache, k.Name())
		entries, err := os.ReadDir(parent)
		if err != nil {
			continue
		}
		byBase := map[string]*Build{}
		var bases []string
		for _, e := range entries {
			base, isDir, ok := buildBase(e.Name())
			if !ok || isDir != e.IsDir() {
				continue
			}
			b := byBase[base]
			if b == nil {
				b = &Build{}
				byBase[base] = b
				bases = append(bases, base)
			}
			if isDir {
				b.Dirs = append(b.Dirs, filepath.Join(parent, e.Name()))
			} else {
				b.Lock = filepath.Join(parent, e.Name())
			}
		}
		for _, base := range bases {
			b := byBase[base]
			b.Lock = filepath.Join(parent, base+".lock")
			_, err := os.Lstat(b.Lock)
			b.LockFound = err == nil // without the file, nobody can hold it
			b.Held = image.LockHeld(b.Lock)
			out = append(out, *b)
		}
	}
	return out
}

// Result is one item of a plan after cleanup tried to remove it.
type Result struct {
	Item
	Err error
}

// Apply removes the plan's items in order (processes, work directories, cache builds and
// locks, records) and returns what happened to each. A process is killed only if it is still
// the one in the plan (same pid and start time), through a pidfd so that a reused pid cannot
// be hit; its process group goes with it when it leads one. A run's record is removed only
// when nothing else of the run failed to go. ctx bounds the wait for killed processes to exit.
func (c Cleaner) Apply(ctx context.Context, p Plan) []Result {
	remove := c.RemoveTree
	if remove == nil {
		remove = os.RemoveAll
	}
	failed := map[string]bool{}
	var out []Result
	var killed []int
	order := []Kind{KindProcess, KindWorkDir, KindBuildDir, KindLock, KindRecord}
	for _, kind := range order {
		if kind == KindWorkDir {
			// Processes first, and gone before their directories are removed.
			for _, fd := range killed {
				waitExit(ctx, fd)
				unix.Close(fd)
			}
		}
		for _, it := range p.Remove {
			if it.Kind != kind {
				continue
			}
			var err error
			switch kind {
			case KindProcess:
				var fd int
				fd, err = c.kill(it.Proc)
				if fd >= 0 {
					killed = append(killed, fd)
				}
			case KindWorkDir:
				err = remove(it.Path)
			case KindBuildDir:
				err = c.removeBuild(it.Path, remove)
			case KindLock:
				err = removeLock(it.Path)
			case KindRecord:
				if failed[it.RunID] {
					err = errors.New("kept: something else of this run could not be removed")
				} else if err = os.Remove(c.Registry.path(it.RunID)); errors.Is(err, fs.ErrNotExist) {
					err = nil
				}
			}
			if err != nil && it.RunID != "" {
				failed[it.RunID] = true
			}
			out = append(out, Result{Item: it, Err: err})
		}
	}
	return out
}

// kill sends SIGKILL to p if it is still the same process, and returns a pidfd to wait on
// (-1 when there is nothing to wait for).
func (c Cleaner) kill(p Proc) (int, error) {
	fd, err := unix.PidfdOpen(p.PID, 0)
	if errors.Is(err, unix.ESRCH) {
		return -1, nil // already gone
	}
	if err != nil {
		return -1, fmt.Errorf("open pidfd: %w", err)
	}
	now, err := c.Registry.procs().Read(p.PID)
	if err != nil || now.Start != p.Start {
		unix.Close(fd)
		return -1, nil // exited since the snapshot; the pid is not it any more
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		unix.Close(fd)
		return -1, fmt.Errorf("kill: %w", err)
	}
	if p.PGID == p.PID {
		// It leads a process group nfslab created for it (make and its compilers, qemu).
		_ = unix.Kill(-p.PGID, unix.SIGKILL)
	}
	return fd, nil
}

// waitExit waits until the process of a pidfd has exited, or ctx ends.
func waitExit(ctx context.Context, fd int) {
	for ctx.Err() == nil {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 100)
		if n > 0 || err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// removeBuild removes an interrupted build directory while holding its entry's lock, so that
// a build starting at the same moment cannot lose its directory.
func (c Cleaner) removeBuild(dir string, remove func(string) error) error {
	base, _, ok := buildBase(filepath.Base(dir))
	if !ok {
		return fmt.Errorf("%s is not a build directory", dir)
	}
	unlock, err := tryLock(filepath.Join(filepath.Dir(dir), base+".lock"))
	if err != nil {
		return err
	}
	defer unlock()
	return remove(dir)
}

// removeLock removes an unused lock file while holding it. Builders re-check, after taking a
// lock, that its path still names the file they locked (image.LockFile), so removing it cannot
// let two builds in at once.
func removeLock(path string) error {
	unlock, err := tryLock(path)
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// tryLock takes the lock on path without waiting (image.TryLock), creating the file if needed.
func tryLock(path string) (func(), error) {
	unlock, ok, err := image.TryLock(path)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("kept: a build took the lock %s in the meantime", path)
	}
	return unlock, nil
}

func unique(in []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range in {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if abs, err := filepath.Abs(s); err == nil {
			s = abs
		}
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// WaitBudget is how long Apply may wait for killed processes to exit.
const WaitBudget = 10 * time.Second
