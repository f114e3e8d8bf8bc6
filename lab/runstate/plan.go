package runstate

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// Snapshot is what cleanup decides on: the registry, the process table, the work directories
// in the temp directories and the cache builds.
type Snapshot struct {
	Records  []Record
	Procs    []Proc
	WorkDirs []string // paths of nfslab-run-* directories
	Builds   []Build
}

// Build is one cache entry's lock file and the build directories beside it
// (<parent>/<base>.lock and <parent>/.<base>.tmp-*).
type Build struct {
	Lock      string   // the lock file
	LockFound bool     // whether the lock file exists
	Dirs      []string // build directories
	Held      bool     // a process holds the lock: a build is in progress
}

// Kind is what a leftover is.
type Kind string

// Kinds of leftovers, in the order cleanup removes them: processes first (they may still write
// into the directories), records last (a record stays until everything of its run is gone).
const (
	KindProcess  Kind = "process"
	KindWorkDir  Kind = "work directory"
	KindBuildDir Kind = "interrupted cache build"
	KindLock     Kind = "unused cache lock"
	KindRecord   Kind = "run record"
)

// Item is one thing cleanup removes or leaves alone.
type Item struct {
	Kind  Kind
	RunID string // the run it belongs to; empty for cache builds
	Path  string // for directories and files
	Proc  Proc   // for processes
	// Why it is removed or kept.
	Why string
}

func (it Item) String() string {
	what := it.Path
	if it.Kind == KindProcess {
		what = fmt.Sprintf("%d (%s)", it.Proc.PID, shorten(it.Proc.Cmdline, 80))
		if it.Proc.Cmdline == "" {
			what = fmt.Sprintf("%d (%s)", it.Proc.PID, it.Proc.Comm)
		}
	}
	s := string(it.Kind)
	if what != "" {
		s += " " + what
	}
	if it.RunID != "" {
		s += " of run " + it.RunID
	}
	if it.Why != "" {
		s += ": " + it.Why
	}
	return s
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Plan is what cleanup will do.
type Plan struct {
	Remove []Item
	Keep   []Item
}

// Decide works out, from a snapshot alone, what is left over and may be removed. It removes
// only what belongs to a recorded run whose owner is dead (no process with the recorded pid,
// start time and name), and cache builds whose lock nobody holds. Everything else it keeps,
// saying why: what a live run owns, and what it cannot attribute to a recorded run.
func Decide(s Snapshot) Plan {
	var p Plan
	recs := map[string]Record{}
	alive := map[string]bool{}
	owners := map[int]bool{}
	for _, r := range s.Records {
		recs[r.ID] = r
		for _, pr := range s.Procs {
			if owns(r, pr) {
				alive[r.ID] = true
				owners[pr.PID] = true
			}
		}
	}
	// attribute returns whether what belongs to run id may go, and why.
	attribute := func(id string) (bool, string) {
		r, ok := recs[id]
		switch {
		case !ok:
			return false, "no record of run " + id + " (its owner may be a live nfslab with another NFSLAB_RUN_DIR)"
		case alive[id]:
			return false, fmt.Sprintf("its run is alive (nfslab %s, pid %d)", r.Command, r.PID)
		}
		return true, fmt.Sprintf("its run (nfslab %s, pid %d, started %s) is dead", r.Command, r.PID, r.Started.Local().Format("2006-01-02 15:04:05"))
	}
	add := func(it Item, remove bool) {
		if remove {
			p.Remove = append(p.Remove, it)
		} else {
			p.Keep = append(p.Keep, it)
		}
	}

	procs := append([]Proc(nil), s.Procs...)
	sort.Slice(procs, func(i, j int) bool { return procs[i].PID < procs[j].PID })
	for _, pr := range procs {
		if pr.RunID == "" || owners[pr.PID] {
			continue
		}
		ok, why := attribute(pr.RunID)
		add(Item{Kind: KindProcess, RunID: pr.RunID, Proc: pr, Why: why}, ok)
	}
	for _, d := range sorted(s.WorkDirs) {
		id, named := WorkDirID(filepath.Base(d))
		if !named {
			add(Item{Kind: KindWorkDir, Path: d, Why: "not named after a run (an nfslab from before run IDs?): remove it by hand if no nfslab is running"}, false)
			continue
		}
		ok, why := attribute(id)
		add(Item{Kind: KindWorkDir, RunID: id, Path: d, Why: why}, ok)
	}
	builds := append([]Build(nil), s.Builds...)
	sort.Slice(builds, func(i, j int) bool { return builds[i].Lock < builds[j].Lock })
	for _, b := range builds {
		if b.Held {
			for _, d := range b.Dirs {
				add(Item{Kind: KindBuildDir, Path: d, Why: "a build holds its lock " + b.Lock}, false)
			}
			continue
		}
		for _, d := range sorted(b.Dirs) {
			add(Item{Kind: KindBuildDir, Path: d, Why: "no process holds its lock"}, true)
		}
		if b.LockFound {
			add(Item{Kind: KindLock, Path: b.Lock, Why: "no process holds it"}, true)
		}
	}
	for _, r := range s.Records {
		ok, why := attribute(r.ID)
		if ok {
			add(Item{Kind: KindRecord, RunID: r.ID, Why: why}, true)
		}
	}
	return p
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// buildBase returns the base name of the cache entry a build directory or lock file belongs
// to: ".<base>.tmp-<random>" and "<base>.lock" both give base.
func buildBase(name string) (base string, isDir, ok bool) {
	if rest, found := strings.CutPrefix(name, "."); found {
		if i := strings.LastIndex(rest, ".tmp-"); i > 0 {
			return rest[:i], true, true
		}
		return "", false, false
	}
	if b, found := strings.CutSuffix(name, ".lock"); found && b != "" {
		return b, false, true
	}
	return "", false, false
}
