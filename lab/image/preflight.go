package image

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// hostTool is a command nfslab runs on the host and the Debian package that ships it.
type hostTool struct{ Command, Package string }

// hostTools are the commands the VM path needs on the host.
func hostTools() []hostTool {
	return []hostTool{
		{"qemu-system-x86_64", "qemu-system-x86"},
		{"mmdebstrap", "mmdebstrap"},
		{"apt-get", "apt"},
		{"apt-cache", "apt"},
		{"dpkg-deb", "dpkg"},
		{"depmod", "kmod"},
	}
}

// sbinDirs are searched after $PATH: a non-root user's PATH often lacks them, yet depmod
// lives there and runs fine unprivileged.
func sbinDirs() []string { return []string{"/usr/sbin", "/sbin"} }

// ToolPath finds a host command on $PATH or, failing that, in /usr/sbin and /sbin.
func ToolPath(name string) (string, error) {
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

// MissingToolsError reports host commands that are not installed.
type MissingToolsError struct {
	// Commands are the missing commands, in a fixed order.
	Commands []string
	// Packages are the Debian packages providing them, sorted and deduplicated.
	Packages []string
}

// InstallCommand is the command line that installs the missing packages on Debian or Ubuntu.
func (e *MissingToolsError) InstallCommand() string {
	return "apt-get install --no-install-recommends " + strings.Join(e.Packages, " ")
}

func (e *MissingToolsError) Error() string {
	return fmt.Sprintf("missing host tools: %s; install them with: %s",
		strings.Join(e.Commands, ", "), e.InstallCommand())
}

// CheckHostTools verifies that the host commands needed to build images and boot VMs
// (qemu-system-x86_64, mmdebstrap, apt-get, apt-cache, dpkg-deb, depmod) are installed. If any
// is missing the error is a *MissingToolsError.
func CheckHostTools() error {
	return checkTools(hostTools(), ToolPath)
}

func checkTools(tools []hostTool, look func(string) (string, error)) error {
	var e MissingToolsError
	pkgs := map[string]bool{}
	for _, t := range tools {
		if _, err := look(t.Command); err != nil {
			e.Commands = append(e.Commands, t.Command)
			pkgs[t.Package] = true
		}
	}
	if len(e.Commands) == 0 {
		return nil
	}
	for p := range pkgs {
		e.Packages = append(e.Packages, p)
	}
	sort.Strings(e.Packages)
	return &e
}
