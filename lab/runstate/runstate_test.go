package runstate

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNewID(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	a, b := NewID(now), NewID(now)
	if !ValidID(a) || !ValidID(b) {
		t.Fatalf("IDs %q, %q are not valid run IDs", a, b)
	}
	if !strings.HasPrefix(a, "20250102-030405-") {
		t.Errorf("ID %q does not start with the UTC time", a)
	}
	if a == b {
		t.Errorf("two IDs in the same second are equal: %q", a)
	}
}

func TestWorkDirID(t *testing.T) {
	tests := []struct {
		name, id string
		ok       bool
	}{
		{"nfslab-run-20250102-030405-a1b2c3-123456", "20250102-030405-a1b2c3", true},
		{"nfslab-run-1971279426", "", false},                 // before run IDs
		{"nfslab-run-20250102-030405-a1b2c3", "", false},     // no random part
		{"nfslab-run-20250102-030405-A1B2C3-1", "", false},   // not lower-case hex
		{"other-20250102-030405-a1b2c3-1", "", false},        // another prefix
		{"nfslab-run-20250102-030405-a1b2c3x123", "", false}, // no separator
		{"nfslab-run-2025010-0304055-a1b2c3-123", "", false}, // wrong shape
		{"nfslab-run-20250102-030405-a1b2c3-", "20250102-030405-a1b2c3", true},
	}
	for _, tt := range tests {
		id, ok := WorkDirID(tt.name)
		if id != tt.id && tt.ok || ok != tt.ok {
			t.Errorf("WorkDirID(%q) = %q, %v; want %q, %v", tt.name, id, ok, tt.id, tt.ok)
		}
	}
}

func TestQEMUName(t *testing.T) {
	id := "20250102-030405-a1b2c3"
	for kernel, want := range map[string]string{
		"debian-stock":             "nfslab-" + id + "-debian-stock",
		"/home/me/linux/bzImage":   "nfslab-" + id + "-bzImage",
		"my kernel,with=qemu,opts": "nfslab-" + id + "-my_kernel_with_qemu_opts",
	} {
		got := QEMUName(id, kernel)
		if got != want {
			t.Errorf("QEMUName(%q) = %q, want %q", kernel, got, want)
		}
		if runIDOf(nil, []byte("qemu-system-x86_64\x00-name\x00"+got+"\x00-m\x002048")) != id {
			t.Errorf("the run ID is not found again in -name %s", got)
		}
	}
}

func TestParseStat(t *testing.T) {
	tail := " S 1 77 77 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 424242 1000 10 18446744073709551615"
	tests := []struct {
		in      string
		want    Proc
		wantErr bool
	}{
		{"4242 (nfslab)" + tail, Proc{PID: 4242, PPID: 1, PGID: 77, Comm: "nfslab", Start: 424242}, false},
		{"7 (a (weird) name)" + tail, Proc{PID: 7, PPID: 1, PGID: 77, Comm: "a (weird) name", Start: 424242}, false},
		{"7 (x) S 1 2", Proc{}, true},
		{"(x)" + tail, Proc{}, true},
		{"abc (x)" + tail, Proc{}, true},
		{"7 x" + tail, Proc{}, true},
		{"", Proc{}, true},
	}
	for _, tt := range tests {
		got, err := ParseStat([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseStat(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	// This process, for real.
	self, err := ProcFS{Root: "/proc"}.Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if self.PID != os.Getpid() || self.PPID != os.Getppid() || self.Start == 0 || self.Comm == "" {
		t.Errorf("this process read as %+v", self)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("4242 (nfslab) S 1 77 77 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 424242 1000"))
	f.Add([]byte("1 ()) R 0 0 0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseStat(b)
		if err == nil && p.PID <= 0 {
			t.Errorf("accepted a pid of %d", p.PID)
		}
	})
}

func TestRunIDOf(t *testing.T) {
	id := "20250102-030405-a1b2c3"
	tests := []struct {
		name             string
		environ, cmdline string
		want             string
	}{
		{"environment", "PATH=/bin\x00" + EnvVar + "=" + id + "\x00", "make\x00-j2", id},
		{"qemu name", "", "qemu-system-x86_64\x00-name\x00nfslab-" + id + "-debian-stock,debug-threads=on", id},
		{"bad ID in environment", EnvVar + "=../../etc\x00", "sh", ""},
		{"other qemu", "", "qemu-system-x86_64\x00-name\x00myvm", ""},
		{"-name last", "", "qemu-system-x86_64\x00-name", ""},
		{"nothing", "HOME=/root", "bash", ""},
	}
	for _, tt := range tests {
		if got := runIDOf([]byte(tt.environ), []byte(tt.cmdline)); got != tt.want {
			t.Errorf("%s: run ID %q, want %q", tt.name, got, tt.want)
		}
	}
}

// fakeProcs is a process table for Registry tests.
type fakeProcs []Proc

func (f fakeProcs) Read(pid int) (Proc, error) {
	for _, p := range f {
		if p.PID == pid {
			return p, nil
		}
	}
	return Proc{}, os.ErrNotExist
}

func (f fakeProcs) List() ([]Proc, error) { return f, nil }

func TestRegister(t *testing.T) {
	dir := t.TempDir()
	me := Proc{PID: os.Getpid(), Comm: "nfslab", Start: 1000}
	reg := Registry{Dir: dir, Procs: fakeProcs{me}}
	first := Record{ID: "20250102-030405-a1b2c3", Command: "run", ReportDir: "/r/a"}
	release, err := reg.Register(first)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := reg.List()
	if err != nil || len(recs) != 1 {
		t.Fatalf("List = %+v, %v; want one record", recs, err)
	}
	if r := recs[0]; r.PID != me.PID || r.Start != me.Start || r.Comm != "nfslab" || r.Started.IsZero() || !reg.Alive(r) {
		t.Errorf("record %+v does not describe this live process", r)
	}
	// A second run may not write into a live run's report directory …
	_, err = reg.Register(Record{ID: "20250102-030405-d4e5f6", Command: "run", ReportDir: "/r/a"})
	var inUse *InUseError
	if !errors.As(err, &inUse) || inUse.Owner.ID != first.ID {
		t.Errorf("second run into the same report directory: %v, want an *InUseError naming %s", err, first.ID)
	}
	// … but may use its own.
	release2, err := reg.Register(Record{ID: "20250102-030405-d4e5f6", Command: "run", ReportDir: "/r/b"})
	if err != nil {
		t.Fatal(err)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := release2(); err != nil {
		t.Fatal(err)
	}
	if recs, _ := reg.List(); len(recs) != 0 {
		t.Errorf("records left after release: %+v", recs)
	}
	// A dead run's record does not block its report directory.
	dead := Record{ID: "20250102-030405-0a0b0c", PID: 999999, Comm: "nfslab", Start: 5, ReportDir: "/r/a"}
	writeRecord(t, reg, dead)
	release3, err := reg.Register(Record{ID: "20250102-030406-d4e5f6", Command: "run", ReportDir: "/r/a"})
	if err != nil {
		t.Errorf("a dead run's record blocked its report directory: %v", err)
	} else {
		release3()
	}
	if _, err := reg.Register(Record{ID: "not-an-id"}); err == nil {
		t.Error("registered a malformed run ID")
	}
	if err := os.WriteFile(filepath.Join(dir, "20250102-030405-ffffff.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if recs, err := reg.List(); err == nil || len(recs) != 1 {
		t.Errorf("List with a broken record = %+v, %v; want the good one and an error", recs, err)
	}
}
