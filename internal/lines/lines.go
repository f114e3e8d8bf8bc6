// Package lines splits command output into lines, for progress reports and for the tail of the
// output in error messages.
package lines

import (
	"bytes"
	"strings"
	"sync"
)

// Writer is an io.Writer that splits what is written to it into lines (without the "\n" and a
// trailing "\r"), passes each to OnLine (if set) and keeps the last Keep of them. It is safe
// for concurrent use; OnLine is called with its lock held.
type Writer struct {
	OnLine func(string)
	Keep   int

	mu      sync.Mutex
	partial []byte
	last    []string
}

func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.line(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}

// Flush passes on a last line that had no newline.
func (w *Writer) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 {
		w.line(string(w.partial))
		w.partial = nil
	}
}

func (w *Writer) line(s string) {
	s = strings.TrimRight(s, "\r")
	if w.OnLine != nil {
		w.OnLine(s)
	}
	w.last = append(w.last, s)
	if len(w.last) > w.Keep {
		w.last = w.last[len(w.last)-w.Keep:]
	}
}

// Tail returns the last lines kept, joined by newlines.
func (w *Writer) Tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.last, "\n")
}

// Tail returns the last n lines of s, without a final newline.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
