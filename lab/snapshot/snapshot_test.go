package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/image"
)

func testSpec() Spec {
	return Spec{Point: Booted, Inputs: image.Inputs{"kernel": "k1", "initrd": "i1", "machine": "m1"}, QEMU: "7.2.22"}
}

// writeState is a SaveFunc writing fixed bytes, counting its calls.
func writeState(calls *int) SaveFunc {
	return func(_ context.Context, dir, state string) ([]string, error) {
		*calls++
		if err := os.WriteFile(filepath.Join(dir, DiskFile(0)), []byte("a disk"), 0o644); err != nil {
			return nil, err
		}
		return []string{DiskFile(0)}, os.WriteFile(state, []byte("a saved state"), 0o644)
	}
}

func take(t *testing.T, c image.Cache) Snapshot {
	t.Helper()
	calls := 0
	snap, taken, err := Take(context.Background(), c, slog.New(slog.DiscardHandler), testSpec(),
		Meta{Hello: event.Hello{KernelRelease: "6.1.0"}, MemoryMB: 1}, writeState(&calls))
	if err != nil || !taken || calls != 1 {
		t.Fatalf("Take = %+v, taken %v, %v after %d saves; want a new snapshot", snap, taken, err, calls)
	}
	return snap
}

func TestTakeThenLookup(t *testing.T) {
	c := image.Cache{Dir: t.TempDir()}
	log := slog.New(slog.DiscardHandler)
	taken := take(t, c)
	if taken.Meta.StateBytes != int64(len("a saved state")) || taken.Meta.QEMU != "7.2.22" || taken.Meta.Hello.KernelRelease != "6.1.0" {
		t.Errorf("meta = %+v", taken.Meta)
	}
	got, ok, err := Lookup(c, log, testSpec())
	if err != nil || !ok || got.Dir != taken.Dir || got.State() != filepath.Join(taken.Dir, "state.zst") || got.Disk(0) != filepath.Join(taken.Dir, "disk0.qcow2") {
		t.Fatalf("Lookup = %+v, %v, %v; want the snapshot taken", got, ok, err)
	}
	// A second Take finds it and saves nothing.
	calls := 0
	again, isNew, err := Take(context.Background(), c, log, testSpec(), Meta{MemoryMB: 1}, writeState(&calls))
	if err != nil || isNew || calls != 0 || again.Dir != taken.Dir {
		t.Errorf("second Take = %+v, taken %v, %v after %d saves; want the existing one", again, isNew, err, calls)
	}
	// Another machine has another key.
	other := testSpec()
	other.Inputs = image.Inputs{"kernel": "k2"}
	if _, ok, err := Lookup(c, log, other); ok || err != nil {
		t.Errorf("Lookup(other machine) = %v, %v; want none", ok, err)
	}
}

func TestLookupRemovesUnusable(t *testing.T) {
	editMeta := func(f func(m map[string]any)) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			p := filepath.Join(dir, "meta.json")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			f(m)
			b, _ = json.Marshal(m)
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
		why    string
	}{
		{"truncated state", func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, "state.zst"), 4); err != nil {
				t.Fatal(err)
			}
		}, "truncated"},
		{"missing state", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "state.zst")) }, "missing"},
		{"missing disk", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "disk0.qcow2")) }, "its disk is missing"},
		{"truncated disk", func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, "disk0.qcow2"), 2); err != nil {
				t.Fatal(err)
			}
		}, "its disks are 2 bytes, 6 were written"},
		{"corrupt meta", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "meta.json"), []byte("{"), 0o644)
		}, "corrupt"},
		{"missing meta", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "meta.json")) }, "unreadable"},
		{"another qemu", editMeta(func(m map[string]any) { m["qemu"] = "8.2.0" }), `qemu "8.2.0"`},
		{"another format", editMeta(func(m map[string]any) { m["format"] = 99 }), "format 99"},
		{"another key", editMeta(func(m map[string]any) { m["key"] = "abc" }), "another machine"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := image.Cache{Dir: t.TempDir()}
			snap := take(t, c)
			tt.damage(t, snap.Dir)
			_, ok, err := Lookup(c, slog.New(slog.DiscardHandler), testSpec())
			var u *Unusable
			if ok || !errors.As(err, &u) || !strings.Contains(u.Why, tt.why) {
				t.Fatalf("Lookup = %v, %v; want an *Unusable saying %q", ok, err, tt.why)
			}
			if _, err := os.Stat(snap.Dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the unusable snapshot is still there: %v", err)
			}
			take(t, c) // and it can be taken again
		})
	}
}

