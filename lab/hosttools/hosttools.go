// Package hosttools checks that the commands and files nfslab needs on the host are installed,
// and names the Debian packages that provide the missing ones.
package hosttools

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Tool is something nfslab needs on the host, a command or a file (the header of a -dev
// package), and the Debian package that provides it.
type Tool struct {
	// Command is looked up with Path. Empty for a file.
	Command string
	// File is a path that must exist. Empty for a command.
	File string
	// Package is the Debian package that provides it.
	Package string
}

func (t Tool) what() string {
	if t.Command != "" {
		return t.Command
	}
	return t.File
}

// sbinDirs are searched after $PATH: a non-root user's PATH often lacks them, yet depmod
// lives there and runs fine unprivileged.
func sbinDirs() []string { return []string{"/usr/sbin", "/sbin"} }

// Path finds a host command on $PATH or, failing that, in /usr/sbin and /sbin.
func Path(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	for _, d := range sbinDirs() {
		c := filepath.Join(d, name)
		if st, serr := os.Stat(c); serr == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return c, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH or in %s: %w", name, strings.Join(sbinDirs(), ", "), err)
}

// NoRecommends are the apt-get options of the install line suggested for tools nfslab runs.
const NoRecommends = "--no-install-recommends"

// Require returns the path of command (see Path), or a *MissingError naming it and pkg.
func Require(command, pkg string) (string, error) {
	p, err := Path(command)
	if err != nil {
		return "", &MissingError{Missing: []string{command}, Packages: []string{pkg}, AptOptions: NoRecommends}
	}
	return p, nil
}

// MissingError reports host tools that are not installed.
type MissingError struct {
	// For says what needs them ("building a kernel"); empty for nfslab in general.
	For string
	// Missing are the missing commands and files, in the order they were checked.
	Missing []string
	// Packages are the Debian packages providing them, sorted and deduplicated.
	Packages []string
	// AptOptions are the options of the suggested apt-get install, e.g. NoRecommends or "-y".
	AptOptions string
}

// InstallCommand is the command line that installs the missing packages on Debian or Ubuntu.
func (e *MissingError) InstallCommand() string {
	cmd := "apt-get install "
	if e.AptOptions != "" {
		cmd += e.AptOptions + " "
	}
	return cmd + strings.Join(e.Packages, " ")
}

func (e *MissingError) Error() string {
	what := "missing host tools"
	if e.For != "" {
		what += " for " + e.For
	}
	return fmt.Sprintf("%s: %s; install them with: %s", what, strings.Join(e.Missing, ", "), e.InstallCommand())
}

// Set is the host tools needed for one purpose.
type Set struct {
	// For and AptOptions are copied into the MissingError.
	For, AptOptions string
	Tools           []Tool
}

// Check verifies that every tool of the set is installed: commands with Path, files with
// os.Stat. If any is missing the error is a *MissingError.
func (s Set) Check() error {
	return s.CheckWith(
		func(name string) error { _, err := Path(name); return err },
		func(p string) bool { _, err := os.Stat(p); return err == nil },
	)
}

// CheckWith is Check with other ways to look up commands and files, for tests.
func (s Set) CheckWith(look func(command string) error, exists func(file string) bool) error {
	e := MissingError{For: s.For, AptOptions: s.AptOptions}
	pkgs := map[string]bool{}
	for _, t := range s.Tools {
		var ok bool
		if t.Command != "" {
			ok = look(t.Command) == nil
		} else {
			ok = exists(t.File)
		}
		if !ok {
			e.Missing = append(e.Missing, t.what())
			pkgs[t.Package] = true
		}
	}
	if len(e.Missing) == 0 {
		return nil
	}
	for p := range pkgs {
		e.Packages = append(e.Packages, p)
	}
	sort.Strings(e.Packages)
	return &e
}
