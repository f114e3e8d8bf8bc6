package cache

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"time"

	"github.com/nfslab/nfslab/lab/image"
)

// Policy says what Prune removes: entries last used more than OlderThan ago, and, least
// recently used first, entries until the cache takes at most MaxSize. A zero field is no limit;
// with both, an entry goes when either says so.
type Policy struct {
	OlderThan time.Duration
	MaxSize   int64
	// Now is the time ages are measured from.
	Now time.Time
	// InUseSince, when set, is the start of the oldest live nfslab run on this cache (InUseBy
	// names it): an entry used since then may be in that run's hands, which hold no lock
	// while they read a cached entry, so it is kept.
	InUseSince time.Time
	InUseBy    string
	DryRun     bool
}

// Outcome is what Prune did with an entry it considered.
type Outcome string

const (
	Removed     Outcome = "removed"
	WouldRemove Outcome = "would remove"
	KeptLocked  Outcome = "kept: being built (its lock is held)"
	KeptInUse   Outcome = "kept: used since a live nfslab run began"
	KeptUsed    Outcome = "kept: used while prune ran"
	Failed      Outcome = "could not remove"
)

// Action is an entry Prune removed, would remove, or had to keep although the policy chose it.
type Action struct {
	Entry   Entry
	Outcome Outcome
	Err     error // for Failed
}

// Candidates are the entries Prune may remove, least recently used first: those with a lock
// file to take, not a build directory, not kept for a reason of their own.
func Candidates(entries []Entry) []Entry {
	var out []Entry
	for _, e := range entries {
		if e.Build == "" && e.Keep == "" && e.Lock != "" {
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].LastUse.Equal(out[j].LastUse) {
			return out[i].LastUse.Before(out[j].LastUse)
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Prune removes (or with DryRun only names) what the policy chooses among entries, the whole
// listing of one cache, least recently used first. Each entry is removed with image.RemoveTree
// while its lock is held, taken without waiting: an entry being built, or used since the
// listing, is kept and said so, and the next one is considered instead. A dry run changes
// nothing: it only tests the locks (and cannot foresee one taken later). It returns what it did
// and the size of the cache afterwards (as it would be, for a dry run).
func Prune(entries []Entry, p Policy) ([]Action, int64) {
	total := Total(entries)
	var out []Action
	for _, e := range Candidates(entries) {
		old := p.OlderThan > 0 && p.Now.Sub(e.LastUse) > p.OlderThan
		over := p.MaxSize > 0 && total > p.MaxSize
		if !old && !over {
			continue
		}
		a := Action{Entry: e}
		switch {
		case !p.InUseSince.IsZero() && !e.LastUse.Before(p.InUseSince):
			a.Outcome = KeptInUse
		case held(e.Lock):
			a.Outcome = KeptLocked
		case p.DryRun:
			a.Outcome = WouldRemove
		default:
			a.Outcome, a.Err = remove(e)
		}
		if a.Outcome == Removed || a.Outcome == WouldRemove {
			total -= e.Size
		}
		out = append(out, a)
	}
	return out, total
}

// remove removes the entry holding its lock, and then the lock file.
func remove(e Entry) (Outcome, error) {
	unlock, ok, err := image.TryLock(e.Lock)
	if err != nil {
		return Failed, fmt.Errorf("locking %s: %w", e.Lock, err)
	}
	if !ok {
		return KeptLocked, nil
	}
	defer unlock()
	if LastUse(e.Path).After(e.LastUse) {
		return KeptUsed, nil
	}
	if err := image.RemoveTree(e.Path); err != nil {
		return Failed, err
	}
	// Builders check after locking that the path still names the file they locked
	// (image.LockFile), so removing a held lock file lets no two builds in at once.
	if err := os.Remove(e.Lock); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Failed, fmt.Errorf("removing %s: %w", e.Lock, err)
	}
	return Removed, nil
}

// held reports whether a process holds the lock file at path. It creates nothing.
func held(path string) bool {
	return path != "" && image.LockHeld(path)
}
