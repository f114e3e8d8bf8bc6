// Package snapshot keeps warm starts: the saved state of a VM at a point of its life, cached
// under a key of everything that shaped that state, so that later VMs start from it in seconds
// instead of booting.
//
// Three points are taken: Booted (the agent has said hello, loaded its modules and waits for its
// job), ClusterReady (the kind form's Docker engine and a kind cluster are up, and the agent
// waits for the cells) and, when asked for, CellReady (a kind cell set up and mounted, right
// before its fault). What a snapshot holds, in the cache's "snapshots" directory, one directory
// per key:
//
//	state.zst    qemu's migration stream of the whole VM (memory, CPUs, devices), zstd-compressed
//	disk0.qcow2  the disks the guest wrote to, as they were (qcow2 overlays over the cached
//	             disks they were attached over); a restore attaches a fresh overlay over each
//	meta.json    Meta: the point, when and by which qemu it was taken, the state's size, the
//	             agent's hello
//	inputs.txt   the inputs of the key, one per line (as every cache entry has)
//
// A snapshot taken in a VM that was itself restored keeps only what the guest wrote since: its
// disk is an overlay over its parent's (Meta.Parent), and it can be restored only while that
// parent, as it was then, is in the cache.
//
// A snapshot is taken under the cache's lock for its key (image.Cache.Artefact) and is read-only
// afterwards: any number of VMs may start from it at once. One that does not pass Lookup's checks
// (truncated, unreadable, taken by another qemu) is removed, and the caller boots cold and takes
// it again.
package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/image"
)

// Dir is the cache directory that holds the snapshots, one directory per key.
const Dir = "snapshots"

// Point names a moment of a VM's life a snapshot is taken at.
type Point string

// The points.
const (
	// Booted: the agent is up, has said hello and waits for its job (event.KindReady).
	Booted Point = "booted"
	// ClusterReady: the kind form's machine has its Docker engine up and a kind cluster created
	// in the kube-proxy mode of the cells to come; the agent waits for them (event.KindReady).
	ClusterReady Point = "cluster-ready"
	// CellReady: a kind cell's server serves, the mount is made and its baseline I/O done, its
	// tracers run; the agent waits to go on with the fault (event.KindReady of the cell).
	CellReady Point = "cell-ready"
)

// format is the version of a snapshot's layout and of what the agent does at its point; a
// snapshot of another format is removed.
const format = 1

const (
	stateFile = "state.zst"
	metaFile  = "meta.json"
)

// Meta describes a snapshot.
type Meta struct {
	Format      int         `json:"format"`
	Point       Point       `json:"point"`
	Key         string      `json:"key"`
	Taken       time.Time   `json:"taken"`
	QEMU        string      `json:"qemu"`         // qemu's version that took it; only it restores it
	StateBytes  int64       `json:"state_bytes"`  // the size of state.zst
	SaveSeconds float64     `json:"save_seconds"` // how long saving the state took
	Hello       event.Hello `json:"hello"`        // what the agent said when the VM booted
	MemoryMB    int         `json:"memory_mb"`    // the VM's memory, the most its state can take
	DiskBytes   int64       `json:"disk_bytes"`   // the size of its disks; given to Take, the estimate its free-space check uses
	// Disks are the files of the VM's disks the guest had written to, as they were when the
	// state was saved (DiskFile names them): each restore attaches an overlay over them.
	Disks []string `json:"disks,omitempty"`
	// Parent is the key of the snapshot the VM was restored from when this one was taken, and
	// ParentTaken when that one was taken: its disks are overlays over the parent's.
	Parent      string    `json:"parent,omitempty"`
	ParentTaken time.Time `json:"parent_taken,omitzero"`
}

// Snapshot is a snapshot in the cache.
type Snapshot struct {
	Dir  string
	Meta Meta
}

// State is the path of the snapshot's saved state.
func (s Snapshot) State() string { return filepath.Join(s.Dir, stateFile) }

// Disk is the path of the snapshot's i-th disk (Meta.Disks).
func (s Snapshot) Disk(i int) string { return filepath.Join(s.Dir, s.Meta.Disks[i]) }

