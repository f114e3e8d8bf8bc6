package cache

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// fakeCache makes three rootfs entries a (10 days old, 300 KiB), b (5 days, 200 KiB) and c
// (1 day, 100 KiB), plus a build in progress of 50 KiB and the KVM memo, and returns their
// listing with the sizes set to those numbers.
func fakeCache(t *testing.T) (string, []Entry) {
	t.Helper()
	dir := t.TempDir()
	day := 24 * time.Hour
	sizes := map[string]int64{"rootfs/a": 300 << 10, "rootfs/b": 200 << 10, "rootfs/c": 100 << 10, "rootfs/.d.tmp-1": 50 << 10}
	put(t, filepath.Join(dir, "rootfs", "a", "f"), 1, now.Add(-10*day))
	put(t, filepath.Join(dir, "rootfs", "b", "f"), 1, now.Add(-5*day))
	put(t, filepath.Join(dir, "rootfs", "c", "f"), 1, now.Add(-1*day))
	put(t, filepath.Join(dir, "rootfs", ".d.tmp-1", "f"), 1, now.Add(-20*day))
	put(t, filepath.Join(dir, "kvm-failed.txt"), 1, now.Add(-40*day))
	entries, err := List(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range entries {
		entries[i].Size = sizes[entries[i].Name]
	}
	return dir, entries
}

func TestPrune(t *testing.T) {
	day := 24 * time.Hour
	type outcome struct {
		name    string
		outcome Outcome
	}
	tests := []struct {
		name   string
		policy Policy
		locked []string // entries whose lock a builder holds
		want   []outcome
		total  int64
	}{
		{"older than 3 days", Policy{OlderThan: 3 * day}, nil,
			[]outcome{{"rootfs/a", Removed}, {"rootfs/b", Removed}}, 150 << 10},
		{"older than 30 days: nothing (the memo and the build are not artefacts)", Policy{OlderThan: 30 * day}, nil,
			nil, 650 << 10},
		{"at most 400 KiB: least recently used first, until under", Policy{MaxSize: 400 << 10}, nil,
			[]outcome{{"rootfs/a", Removed}}, 350 << 10},
		{"at most 300 KiB", Policy{MaxSize: 300 << 10}, nil,
			[]outcome{{"rootfs/a", Removed}, {"rootfs/b", Removed}}, 150 << 10},
		{"a locked entry is kept and the next one goes", Policy{MaxSize: 400 << 10}, []string{"rootfs/a"},
			[]outcome{{"rootfs/a", KeptLocked}, {"rootfs/b", Removed}, {"rootfs/c", Removed}}, 350 << 10},
		{"either limit: b is old enough though the size is under", Policy{OlderThan: 2 * day, MaxSize: 600 << 10}, nil,
			[]outcome{{"rootfs/a", Removed}, {"rootfs/b", Removed}}, 150 << 10},
		{"used since a live run began", Policy{MaxSize: 1, InUseSince: now.Add(-2 * day)}, nil,
			[]outcome{{"rootfs/a", Removed}, {"rootfs/b", Removed}, {"rootfs/c", KeptInUse}}, 150 << 10},
		{"dry run", Policy{MaxSize: 300 << 10, DryRun: true}, []string{"rootfs/b"},
			[]outcome{{"rootfs/a", WouldRemove}, {"rootfs/b", KeptLocked}, {"rootfs/c", WouldRemove}}, 250 << 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, entries := fakeCache(t)
			for _, name := range tt.locked {
				lock(t, filepath.Join(dir, name+".lock"))
			}
			tt.policy.Now = now
			before := mtimes(t, dir)
			acts, total := Prune(entries, tt.policy)
			var got []outcome
			for _, a := range acts {
				if a.Err != nil {
					t.Errorf("%s: %v", a.Entry.Name, a.Err)
				}
				got = append(got, outcome{a.Entry.Name, a.Outcome})
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("actions %v, want %v", got, tt.want)
			}
			if total != tt.total {
				t.Errorf("total after %d KiB, want %d KiB", total>>10, tt.total>>10)
			}
			after := mtimes(t, dir)
			for _, o := range tt.want {
				_, there := after[o.name]
				_, lockThere := after[o.name+".lock"]
				if gone := o.outcome == Removed; gone == there || gone && lockThere {
					t.Errorf("%s (%s): entry there %v, lock file there %v", o.name, o.outcome, there, lockThere)
				}
			}
			if tt.policy.DryRun && !maps(before, after) {
				t.Errorf("a dry run changed the cache:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// TestPruneKeepsWhatWasUsedMeanwhile: an entry used between the listing and its removal stays.
func TestPruneKeepsWhatWasUsedMeanwhile(t *testing.T) {
	dir, entries := fakeCache(t)
	a := filepath.Join(dir, "rootfs", "a")
	if err := os.Chtimes(a, now, now); err != nil { // image.MarkUsed by a run
		t.Fatal(err)
	}
	acts, _ := Prune(entries, Policy{OlderThan: 7 * 24 * time.Hour, Now: now})
	if len(acts) != 1 || acts[0].Outcome != KeptUsed {
		t.Fatalf("actions %+v, want rootfs/a kept as used", acts)
	}
	if _, err := os.Stat(a); err != nil {
		t.Errorf("rootfs/a: %v", err)
	}
}

// mtimes is every path under dir with its mtime.
func mtimes(t *testing.T, dir string) map[string]time.Time {
	t.Helper()
	out := map[string]time.Time{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = info.ModTime()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func maps(a, b map[string]time.Time) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !w.Equal(v) {
			return false
		}
	}
	return true
}
