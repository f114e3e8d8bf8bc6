package debian

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"

	"github.com/nfslab/nfslab/internal/lines"
)

// HostSourceTarball is where a kernel source package of the host's archive (linux-source-6.1)
// installs its source.
func HostSourceTarball(pkg string) string { return "/usr/src/" + pkg + ".tar.xz" }

// HostSource returns the tarball of a kernel source package from the host's archive
// (HostSourceTarball) and the package's installed version, installing it with apt-get first
// when the tarball is missing (as root; otherwise the error says what to run). what names the
// work that needs it, for messages.
func HostSource(ctx context.Context, log *slog.Logger, pkg, what string, progress func(string)) (tarball, version string, err error) {
	tarball = HostSourceTarball(pkg)
	if _, err := os.Stat(tarball); err != nil {
		if err := installSource(ctx, log, pkg, what, progress); err != nil {
			return "", "", err
		}
	}
	v, err := installedVersion(ctx, pkg)
	if err != nil {
		return "", "", err
	}
	return tarball, v, nil
}

// installSource installs the kernel source package pkg from the host's archive.
func installSource(ctx context.Context, log *slog.Logger, pkg, what string, progress func(string)) error {
	install := "apt-get install -y " + pkg
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s needs %s; install it with: %s", what, HostSourceTarball(pkg), install)
	}
	log.Info("installing kernel source package", "package", pkg, "for", what)
	progress("installing " + pkg + " (apt-get)")
	cmd := exec.CommandContext(ctx, "apt-get", "install", "-y", pkg)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("installing the kernel source (%s): %w: %s", install, err, lines.Tail(string(out), 10))
	}
	if _, err := os.Stat(HostSourceTarball(pkg)); err != nil {
		return fmt.Errorf("installed %s but %s is still missing: %w", pkg, HostSourceTarball(pkg), err)
	}
	return nil
}

// installedVersion is the installed version of a Debian package.
func installedVersion(ctx context.Context, pkg string) (string, error) {
	out, err := exec.CommandContext(ctx, "dpkg-query", "-W", "-f=${Version}", pkg).Output()
	v := strings.TrimSpace(string(out))
	if err != nil || v == "" {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("finding the installed version of %s (dpkg-query): %v", pkg, err)
	}
	return v, nil
}
