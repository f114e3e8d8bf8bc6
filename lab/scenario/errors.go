package scenario

import (
	"fmt"
	"strings"
)

// Problem is one thing wrong with a scenario: the field it is about, as a path of YAML keys
// ("matrix.datapaths[1]"; empty for the file as a whole), and what is wrong.
type Problem struct {
	Field string `json:"field,omitempty"`
	Msg   string `json:"msg"`
}

func (p Problem) String() string {
	if p.Field == "" {
		return p.Msg
	}
	return p.Field + ": " + p.Msg
}

// Error lists every problem of a scenario, so that a user can fix them all at once.
type Error struct {
	File     string // the file as the user named it; empty for values that came from elsewhere (flags)
	Problems []Problem
}

// MaxShown is how many problems Error renders; the rest are counted ("… and 12 more"), so that
// a file with thousands of problems does not print thousands of lines.
const MaxShown = 20

// Error renders one line per problem, "file: field: what is wrong", at most MaxShown of them.
func (e *Error) Error() string {
	if len(e.Problems) == 0 {
		return e.prefix() + "invalid scenario"
	}
	n := min(len(e.Problems), MaxShown)
	lines := make([]string, n, n+1)
	for i, p := range e.Problems[:n] {
		lines[i] = e.prefix() + p.String()
	}
	if more := len(e.Problems) - n; more > 0 {
		lines = append(lines, fmt.Sprintf("%s… and %d more problem(s)", e.prefix(), more))
	}
	return strings.Join(lines, "\n")
}

func (e *Error) prefix() string {
	if e.File == "" {
		return ""
	}
	return e.File + ": "
}

// problems collects Problems; the zero value is ready to use.
type problems struct{ list []Problem }

func (p *problems) add(field, msg string) { p.list = append(p.list, Problem{Field: field, Msg: msg}) }

// err returns nil when nothing was added, else an *Error.
func (p *problems) err(file string) error {
	if len(p.list) == 0 {
		return nil
	}
	return &Error{File: file, Problems: p.list}
}

// without drops the problems about a field under one of the given paths (the same path, or a
// path below it), used to hide follow-on complaints about a value that was already reported.
func without(list []Problem, paths []string) []Problem {
	if len(paths) == 0 {
		return list
	}
	var out []Problem
next:
	for _, p := range list {
		for _, q := range paths {
			if q == "" || p.Field == q || strings.HasPrefix(p.Field, q+".") || strings.HasPrefix(p.Field, q+"[") {
				continue next
			}
		}
		out = append(out, p)
	}
	return out
}