func TestTakeFailures(t *testing.T) {
	c := image.Cache{Dir: t.TempDir()}
	log := slog.New(slog.DiscardHandler)
	// No room for the VM's memory: nothing is saved.
	calls := 0
	_, _, err := Take(context.Background(), c, log, testSpec(), Meta{MemoryMB: 1 << 40}, writeState(&calls))
	var full *image.NoSpaceError
	if !errors.As(err, &full) || calls != 0 {
		t.Errorf("Take with no room = %v after %d saves; want a NoSpaceError before saving", err, calls)
	}
	// A save that fails leaves nothing behind.
	_, _, err = Take(context.Background(), c, log, testSpec(), Meta{MemoryMB: 1}, func(context.Context, string, string) ([]string, error) { return nil, errors.New("qemu said no") })
	if err == nil || !strings.Contains(err.Error(), "qemu said no") {
		t.Errorf("Take with a failing save = %v", err)
	}
	if _, ok, err := Lookup(c, log, testSpec()); ok || err != nil {
		t.Errorf("after a failed take Lookup = %v, %v; want none", ok, err)
	}
}

func TestRemoveSparesASnapshotBeingTaken(t *testing.T) {
	c := image.Cache{Dir: t.TempDir()}
	log := slog.New(slog.DiscardHandler)
	snap := take(t, c)
	unlock, ok, err := image.TryLock(snap.Dir + ".lock")
	if err != nil || !ok {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}
	if err := Remove(c, log, snap); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(snap.State()); err != nil {
		t.Errorf("Remove deleted a snapshot whose lock is held: %v", err)
	}
	unlock()
	if err := Remove(c, log, snap); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(snap.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Remove left the snapshot: %v", err)
	}
}

func TestLookupChecksTheParent(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	childSpec := Spec{Point: CellReady, Inputs: image.Inputs{"kernel": "k1", "cells": "[c0]"}, QEMU: "7.2.22"}
	tests := []struct {
		name  string
		after func(t *testing.T, c image.Cache, parent Snapshot)
		why   string // "" when the child is usable
	}{
		{"parent there", func(*testing.T, image.Cache, Snapshot) {}, ""},
		{"parent gone", func(t *testing.T, c image.Cache, p Snapshot) {
			if err := Remove(c, log, p); err != nil {
				t.Fatal(err)
			}
		}, "is gone"},
		{"parent taken again", func(t *testing.T, c image.Cache, p Snapshot) {
			if err := Remove(c, log, p); err != nil {
				t.Fatal(err)
			}
			take(t, c)
		}, "was replaced"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := image.Cache{Dir: t.TempDir()}
			parent := take(t, c)
			calls := 0
			meta := Meta{MemoryMB: 1, Parent: parent.Meta.Key, ParentTaken: parent.Meta.Taken}
			if _, _, err := Take(context.Background(), c, log, childSpec, meta, writeState(&calls)); err != nil {
				t.Fatal(err)
			}
			tt.after(t, c, parent)
			got, ok, err := Lookup(c, log, childSpec)
			if tt.why == "" {
				if !ok || err != nil || got.Meta.Parent != parent.Meta.Key {
					t.Fatalf("Lookup = %+v, %v, %v; want the child", got.Meta, ok, err)
				}
				return
			}
			var u *Unusable
			if ok || !errors.As(err, &u) || !strings.Contains(u.Why, tt.why) {
				t.Fatalf("Lookup = %v, %v; want an *Unusable saying %q", ok, err, tt.why)
			}
		})
	}
}

func TestAbout(t *testing.T) {
	c := image.Cache{Dir: t.TempDir()}
	parent := take(t, c)
	calls := 0
	child, _, err := Take(context.Background(), c, slog.New(slog.DiscardHandler),
		Spec{Point: CellReady, Inputs: image.Inputs{"cells": "[c0]"}, QEMU: "7.2.22"},
		Meta{MemoryMB: 1, Parent: parent.Meta.Key, ParentTaken: parent.Meta.Taken}, writeState(&calls))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dir, want string
	}{
		{"booted", parent.Dir, "booted"},
		{"over a parent", child.Dir, "cell-ready, over " + parent.Meta.Key[:12]},
		{"no meta", t.TempDir(), ""},
	}
	for _, tt := range tests {
		if got := About(tt.dir); got != tt.want {
			t.Errorf("%s: About = %q, want %q", tt.name, got, tt.want)
		}
	}
}
