// Package kernel provides the kernels nfslab boots: resolving and caching Debian's stock kernel
// package, and packing the subset of its modules the lab needs into a cpio archive that is
// appended to the initrd.
package kernel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nfslab/nfslab/lab/hosttools"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/internal/lines"
)

// Kernel is a kernel the lab can boot.
type Kernel struct {
	// Name is the kernel as the user named it (e.g. "debian-stock").
	Name string
	// Release is its `uname -r`, e.g. 6.1.0-56-amd64.
	Release string
	// Vmlinuz is the path of the bootable image (qemu -kernel).
	Vmlinuz string
	// ModulesDir is the path of its lib/modules/<Release> tree, or "" if it has no modules.
	ModulesDir string
	// Config is the path of its .config.
	Config string
	// Build identifies exactly what was booted: the Debian package and version, the recipe and
	// its cache key, or the image file's sha256.
	Build string
}

// StockName is the Name of the Debian stock kernel.
const StockName = "debian-stock"

// StockMetaPackage is the Debian meta package whose dependency is the current stock kernel.
const StockMetaPackage = "linux-image-amd64"

// Resolver finds kernels and keeps them in a cache.
type Resolver struct {
	Cache image.Cache
}

// kernelMeta is stored as kernel.json next to a cached kernel.
type kernelMeta struct {
	Name, Release, Package, Version string
	Vmlinuz, Config, ModulesDir     string // relative to the artefact directory
}

const (
	metaFile          = "kernel.json"
	stockRecipe       = "debian-stock-v2"
	stockArtefactKind = "kernel"
)

// DebianStock returns Debian's current stock kernel: the package linux-image-amd64 depends on
// (per the local apt lists), downloaded with apt-get and unpacked into the cache keyed by
// package name and version. When that version is cached, only two local apt-cache queries
// run; no network is used.
//
// The kernel's lib/modules tree is indexed with the host's depmod (the package leaves that to
// its postinst).
func (r Resolver) DebianStock(ctx context.Context, log *slog.Logger) (Kernel, error) {
	pkg, version, err := resolveStock(ctx)
	if err != nil {
		return Kernel{}, err
	}
	log.Debug("stock kernel resolved", "package", pkg, "version", version)
	inputs := image.Inputs{"recipe": stockRecipe, "package": pkg, "version": version}
	dir, err := r.Cache.Artefact(ctx, log, stockArtefactKind, inputs, func(ctx context.Context, dir string) error {
		return fetchDebianKernel(ctx, log, pkg, version, dir)
	})
	if err != nil {
		return Kernel{}, fmt.Errorf("stock kernel %s %s: %w", pkg, version, err)
	}
	k, err := loadKernel(dir)
	k.Build = pkg + " " + version
	return k, err
}

// resolveStock asks apt (locally) which package and version the stock kernel is.
func resolveStock(ctx context.Context) (pkg, version string, err error) {
	out, err := aptCache(ctx, "depends", "--important", StockMetaPackage)
	if err != nil {
		return "", "", err
	}
	pkg, err = parseDepends(out, StockMetaPackage)
	if err != nil {
		return "", "", err
	}
	out, err = aptCache(ctx, "policy", pkg)
	if err != nil {
		return "", "", err
	}
	version, err = parseCandidate(out, pkg)
	if err != nil {
		return "", "", err
	}
	return pkg, version, nil
}

func aptCache(ctx context.Context, args ...string) (string, error) {
	tool, err := hosttools.Require("apt-cache", "apt")
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || strings.Contains(stderr.String(), "No packages found") {
		msg := strings.TrimSpace(stderr.String())
		if strings.Contains(msg, "No packages found") || strings.Contains(msg, "Unable to locate") {
			return "", fmt.Errorf("apt-cache %s: the apt package lists do not know %s (%s): run apt-get update",
				strings.Join(args, " "), args[len(args)-1], msg)
		}
		return "", fmt.Errorf("apt-cache %s: %v: %s", strings.Join(args, " "), err, msg)
	}
	return string(out), nil
}

// parseDepends returns the first Depends of pkg in `apt-cache depends` output.
func parseDepends(out, pkg string) (string, error) {
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "|"))
		if dep, ok := strings.CutPrefix(l, "Depends: "); ok {
			dep = strings.Trim(strings.TrimSpace(dep), "<>")
			if dep != "" {
				return dep, nil
			}
		}
	}
	return "", fmt.Errorf("apt-cache depends %s shows no Depends (are the apt lists empty? run apt-get update):\n%s", pkg, out)
}

// parseCandidate returns the Candidate version in `apt-cache policy` output.
func parseCandidate(out, pkg string) (string, error) {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "Candidate: "); ok {
			v = strings.TrimSpace(v)
			if v == "" || v == "(none)" {
				break
			}
			return v, nil
		}
	}
	return "", fmt.Errorf("apt-cache policy %s shows no candidate version: run apt-get update", pkg)
}

