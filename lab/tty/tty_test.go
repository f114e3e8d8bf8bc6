package tty

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// openPTY opens the terminal side of a new pseudo-terminal.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pts.Close() })
	return pts
}

func TestDetect(t *testing.T) {
	env := func(kv map[string]string) Env { return func(k string) string { return kv[k] } }
	var buf bytes.Buffer
	if s := Detect(&buf, false, env(nil)); s.Terminal || s.Color {
		t.Errorf("a buffer is not a terminal: %+v", s)
	}
	f := openPTY(t)
	tests := []struct {
		name    string
		noColor bool
		env     map[string]string
		want    Style
	}{
		{"terminal", false, nil, Style{Terminal: true, Color: true}},
		{"--no-color", true, nil, Style{Terminal: true}},
		{"NO_COLOR", false, map[string]string{"NO_COLOR": "1"}, Style{Terminal: true}},
		{"TERM=dumb", false, map[string]string{"TERM": "dumb"}, Style{Terminal: true}},
		{"CI=true", false, map[string]string{"CI": "true"}, Style{}},
		{"CI=false", false, map[string]string{"CI": "false"}, Style{Terminal: true, Color: true}},
	}
	for _, tt := range tests {
		if got := Detect(f, tt.noColor, env(tt.env)); got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestPaint(t *testing.T) {
	on, off := Style{Color: true}, Style{}
	if got := on.Paint(Red, "FAILED"); got != "\x1b[31mFAILED\x1b[0m" {
		t.Errorf("Paint = %q", got)
	}
	if got := off.Paint(Red, "FAILED"); got != "FAILED" {
		t.Errorf("Paint without colour = %q", got)
	}
	if got := Strip("a " + on.Paint(Green, "ok") + " b " + on.Paint(Dim, "x")); got != "a ok b x" {
		t.Errorf("Strip = %q", got)
	}
}
