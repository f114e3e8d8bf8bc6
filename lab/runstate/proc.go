package runstate

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Proc is one process of the process table, as much of it as cleanup needs.
type Proc struct {
	PID, PPID, PGID int
	Comm            string
	Start           uint64 // clock ticks after boot (/proc/<pid>/stat field 22)
	// RunID is the nfslab run that started it: EnvVar in its environment, else a qemu
	// -name nfslab-<id>-… on its command line; empty for other processes.
	RunID string
	// Cmdline is the command line, arguments separated by spaces, for messages.
	Cmdline string
}

// ProcReader reads the process table.
type ProcReader interface {
	// Read returns one process; an error when there is none with that pid.
	Read(pid int) (Proc, error)
	// List returns every process that could be read.
	List() ([]Proc, error)
}

// ProcFS reads processes from a procfs mounted at Root (normally /proc).
type ProcFS struct{ Root string }

// Read returns process pid.
func (p ProcFS) Read(pid int) (Proc, error) {
	dir := filepath.Join(p.Root, strconv.Itoa(pid))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return Proc{}, err
	}
	pr, err := ParseStat(stat)
	if err != nil {
		return Proc{}, fmt.Errorf("%s/stat: %w", dir, err)
	}
	cmdline, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
	environ, _ := os.ReadFile(filepath.Join(dir, "environ")) // only our own user's, or all as root
	pr.RunID = runIDOf(environ, cmdline)
	pr.Cmdline = strings.TrimSpace(string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
	return pr, nil
}

// List returns every process in Root; processes that exit while it reads are left out.
func (p ProcFS) List() ([]Proc, error) {
	entries, err := os.ReadDir(p.Root)
	if err != nil {
		return nil, fmt.Errorf("read the process table: %w", err)
	}
	var out []Proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		if pr, err := p.Read(pid); err == nil {
			out = append(out, pr)
		}
	}
	return out, nil
}

// ParseStat parses /proc/<pid>/stat: "pid (comm) state ppid pgrp session … starttime …". The
// name may itself hold spaces and parentheses, so it is everything between the first "(" and
// the last ")".
func ParseStat(b []byte) (Proc, error) {
	s := string(bytes.TrimSpace(b))
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 1 || closing < open {
		return Proc{}, errors.New("no (name) in stat")
	}
	pid, err := strconv.Atoi(strings.TrimSpace(s[:open]))
	if err != nil || pid <= 0 {
		return Proc{}, fmt.Errorf("bad pid %q in stat", s[:open])
	}
	f := strings.Fields(s[closing+1:])
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 20 {
		return Proc{}, fmt.Errorf("stat has %d fields after the name, want at least 20", len(f))
	}
	ppid, err1 := strconv.Atoi(f[1])
	pgid, err2 := strconv.Atoi(f[2])
	start, err3 := strconv.ParseUint(f[19], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return Proc{}, fmt.Errorf("stat: %w", err)
	}
	return Proc{PID: pid, PPID: ppid, PGID: pgid, Comm: s[open+1 : closing], Start: start}, nil
}

// runIDOf finds the run ID in a process's environment (NUL-separated) or, for qemu, in the
// -name argument of its command line.
func runIDOf(environ, cmdline []byte) string {
	for _, kv := range bytes.Split(environ, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte(EnvVar+"=")); ok && ValidID(string(v)) {
			return string(v)
		}
	}
	args := bytes.Split(cmdline, []byte{0})
	for i := 0; i+1 < len(args); i++ {
		if string(args[i]) != "-name" {
			continue
		}
		name, _, _ := strings.Cut(string(args[i+1]), ",")
		if rest, ok := strings.CutPrefix(name, QEMUNamePrefix); ok && len(rest) >= 22 && ValidID(rest[:22]) {
			return rest[:22]
		}
	}
	return ""
}
