package runstate

import (
	"encoding/json"
	"os"
	"slices"
	"testing"
	"time"
)

func writeRecord(t *testing.T, reg Registry, r Record) {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(reg.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(reg.path(r.ID), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDecide checks which leftovers are removed and which are kept, against fake process
// tables, records, work directories and cache builds.
func TestDecide(t *testing.T) {
	const (
		liveID  = "20250102-030405-111111"
		deadID  = "20250102-030405-222222"
		otherID = "20250102-030405-333333" // no record
	)
	started := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	live := Record{ID: liveID, Command: "run", PID: 100, Comm: "nfslab", Start: 5000, Started: started}
	dead := Record{ID: deadID, Command: "run", PID: 200, Comm: "nfslab", Start: 6000, Started: started}
	owner := Proc{PID: 100, Comm: "nfslab", Start: 5000, PGID: 100}
	qemu := func(pid int, id string) Proc {
		return Proc{PID: pid, PPID: 1, PGID: pid, Comm: "qemu-system-x86", Start: 7000, RunID: id, Cmdline: "qemu-system-x86_64 -name nfslab-" + id + "-debian-stock"}
	}
	type want struct{ remove, keep []string }
	tests := []struct {
		name string
		snap Snapshot
		want want
	}{
		{
			name: "a live owner's leftovers are never touched",
			snap: Snapshot{
				Records:  []Record{live},
				Procs:    []Proc{owner, qemu(101, liveID), {PID: 102, PPID: 100, PGID: 102, Comm: "make", RunID: liveID}},
				WorkDirs: []string{"/tmp/nfslab-run-" + liveID + "-1"},
			},
			want: want{keep: []string{"process 101", "process 102", "work directory /tmp/nfslab-run-" + liveID + "-1"}},
		},
		{
			name: "a dead owner's processes, work directories and record go",
			snap: Snapshot{
				Records:  []Record{dead},
				Procs:    []Proc{qemu(201, deadID), {PID: 202, PPID: 1, PGID: 202, Comm: "make", RunID: deadID}},
				WorkDirs: []string{"/tmp/nfslab-run-" + deadID + "-1", "/tmp/nfslab-run-" + deadID + "-2"},
			},
			want: want{remove: []string{
				"process 201", "process 202", "work directory /tmp/nfslab-run-" + deadID + "-1",
				"work directory /tmp/nfslab-run-" + deadID + "-2", "run record " + deadID,
			}},
		},
		{
			name: "the owner's pid reused by another process: the owner is dead",
			snap: Snapshot{
				Records: []Record{dead},
				Procs:   []Proc{{PID: 200, Comm: "nfslab", Start: 9999}, qemu(201, deadID)},
			},
			want: want{remove: []string{"process 201", "run record " + deadID}},
		},
		{
			name: "the owner's pid and start time on a process of another name: the owner is dead",
			snap: Snapshot{
				Records: []Record{dead},
				Procs:   []Proc{{PID: 200, Comm: "bash", Start: 6000}},
			},
			want: want{remove: []string{"run record " + deadID}},
		},
		{
			name: "leftovers of a run without a record are kept",
			snap: Snapshot{
				Procs:    []Proc{qemu(301, otherID)},
				WorkDirs: []string{"/tmp/nfslab-run-" + otherID + "-1", "/tmp/nfslab-run-1971279426"},
			},
			want: want{keep: []string{"process 301", "work directory /tmp/nfslab-run-1971279426", "work directory /tmp/nfslab-run-" + otherID + "-1"}},
		},
		{
			name: "the owner itself is never a leftover, even if it carries the marker",
			snap: Snapshot{
				Records: []Record{live},
				Procs:   []Proc{{PID: 100, Comm: "nfslab", Start: 5000, RunID: liveID}},
			},
			want: want{},
		},
		{
			name: "unmarked processes are not looked at",
			snap: Snapshot{
				Records: []Record{dead},
				Procs:   []Proc{{PID: 400, Comm: "qemu-system-x86", Cmdline: "qemu-system-x86_64 -name other"}},
			},
			want: want{remove: []string{"run record " + deadID}},
		},
		{
			name: "cache builds: held locks are kept, unheld ones go with their directories",
			snap: Snapshot{Builds: []Build{
				{Lock: "/c/rootfs/k1.lock", LockFound: true, Dirs: []string{"/c/rootfs/.k1.tmp-1"}, Held: true},
				{Lock: "/c/kernels/v-k2.lock", LockFound: true, Dirs: []string{"/c/kernels/.v-k2.tmp-9"}},
				{Lock: "/c/rootfs/k3.lock", LockFound: true},
				{Lock: "/c/rootfs/k4.lock", Dirs: []string{"/c/rootfs/.k4.tmp-1"}},
			}},
			want: want{
				remove: []string{
					"interrupted cache build /c/kernels/.v-k2.tmp-9", "unused cache lock /c/kernels/v-k2.lock",
					"unused cache lock /c/rootfs/k3.lock", "interrupted cache build /c/rootfs/.k4.tmp-1",
				},
				keep: []string{"interrupted cache build /c/rootfs/.k1.tmp-1"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Decide(tt.snap)
			if got := heads(p.Remove); !slices.Equal(got, tt.want.remove) {
				t.Errorf("remove:\n  %q\nwant\n  %q", got, tt.want.remove)
			}
			if got := heads(p.Keep); !slices.Equal(got, tt.want.keep) {
				t.Errorf("keep:\n  %q\nwant\n  %q", got, tt.want.keep)
			}
			for _, it := range append(p.Remove, p.Keep...) {
				if it.Why == "" {
					t.Errorf("%s: no reason given", it)
				}
			}
		})
	}
}

// heads names items by kind and pid or path.
func heads(items []Item) []string {
	var out []string
	for _, it := range items {
		s := string(it.Kind) + " "
		switch {
		case it.Kind == KindProcess:
			s += itoa(it.Proc.PID)
		case it.Kind == KindRecord:
			s += it.RunID
		default:
			s += it.Path
		}
		out = append(out, s)
	}
	return out
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestBuildBase(t *testing.T) {
	tests := []struct {
		name, base string
		isDir, ok  bool
	}{
		{".e99a3e7b.tmp-12345", "e99a3e7b", true, true},
		{".vulnerable-6.1-f6cd.tmp-1", "vulnerable-6.1-f6cd", true, true},
		{"e99a3e7b.lock", "e99a3e7b", false, true},
		{"vulnerable-6.1-f6cd.lock", "vulnerable-6.1-f6cd", false, true},
		{"e99a3e7b", "", false, false},
		{".lock", "", false, false},
		{".hidden", "", false, false},
		{"inputs.txt", "", false, false},
	}
	for _, tt := range tests {
		base, isDir, ok := buildBase(tt.name)
		if base != tt.base || isDir != tt.isDir || ok != tt.ok {
			t.Errorf("buildBase(%q) = %q, %v, %v; want %q, %v, %v", tt.name, base, isDir, ok, tt.base, tt.isDir, tt.ok)
		}
	}
}
