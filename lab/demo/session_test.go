package demo

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/nfslab/nfslab/lab/tty"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader in different goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// A session on a real pseudo-terminal, as the presenter's: raw only once the shell spoke, keys
// to the shell but the go-on key, and the terminal as it was after Close.
func TestSessionOnATerminal(t *testing.T) {
	ptmx, tty1, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	defer ptmx.Close()
	defer tty1.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 30, Cols: 100}); err != nil {
		t.Fatal(err)
	}
	canonical := func() bool {
		tio, err := unix.IoctlGetTermios(int(tty1.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		return tio.Lflag&unix.ICANON != 0
	}
	if !canonical() {
		t.Fatal("a new terminal is not canonical")
	}

	host, guest := net.Pipe() // the shell port: host end, VM end
	defer host.Close()
	defer guest.Close()
	var screen syncBuffer
	var mu sync.Mutex
	nexts := 0
	s := &Session{
		In: tty1, Out: tty1, Screen: NewScreen(&screen, tty.Style{Terminal: true}), Shell: host,
		Kept:   map[byte]func(){0x1d: func() { mu.Lock(); nexts++; mu.Unlock() }},
		Resize: func(uint16, uint16) {},
	}
	go s.Run()
	if rows, cols, ok := Size(tty1); !ok || rows != 30 || cols != 100 {
		t.Errorf("Size = %d×%d %v, want 30×100", rows, cols, ok)
	}
	time.Sleep(50 * time.Millisecond)
	if !canonical() {
		t.Error("the terminal went raw before the shell said anything")
	}

	if _, err := guest.Write([]byte("root@nfslab-node:~# ")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the prompt is on the screen", func() bool { return strings.Contains(screen.String(), "root@nfslab-node:~# ") })
	eventually(t, "the terminal is raw", func() bool { return !canonical() })

	// The presenter types: a command, the go-on key, Ctrl-C.
	if _, err := ptmx.Write([]byte("ls\r\x1d\x03")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	_ = guest.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(guest, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != "ls\r\x03" {
		t.Errorf("the shell got %q, want %q", got, "ls\r\x03")
	}
	eventually(t, "one go-on", func() bool { mu.Lock(); defer mu.Unlock(); return nexts == 1 })

	s.Close()
	if !canonical() {
		t.Error("the terminal is still raw after Close")
	}
}
