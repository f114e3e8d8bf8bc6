// Package runstate keeps track of what nfslab processes create on the host, so that what a
// killed run leaves behind can be found and removed without touching what a live run owns.
//
// Every nfslab process that creates anything registers a Record (its run ID, pid, the start
// time and name of its process) in a registry directory before it creates anything, and removes
// the record when it is done. What it creates carries the run ID: its work directories are
// named nfslab-run-<id>-*, and every process it starts inherits EnvVar=<id> in its environment
// (qemu also carries -name nfslab-<id>-… on its command line). Cache builds are guarded by
// flock(2) locks instead: a build directory whose lock nobody holds is an interrupted build.
//
// Cleanup acts only on leftovers tied to a record whose owner is verifiably dead (no process
// with the recorded pid, start time and name), and on cache build directories and locks that no
// process holds; anything it cannot attribute is reported and left alone.
package runstate

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"
)

// EnvVar is the environment variable that marks every process a run starts with the run's ID.
const EnvVar = "NFSLAB_RUN"

// WorkDirPrefix starts the name of every work directory a run creates in the temp directory:
// nfslab-run-<id>-<random>.
const WorkDirPrefix = "nfslab-run-"

// QEMUNamePrefix starts the -name of every qemu process a run starts: nfslab-<id>-<kernel>.
const QEMUNamePrefix = "nfslab-"

// idRE matches a run ID: a UTC timestamp to the second and a random suffix.
var idRE = regexp.MustCompile(`^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$`)

// NewID returns a new run ID: the UTC time to the second and six random hex digits, so that two
// runs started in the same second get different IDs (e.g. 20250101-120000-3fa9c1).
func NewID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:]) // never fails on Linux (crypto/rand panics rather than return an error)
	return now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// ValidID reports whether s has the form of a run ID.
func ValidID(s string) bool { return idRE.MatchString(s) }

// WorkDirID returns the run ID in a work directory's name (nfslab-run-<id>-<random>), or false
// for a name of another form (e.g. a work directory of an nfslab from before run IDs).
func WorkDirID(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, WorkDirPrefix)
	if !ok || len(rest) < 23 || rest[22] != '-' {
		return "", false
	}
	id := rest[:22]
	return id, ValidID(id)
}

// QEMUName is the -name of a qemu process of run id booting kernel: nfslab-<id>-<kernel>, with
// the kernel reduced to characters qemu and ps show unchanged.
func QEMUName(id, kernel string) string {
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, filepath.Base(kernel))
	return QEMUNamePrefix + id + "-" + clean
}

// Record is what a live nfslab process writes about itself.
type Record struct {
	ID      string    `json:"id"`
	Command string    `json:"command"` // "run", "kernel build"
	PID     int       `json:"pid"`
	Comm    string    `json:"comm"`        // the process's name (/proc/<pid>/comm)
	Start   uint64    `json:"start_ticks"` // its start time since boot (/proc/<pid>/stat field 22): with PID, identifies it even after the pid is reused
	Started time.Time `json:"started"`
	// TempDir is where its work directories are; CacheDir its artefact cache; ReportDir where its
	// reports go (runs only).
	TempDir   string `json:"temp_dir"`
	CacheDir  string `json:"cache_dir,omitempty"`
	ReportDir string `json:"report_dir,omitempty"`
}

// DefaultDir is the registry directory: $NFSLAB_RUN_DIR if set; else /run/nfslab for root (a
// tmpfs: records do not outlive a reboot, nor do the processes they describe); else
// $XDG_RUNTIME_DIR/nfslab; else nfslab-runs-<uid> in the temp directory.
func DefaultDir() string {
	if d := os.Getenv("NFSLAB_RUN_DIR"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		if st, err := os.Stat("/run"); err == nil && st.IsDir() {
			return "/run/nfslab"
		}
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "nfslab")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("nfslab-runs-%d", os.Geteuid()))
}

// Registry is a directory of records, one file <id>.json per run.
type Registry struct {
	Dir string
	// Procs reads the process table; /proc when nil.
	Procs ProcReader
}

func (r Registry) procs() ProcReader {
	if r.Procs == nil {
		return ProcFS{Root: "/proc"}
	}
	return r.Procs
}

func (r Registry) path(id string) string { return filepath.Join(r.Dir, id+".json") }

// InUseError says a report directory belongs to another live run.
type InUseError struct {
	Dir   string
	Owner Record
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("report directory %s is in use by nfslab run %s (pid %d, started %s): give this run its own --report-dir",
		e.Dir, e.Owner.ID, e.Owner.PID, e.Owner.Started.Local().Format(time.DateTime))
}

// Register records the calling process as the owner of run rec.ID (filling in PID, Comm, Start
// and Started) and returns a function that removes the record. It fails with an *InUseError when
// a live run already writes its reports to rec.ReportDir. Records of dead runs are left for
// Cleanup. Registering is serialized by a lock on the registry directory.
func (r Registry) Register(rec Record) (release func() error, err error) {
	if !ValidID(rec.ID) {
		return nil, fmt.Errorf("register run: %q is not a run ID", rec.ID)
	}
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("register run: %w", err)
	}
	self, err := r.procs().Read(os.Getpid())
	if err != nil {
		return nil, fmt.Errorf("register run: reading this process's start time: %w", err)
	}
	rec.PID, rec.Comm, rec.Start = self.PID, self.Comm, self.Start
	if rec.Started.IsZero() {
		rec.Started = time.Now()
	}
	unlock, err := lockDir(r.Dir)
	if err != nil {
		return nil, fmt.Errorf("register run: %w", err)
	}
	defer unlock()
	if rec.ReportDir != "" {
		recs, _ := r.List()
		for _, o := range recs {
			if o.ReportDir == rec.ReportDir && o.ID != rec.ID && r.Alive(o) {
				return nil, &InUseError{Dir: rec.ReportDir, Owner: o}
			}
		}
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("register run: %w", err)
	}
	tmp := r.path(rec.ID) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("register run: %w", err)
	}
	if err := os.Rename(tmp, r.path(rec.ID)); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("register run: %w", err)
	}
	return func() error {
		if err := os.Remove(r.path(rec.ID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove the record of run %s: %w", rec.ID, err)
		}
		return nil
	}, nil
}

// List returns the records in the registry, sorted by ID. A registry that does not exist is
// empty; unreadable records are skipped and reported in the error.
func (r Registry) List() ([]Record, error) {
	entries, err := os.ReadDir(r.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list runs in %s: %w", r.Dir, err)
	}
	var (
		recs []Record
		errs []error
	)
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !ValidID(id) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(r.Dir, e.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var rec Record
		if err := json.Unmarshal(b, &rec); err != nil || rec.ID != id {
			errs = append(errs, fmt.Errorf("run record %s: not a record of run %s", filepath.Join(r.Dir, e.Name()), id))
			continue
		}
		recs = append(recs, rec)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })
	return recs, errors.Join(errs...)
}

// Alive reports whether the owner of rec still runs: a process with its pid, start time and name.
func (r Registry) Alive(rec Record) bool {
	p, err := r.procs().Read(rec.PID)
	return err == nil && owns(rec, p)
}

// owns reports whether process p is the owner rec describes.
func owns(rec Record, p Proc) bool {
	return p.PID == rec.PID && p.Start == rec.Start && p.Comm == rec.Comm
}

// lockDir takes an exclusive flock on <dir>/.lock. It is held for the few milliseconds of a
// registration, so waiting longer than lockWait means something is wrong.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(lockWait)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lockWait bounds the wait for the registry lock.
const lockWait = 10 * time.Second