// fetchDebianKernel downloads pkg=version and keeps boot/vmlinuz-*, boot/config-* and
// lib/modules/<release> in dir.
func fetchDebianKernel(ctx context.Context, log *slog.Logger, pkg, version, dir string) error {
	aptGet, err := hosttools.Require("apt-get", "apt")
	if err != nil {
		return err
	}
	dpkgDeb, err := hosttools.Require("dpkg-deb", "dpkg")
	if err != nil {
		return err
	}
	dl := filepath.Join(dir, "download")
	if err := os.Mkdir(dl, 0o755); err != nil {
		return err
	}
	start := time.Now()
	log.Info("downloading kernel package", "package", pkg, "version", version)
	// Running as root, apt would drop to _apt and warn that it cannot write here.
	if err := run(ctx, dl, aptGet, "download", "-o", "APT::Sandbox::User=root", pkg+"="+version); err != nil {
		hint := ""
		if strings.Contains(err.Error(), "404") {
			hint = " (the apt lists are out of date: run apt-get update)"
		}
		return fmt.Errorf("downloading %s=%s%s: %w", pkg, version, hint, err)
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("apt-get download %s left %d .deb files", pkg, len(debs))
	}
	log.Info("unpacking kernel package", "deb", filepath.Base(debs[0]), "elapsed", time.Since(start).Round(100*time.Millisecond))
	x := filepath.Join(dir, "extract")
	if err := run(ctx, dir, dpkgDeb, "-x", debs[0], x); err != nil {
		return fmt.Errorf("unpacking %s: %w", debs[0], err)
	}
	vmlinuz, err := single(filepath.Join(x, "boot", "vmlinuz-*"))
	if err != nil {
		return err
	}
	release := strings.TrimPrefix(filepath.Base(vmlinuz), "vmlinuz-")
	config := filepath.Join(x, "boot", "config-"+release)
	modules := ""
	for _, cand := range []string{filepath.Join(x, "lib", "modules", release), filepath.Join(x, "usr", "lib", "modules", release)} {
		if st, err := os.Stat(cand); err == nil && st.IsDir() {
			modules = cand
			break
		}
	}
	if _, err := os.Stat(config); err != nil {
		return fmt.Errorf("%s has no boot/config-%s: %w", pkg, release, err)
	}
	if modules == "" {
		return fmt.Errorf("%s has no lib/modules/%s", pkg, release)
	}
	// The package ships no modules.dep: its postinst runs depmod. Index the whole tree once
	// here, so that ModulesArchive can compute closures.
	if err := runDepmod(ctx, filepath.Dir(filepath.Dir(filepath.Dir(modules))), release, dir); err != nil {
		return err
	}
	meta := kernelMeta{
		Name: StockName, Release: release, Package: pkg, Version: version,
		Vmlinuz: filepath.Join("boot", "vmlinuz-"+release), Config: filepath.Join("boot", "config-"+release),
		ModulesDir: filepath.Join("lib", "modules", release),
	}
	for _, mv := range [][2]string{
		{vmlinuz, meta.Vmlinuz}, {config, meta.Config}, {modules, meta.ModulesDir},
	} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(mv[1])), 0o755); err != nil {
			return err
		}
		if err := os.Rename(mv[0], filepath.Join(dir, mv[1])); err != nil {
			return fmt.Errorf("keeping %s: %w", mv[1], err)
		}
	}
	for _, tmp := range []string{dl, x} {
		if err := os.RemoveAll(tmp); err != nil {
			return err
		}
	}
	b, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	log.Info("kernel unpacked", "release", release, "elapsed", time.Since(start).Round(100*time.Millisecond))
	return os.WriteFile(filepath.Join(dir, metaFile), append(b, '\n'), 0o644)
}

func loadKernel(dir string) (Kernel, error) {
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return Kernel{}, fmt.Errorf("reading cached kernel: %w", err)
	}
	var m kernelMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return Kernel{}, fmt.Errorf("reading cached kernel %s: %w", filepath.Join(dir, metaFile), err)
	}
	return Kernel{
		Name: m.Name, Release: m.Release,
		Vmlinuz:    filepath.Join(dir, m.Vmlinuz),
		Config:     filepath.Join(dir, m.Config),
		ModulesDir: filepath.Join(dir, m.ModulesDir),
	}, nil
}

func single(glob string) (string, error) {
	m, err := filepath.Glob(glob)
	if err != nil {
		return "", err
	}
	sort.Strings(m)
	if len(m) != 1 {
		return "", fmt.Errorf("want exactly one %s, found %d", glob, len(m))
	}
	return m[0], nil
}

// runDepmod runs depmod on <base>/lib/modules/<release> with an empty configuration directory
// (made under scratch), so the host's /etc/depmod.d does not influence the result.
func runDepmod(ctx context.Context, base, release, scratch string) error {
	depmod, err := hosttools.Require("depmod", "kmod")
	if err != nil {
		return err
	}
	conf, err := os.MkdirTemp(scratch, "depmod.d-")
	if err != nil {
		return err
	}
	defer os.Remove(conf)
	if err := run(ctx, scratch, depmod, "-b", base, "-C", conf, release); err != nil {
		return fmt.Errorf("indexing modules with depmod: %w", err)
	}
	return nil
}

// run runs a command in dir, returning its combined output in the error if it fails.
func run(ctx context.Context, dir, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, lines.Tail(string(out), 20))
		}
		return fmt.Errorf("%s: %w", filepath.Base(name), err)
	}
	return nil
}
