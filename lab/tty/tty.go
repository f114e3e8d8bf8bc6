// Package tty decides how output for people looks: ANSI colours on a terminal, plain lines in
// CI and when the output is a file or a pipe.
package tty

import (
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Style is how lines for people are written.
type Style struct {
	// Terminal is true when the output is a terminal and not in CI: progress may show more
	// (e.g. colours), and people are watching it live.
	Terminal bool
	// Color allows ANSI colours.
	Color bool
}

// Env is what Detect looks at besides the writer: the environment (os.Getenv when nil).
type Env func(string) string

// Detect returns the style for w: a terminal outside CI (CI unset, empty, "false" or "0") gets
// colours unless noColor is set or NO_COLOR is set to anything (https://no-color.org). Anything
// else gets plain lines.
func Detect(w io.Writer, noColor bool, getenv Env) Style {
	if getenv == nil {
		getenv = os.Getenv
	}
	ci := getenv("CI")
	inCI := ci != "" && ci != "false" && ci != "0"
	term := IsTerminal(w) && !inCI
	return Style{Terminal: term, Color: term && !noColor && getenv("NO_COLOR") == "" && getenv("TERM") != "dumb"}
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Colours (SGR codes).
const (
	Red    = "31"
	Green  = "32"
	Yellow = "33"
	Cyan   = "36"
	Bold   = "1"
	Dim    = "2"
)

// Paint wraps s in the colour when colours are on.
func (s Style) Paint(color, text string) string {
	if !s.Color || text == "" {
		return text
	}
	return "\x1b[" + color + "m" + text + "\x1b[0m"
}

// Strip removes the ANSI colour sequences Paint adds.
func Strip(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "\x1b[")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		j := strings.IndexByte(s[i:], 'm')
		if j < 0 {
			return b.String()
		}
		s = s[i+j+1:]
	}
}
