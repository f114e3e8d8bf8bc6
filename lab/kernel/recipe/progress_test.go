package recipe

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStatusLine: the progress line says which step of how many runs, and during the compile
// how many kbuild steps are done of the number the last build of the same config took.
func TestStatusLine(t *testing.T) {
	feed := func(s *status) {
		for _, l := range []string{"  CC      init/main.o", "make[1]: Entering directory", "  LD      vmlinux.o", "  CC      net/socket.o"} {
			s.makeLine(l)
		}
	}
	tests := []struct {
		name     string
		expected int
		compile  bool
		want     string
	}{
		{"known total", 8, true, "kernel v: step 4 of 6, compiling bzImage: 3 of ~8 kbuild steps (37%), now CC net/socket.o ["},
		{"first build", 0, true, "kernel v: step 4 of 6, compiling bzImage: 3 kbuild steps (the total is known after a first build), now CC net/socket.o ["},
		{"more than last time", 2, true, "kernel v: step 4 of 6, compiling bzImage: 3 of ~2 kbuild steps (99%), now CC net/socket.o ["},
		{"not the compile", 8, false, "kernel v: step 4 of 6, compiling bzImage ["},
	}
	for _, tt := range tests {
		s := newStatus("v", time.Now(), tt.expected)
		s.setStage("compiling bzImage", 4, 6, tt.compile)
		feed(s)
		if got := s.line(); !strings.HasPrefix(got, tt.want) {
			t.Errorf("%s: %q, want %q…", tt.name, got, tt.want)
		}
	}
	s := newStatus("v", time.Now(), 0)
	s.setStage("configuring", 3, 6, false)
	if got := s.line(); !strings.HasPrefix(got, "kernel v: step 3 of 6, configuring [") {
		t.Errorf("before the compile: %q", got)
	}
}

func TestStepsFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "kbuild-steps-x.txt")
	if n := readSteps(p); n != 0 {
		t.Errorf("no file: %d", n)
	}
	if err := writeSteps(p, 2890); err != nil {
		t.Fatal(err)
	}
	if n := readSteps(p); n != 2890 {
		t.Errorf("read back %d, want 2890", n)
	}
	vuln, err := Lookup("vulnerable-6.1")
	if err != nil {
		t.Fatal(err)
	}
	control, err := Lookup("control-6.1")
	if err != nil {
		t.Fatal(err)
	}
	if vuln.stepsKey("1") != control.stepsKey("1") {
		t.Error("recipes that differ only in their patch have different step counts")
	}
	if vuln.stepsKey("1") == vuln.stepsKey("2") {
		t.Error("another source version has the same step count key")
	}
}