// Size is the snapshot's size on disk: its saved state and its disks.
func (s Snapshot) Size() int64 { return s.Meta.StateBytes + s.Meta.DiskBytes }

// DiskFile is the name a SaveFunc gives the i-th disk it keeps.
func DiskFile(i int) string { return fmt.Sprintf("disk%d.qcow2", i) }

// Name is how people are shown a snapshot: its point and short key, "booted/3a778b0ee625".
func (s Snapshot) Name() string { return name(s.Meta.Point, s.Meta.Key) }

func name(p Point, key string) string { return string(p) + "/" + key[:min(12, len(key))] }

// Spec is what a snapshot is looked up or taken by: its point, the inputs of its key, and the
// qemu that will restore it (compatibility is checked, not keyed: a snapshot of an older qemu is
// found, refused and replaced rather than left behind).
type Spec struct {
	Point  Point
	Inputs image.Inputs
	QEMU   string
}

func (s Spec) inputs() image.Inputs {
	in := image.Inputs{"point": string(s.Point), "format": fmt.Sprint(format)}
	for k, v := range s.Inputs {
		in[k] = v
	}
	return in
}

// Key is the snapshot's cache key.
func (s Spec) Key() string { return s.inputs().Key() }

// Unusable is why a snapshot found in the cache cannot be restored; Lookup removed it.
type Unusable struct {
	Name string // as Snapshot.Name
	Why  string
}

func (u *Unusable) Error() string { return fmt.Sprintf("snapshot %s: %s", u.Name, u.Why) }

// Lookup returns the snapshot of spec in the cache, ok false when there is none. A snapshot that
// is there but fails the checks — its meta unreadable, of another format, key or qemu, its state
// missing or of another size than recorded — is removed, and the error (an *Unusable) says why.
func Lookup(c image.Cache, log *slog.Logger, spec Spec) (snap Snapshot, ok bool, err error) {
	key := spec.Key()
	dir := c.Path(Dir, key)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return Snapshot{}, false, nil
	}
	meta, why := check(dir, spec)
	if why == "" && meta.Parent != "" {
		why = checkParent(c, meta)
	}
	if why != "" {
		u := &Unusable{Name: name(spec.Point, key), Why: why}
		if err := Remove(c, log, Snapshot{Dir: dir}); err != nil {
			u.Why += fmt.Sprintf(" (and removing it failed: %v)", err)
		}
		return Snapshot{}, false, u
	}
	image.MarkUsed(log, dir)
	if meta.Parent != "" {
		image.MarkUsed(log, c.Path(Dir, meta.Parent)) // pruned by age, it would go first
	}
	return Snapshot{Dir: dir, Meta: meta}, true, nil
}

// About describes the snapshot in dir for a listing of the cache: its point and, for one that
// builds on a parent, that parent ("cell-ready, over d523da5e7a94"); "" when its meta is
// unreadable.
func About(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return ""
	}
	var m Meta
	if json.Unmarshal(b, &m) != nil || m.Point == "" {
		return ""
	}
	if m.Parent != "" {
		return fmt.Sprintf("%s, over %.12s", m.Point, m.Parent)
	}
	return string(m.Point)
}

// checkParent says what is wrong with the parent of a snapshot described by m ("" when nothing):
// gone, or replaced by another taken since (its disks then are not the ones m's build on).
func checkParent(c image.Cache, m Meta) string {
	b, err := os.ReadFile(filepath.Join(c.Path(Dir, m.Parent), metaFile))
	if err != nil {
		return fmt.Sprintf("the snapshot its disks build on (key %.12s) is gone", m.Parent)
	}
	var p Meta
	if err := json.Unmarshal(b, &p); err != nil || !p.Taken.Equal(m.ParentTaken) {
		return fmt.Sprintf("the snapshot its disks build on (%s) was replaced", name(p.Point, m.Parent))
	}
	return ""
}

