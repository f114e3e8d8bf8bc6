package demo

import (
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/term"
)

// Keys copies the presenter's keys from in to shell, but keeps the keys of kept for itself: for
// each press of one its function is called instead. It returns when in ends (nil) or a read or
// write fails.
func Keys(in io.Reader, shell io.Writer, kept map[byte]func()) error {
	buf := make([]byte, 1024)
	for {
		n, err := in.Read(buf)
		p := buf[:n]
		for len(p) > 0 {
			i := 0
			for i < len(p) && kept[p[i]] == nil {
				i++
			}
			if i > 0 {
				if _, werr := shell.Write(p[:i]); werr != nil {
					return werr
				}
			}
			if i < len(p) {
				kept[p[i]]()
				i++
			}
			p = p[i:]
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// Session attaches the presenter's terminal to the shell in the VM: the shell's output goes to
// the screen and, once the shell has said something, the terminal is put in raw mode (every key,
// Ctrl-C and Ctrl-D included, goes to the shell) and the keys flow to it.
type Session struct {
	In     *os.File                // the presenter's keyboard
	Out    *os.File                // the presenter's screen, for its size
	Screen *Screen                 // where the shell's output goes
	Shell  io.ReadWriter           // the shell port
	Kept   map[byte]func()         // keys kept from the shell, and what each does (control keys)
	Resize func(rows, cols uint16) // the terminal's size changed

	mu       sync.Mutex
	restore  func()         // puts the terminal back; nil while not raw
	winch    chan os.Signal // SIGWINCH while the shell runs
	attached bool
	closed   bool
}

// Run relays the shell's output until the shell port ends; it attaches the keyboard at the
// shell's first output.
func (s *Session) Run() {
	buf := make([]byte, 4096)
	for {
		n, err := s.Shell.Read(buf)
		if n > 0 {
			s.attach()
			if werr := s.Screen.Shell(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// attach puts the terminal in raw mode and starts relaying keys and size changes, once.
func (s *Session) attach() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.attached || s.closed {
		return
	}
	s.attached = true
	if fd := int(s.In.Fd()); term.IsTerminal(fd) {
		if st, err := term.MakeRaw(fd); err == nil {
			s.restore = func() { _ = term.Restore(fd, st) }
		}
	}
	winch := make(chan os.Signal, 1)
	s.winch = winch
	signal.Notify(winch, syscall.SIGWINCH)
	go func() {
		for range winch {
			if rows, cols, ok := Size(s.Out); ok {
				s.Resize(rows, cols)
			}
		}
	}()
	// This goroutine ends at the first key after the shell port is closed (a read of the
	// terminal cannot be interrupted); the process is about to exit then.
	go func() { _ = Keys(s.In, s.Shell, s.Kept) }()
}

// Close puts the terminal back as it was and stops following its size.
func (s *Session) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.restore != nil {
		s.restore()
		s.restore = nil
	}
	if s.winch != nil {
		signal.Stop(s.winch)
		close(s.winch)
		s.winch = nil
	}
}

// Size is the size of the terminal f, if it is one.
func Size(f *os.File) (rows, cols uint16, ok bool) {
	w, h, err := term.GetSize(int(f.Fd()))
	if err != nil || w <= 0 || h <= 0 || w > 0xffff || h > 0xffff {
		return 0, 0, false
	}
	return uint16(h), uint16(w), true
}
