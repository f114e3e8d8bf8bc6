package demo

import (
	"bytes"
	"io"
	"sync"

	"github.com/nfslab/nfslab/lab/tty"
)

// Prefix starts every line of the lab's on the presenter's screen, to tell it from the shell's.
const Prefix = "[nfslab]"

// maxTail bounds the shell's unfinished line the screen keeps to draw again.
const maxTail = 4096

// Screen is the presenter's screen: the shell's output and the lab's lines, written by
// different goroutines. On a terminal a line of the lab's that arrives while the shell's
// current line is unfinished (its prompt, what the presenter is typing) clears that line, is
// written, and the shell's line is drawn again below it; lines end in CR LF, as a terminal in
// raw mode needs. Elsewhere (a file, a pipe) lines are plain and end in LF.
type Screen struct {
	mu    sync.Mutex
	w     io.Writer
	style tty.Style
	tail  []byte // the shell's output since its last newline
	cut   bool   // the shell's unfinished line was longer than maxTail: not drawn again
}

// NewScreen writes to w in style.
func NewScreen(w io.Writer, style tty.Style) *Screen {
	return &Screen{w: w, style: style}
}

// Shell writes output of the shell.
func (s *Screen) Shell(p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := bytes.LastIndexByte(p, '\n'); i >= 0 {
		s.tail, s.cut = append(s.tail[:0], p[i+1:]...), false
	} else {
		s.tail = append(s.tail, p...)
	}
	if len(s.tail) > maxTail {
		s.tail, s.cut = s.tail[:0], true
	}
	_, err := s.w.Write(p)
	return err
}

// Say writes one of the lab's lines.
func (s *Screen) Say(l Line) {
	s.mu.Lock()
	defer s.mu.Unlock()
	text := s.style.Paint(tty.Bold, Prefix) + " " + s.style.Paint(l.Color, l.Text)
	var b bytes.Buffer
	mid := len(s.tail) > 0 || s.cut
	switch {
	case !s.style.Terminal:
		if mid {
			b.WriteString("\n")
		}
		b.WriteString(text + "\n")
		s.tail, s.cut = s.tail[:0], false
	case mid && !s.cut:
		b.WriteString("\r\x1b[K" + text + "\r\n")
		b.Write(s.tail)
	case mid:
		b.WriteString("\r\n" + text + "\r\n")
		s.cut = false
	default:
		b.WriteString(text + "\r\n")
	}
	_, _ = s.w.Write(b.Bytes())
}
