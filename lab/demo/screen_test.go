package demo

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/nfslab/nfslab/lab/tty"
)

func TestScreen(t *testing.T) {
	term := tty.Style{Terminal: true}
	type write struct {
		shell string // shell output, else a line of the lab's
		say   string
	}
	tests := []struct {
		name   string
		style  tty.Style
		writes []write
		want   string
	}{
		{"a line at the start of a line", term,
			[]write{{shell: "ok\r\n"}, {say: "step"}},
			"ok\r\n[nfslab] step\r\n"},
		{"a line over the prompt: cleared, written, prompt drawn again", term,
			[]write{{shell: "out\r\nroot@n:~# ls /mn"}, {say: "kernel_connect handed 10.0.0.11:2049"}},
			"out\r\nroot@n:~# ls /mn\r\x1b[K[nfslab] kernel_connect handed 10.0.0.11:2049\r\nroot@n:~# ls /mn"},
		{"the prompt is drawn again after each line, and the shell goes on", term,
			[]write{{shell: "$ "}, {say: "a"}, {say: "b"}, {shell: "x\r\n$ "}},
			"$ \r\x1b[K[nfslab] a\r\n$ \r\x1b[K[nfslab] b\r\n$ x\r\n$ "},
		{"a shell line too long to keep is not drawn again", term,
			[]write{{shell: strings.Repeat("y", maxTail+1)}, {say: "a"}, {say: "b"}},
			strings.Repeat("y", maxTail+1) + "\r\n[nfslab] a\r\n[nfslab] b\r\n"},
		{"colours on a colour terminal", tty.Style{Terminal: true, Color: true},
			[]write{{say: "verdict"}},
			"\x1b[1m[nfslab]\x1b[0m \x1b[32mverdict\x1b[0m\r\n"},
		{"plain lines in a file", tty.Style{},
			[]write{{shell: "$ "}, {say: "a"}, {say: "b"}, {shell: "x\n"}},
			"$ \n[nfslab] a\n[nfslab] b\nx\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			s := NewScreen(&out, tt.style)
			for _, w := range tt.writes {
				if w.say != "" {
					color := ""
					if w.say == "verdict" {
						color = tty.Green
					}
					s.Say(Line{Text: w.say, Color: color})
					continue
				}
				if err := s.Shell([]byte(w.shell)); err != nil {
					t.Fatal(err)
				}
			}
			if got := out.String(); got != tt.want {
				t.Errorf("screen\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// chunks reads s a few bytes at a time, as a terminal delivers keys.
type chunks struct {
	s string
	n int
}

func (c *chunks) Read(p []byte) (int, error) {
	if c.s == "" {
		return 0, io.EOF
	}
	n := min(c.n, len(p), len(c.s))
	copy(p, c.s[:n])
	c.s = c.s[n:]
	return n, nil
}

func TestKeys(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		chunk       int
		shell       string
		next, leave int
	}{
		{"plain keys pass", "ls\r", 1, "ls\r", 0, 0},
		{"the key is kept", "\x1d", 1, "", 1, 0},
		{"between keys", "a\x1db\x1d\x1dc", 3, "abc", 3, 0},
		{"Ctrl-C and Ctrl-D go to the shell", "\x03\x04", 8, "\x03\x04", 0, 0},
		{"two kept keys", "x\x1c\x1dy\x1c", 2, "xy", 1, 2},
		{"UTF-8 passes whole", "ls →\x1d", 2, "ls →", 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var shell bytes.Buffer
			next, leave := 0, 0
			kept := map[byte]func(){0x1d: func() { next++ }, 0x1c: func() { leave++ }}
			if err := Keys(&chunks{tt.in, tt.chunk}, &shell, kept); err != nil {
				t.Fatal(err)
			}
			if shell.String() != tt.shell || next != tt.next || leave != tt.leave {
				t.Errorf("shell got %q, %d and %d presses, want %q, %d and %d", shell.String(), next, leave, tt.shell, tt.next, tt.leave)
			}
		})
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("port closed") }

func TestKeysStopWhenTheShellIsGone(t *testing.T) {
	err := Keys(strings.NewReader("ls\r"), failWriter{}, map[byte]func(){0x1d: func() {}})
	if err == nil || !strings.Contains(err.Error(), "port closed") {
		t.Errorf("Keys = %v, want the write error", err)
	}
}

// FuzzKeys: whatever the presenter types, the shell gets every byte but the key, in order, and
// each key press is one go-on.
func FuzzKeys(f *testing.F) {
	f.Add([]byte("ls /mnt\r\x1d"), uint8(1))
	f.Add([]byte("\x1d\x1d\x1b[A"), uint8(7))
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		const key = 0x1d
		var shell bytes.Buffer
		next := 0
		if err := Keys(&chunks{string(in), int(chunk%16) + 1}, &shell, map[byte]func(){key: func() { next++ }}); err != nil {
			t.Fatal(err)
		}
		if want := bytes.ReplaceAll(in, []byte{key}, nil); !bytes.Equal(shell.Bytes(), want) {
			t.Errorf("shell got %q, want %q", shell.Bytes(), want)
		}
		if want := bytes.Count(in, []byte{key}); next != want {
			t.Errorf("%d go-ons, want %d", next, want)
		}
	})
}