// check reads the snapshot in dir and says what is wrong with it for spec ("" when nothing).
func check(dir string, spec Spec) (Meta, string) {
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return Meta{}, fmt.Sprintf("its description is unreadable: %v", err)
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{}, fmt.Sprintf("its description is corrupt: %v", err)
	}
	switch {
	case m.Format != format:
		return m, fmt.Sprintf("it is of format %d, this nfslab writes %d", m.Format, format)
	case m.Key != spec.Key() || m.Point != spec.Point:
		return m, "it was taken for another machine (its key or point differ)"
	case m.QEMU != spec.QEMU:
		return m, fmt.Sprintf("it was taken by qemu %q, this is %q", m.QEMU, spec.QEMU)
	}
	st, err := os.Stat(filepath.Join(dir, stateFile))
	if err != nil {
		return m, fmt.Sprintf("its saved state is missing: %v", err)
	}
	if st.Size() != m.StateBytes {
		return m, fmt.Sprintf("its saved state is %d bytes, %d were written (truncated or replaced)", st.Size(), m.StateBytes)
	}
	var disks int64
	for _, d := range m.Disks {
		st, err := os.Stat(filepath.Join(dir, d))
		if err != nil {
			return m, fmt.Sprintf("its disk is missing: %v", err)
		}
		disks += st.Size()
	}
	if disks != m.DiskBytes {
		return m, fmt.Sprintf("its disks are %d bytes, %d were written (truncated or replaced)", disks, m.DiskBytes)
	}
	return m, ""
}

// SaveFunc writes a VM's state to state (vm.VM.SaveState) and the disks it needs beside it, in
// dir, named DiskFile(0), DiskFile(1), …; it returns their names.
type SaveFunc func(ctx context.Context, dir, state string) (disks []string, err error)

// Take saves a VM's state as the snapshot of spec with save, under the cache's lock for its key;
// meta's Hello and MemoryMB describe the VM. When another run took it meanwhile, that one is
// returned, save is not called and taken is false. Before saving, it checks that the cache's file system has
// room for the VM's whole memory and its disks (meta's MemoryMB and DiskBytes).
func Take(ctx context.Context, c image.Cache, log *slog.Logger, spec Spec, meta Meta, save SaveFunc) (snap Snapshot, taken bool, err error) {
	parent := filepath.Join(c.Dir, Dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return Snapshot{}, false, fmt.Errorf("take a snapshot: %w", err)
	}
	if err := image.EnsureFree(parent, int64(meta.MemoryMB)<<20+meta.DiskBytes); err != nil {
		return Snapshot{}, false, fmt.Errorf("take a snapshot: %w", err)
	}
	key := spec.Key()
	dir, err := c.Artefact(ctx, log, Dir, spec.inputs(), func(ctx context.Context, dir string) error {
		taken = true
		t0 := time.Now()
		state := filepath.Join(dir, stateFile)
		disks, err := save(ctx, dir, state)
		if err != nil {
			return err
		}
		st, err := os.Stat(state)
		if err != nil {
			return err
		}
		m := meta
		m.Format, m.Point, m.Key, m.QEMU, m.Disks, m.DiskBytes = format, spec.Point, key, spec.QEMU, disks, 0
		for _, d := range disks {
			st, err := os.Stat(filepath.Join(dir, d))
			if err != nil {
				return err
			}
			m.DiskBytes += st.Size()
		}
		m.Taken, m.StateBytes, m.SaveSeconds = time.Now().UTC(), st.Size(), time.Since(t0).Seconds()
		b, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, metaFile), append(b, '\n'), 0o644)
	})
	if err != nil {
		return Snapshot{}, false, fmt.Errorf("take a snapshot: %w", err)
	}
	m, why := check(dir, spec)
	if why != "" {
		return Snapshot{}, false, fmt.Errorf("take a snapshot: %s", why)
	}
	return Snapshot{Dir: dir, Meta: m}, taken, nil
}

// Remove deletes a snapshot from the cache, unless a run is taking it right now (it holds the
// key's lock): that run's snapshot replaces it.
func Remove(c image.Cache, log *slog.Logger, s Snapshot) error {
	unlock, ok, err := image.TryLock(s.Dir + ".lock")
	if err != nil {
		return err
	}
	if !ok {
		log.Debug("snapshot is being taken; not removing it", "dir", s.Dir)
		return nil
	}
	defer unlock()
	return image.RemoveTree(s.Dir)
}
