package recipe

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// buildTool is something a kernel build needs on the host: a command, or (for -dev packages)
// a header file, and the Debian package that provides it.
type buildTool struct {
	// Command is looked up on $PATH, then in /usr/sbin and /sbin. Empty for a header.
	Command string
	// Header is a path that must exist, for libraries. Empty for a command.
	Header  string
	Package string
}

func (t buildTool) what() string {
	if t.Command != "" {
		return t.Command
	}
	return t.Header
}

// buildTools are the host tools `make bzImage` and Build need for a 6.1 x86_64 kernel.
func buildTools() []buildTool {
	return []buildTool{
		{Command: "gcc", Package: "build-essential"},
		{Command: "make", Package: "build-essential"},
		{Command: "bc", Package: "bc"},
		{Command: "bison", Package: "bison"},
		{Command: "flex", Package: "flex"},
		{Header: "/usr/include/gelf.h", Package: "libelf-dev"},
		{Header: "/usr/include/openssl/opensslv.h", Package: "libssl-dev"},
		{Command: "xz", Package: "xz-utils"},
		{Command: "cpio", Package: "cpio"},
		{Command: "depmod", Package: "kmod"},
		{Command: "pahole", Package: "dwarves"},
		{Command: "rsync", Package: "rsync"},
		{Command: "patch", Package: "patch"},
		{Command: "tar", Package: "tar"},
		{Command: "nice", Package: "coreutils"},
		{Command: "dpkg-query", Package: "dpkg"},
	}
}

// MissingToolsError lists the host tools a kernel build needs that are not installed.
type MissingToolsError struct {
	// Missing are the missing commands and header files, in a fixed order.
	Missing []string
	// Packages are the Debian packages that provide them, sorted and deduplicated.
	Packages []string
}

// InstallCommand is the command line that installs the missing packages on Debian.
func (e *MissingToolsError) InstallCommand() string {
	return "apt-get install -y " + strings.Join(e.Packages, " ")
}

func (e *MissingToolsError) Error() string {
	return fmt.Sprintf("missing host tools for building a kernel: %s; install them with: %s",
		strings.Join(e.Missing, ", "), e.InstallCommand())
}

// CheckBuildTools verifies that the host has what a kernel build needs (gcc, make, bc, bison,
// flex, libelf and libssl headers, xz, cpio, kmod, pahole, rsync, patch). If anything is
// missing the error is a *MissingToolsError with the apt-get line that installs it.
func CheckBuildTools() error {
	return checkTools(buildTools(), lookTool, fileExists)
}

func checkTools(tools []buildTool, look func(string) error, exists func(string) bool) error {
	var e MissingToolsError
	pkgs := map[string]bool{}
	for _, t := range tools {
		ok := true
		if t.Command != "" {
			ok = look(t.Command) == nil
		} else {
			ok = exists(t.Header)
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

// lookTool finds a command on $PATH or in /usr/sbin, /sbin (where depmod lives, often not on
// a non-root user's PATH).
func lookTool(name string) error {
	_, err := exec.LookPath(name)
	if err == nil {
		return nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin"} {
		st, serr := os.Stat(filepath.Join(d, name))
		if serr == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return nil
		}
	}
	return err
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
