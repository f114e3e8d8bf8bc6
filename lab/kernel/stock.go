// Package kernel provides the kernels nfslab boots: resolving and caching Debian's stock kernel
// packages (one per StockLine), and packing the subset of its modules the lab needs into a cpio archive that is
// appended to the initrd.
package kernel

import (
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

	"github.com/nfslab/nfslab/internal/lines"
	"github.com/nfslab/nfslab/lab/hosttools"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/kernel/debian"
	"github.com/nfslab/nfslab/lab/kernel/recipe"
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

// StockName is the Name of Debian 12's stock kernel, the lab's default.
const StockName = "debian-stock"

// StockLine is a Debian kernel line the lab boots as Debian packages it: the image a meta
// package depends on, in some part of Debian's archive.
type StockLine struct {
	// Name is what a scenario calls it, e.g. "debian-stock-6.12".
	Name string
	// MetaPackage is the package whose dependency is the line's current kernel image.
	MetaPackage string
	// Archive is the debian.Archive it comes from: "" for the host's apt sources.
	Archive string
	// Description says what it is, in one line.
	Description string
}

// StockLines are the Debian kernels the lab knows, the default first.
func StockLines() []StockLine {
	return []StockLine{
		{StockName, "linux-image-amd64", "", "Debian 12's kernel (6.1, linux-image-amd64), downloaded with apt"},
		{"debian-stock-6.12", "linux-image-6.12-amd64", "", "Debian 12's 6.12 kernel (linux-image-6.12-amd64, bookworm-security), downloaded with apt"},
		{"debian-stock-5.10", "linux-image-amd64", "bullseye", "Debian 11's kernel (5.10, linux-image-amd64), downloaded with apt from bullseye without touching the host's apt sources"},
	}
}

// LookupStock returns the stock line of that name.
func LookupStock(name string) (StockLine, bool) {
	for _, l := range StockLines() {
		if l.Name == name {
			return l, true
		}
	}
	return StockLine{}, false
}

// Names returns every kernel name the lab knows: the stock lines, then the recipes.
func Names() []string {
	var out []string
	for _, l := range StockLines() {
		out = append(out, l.Name)
	}
	return append(out, recipe.Names()...)
}

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

// DebianStock returns Debian's current default stock kernel (StockName).
func (r Resolver) DebianStock(ctx context.Context, log *slog.Logger) (Kernel, error) {
	line, _ := LookupStock(StockName)
	return r.Stock(ctx, log, line)
}

// Stock returns the current kernel of a stock line: the package its meta package depends on
// (per the apt lists: the host's, or the private ones of its archive), downloaded with
// apt-get and unpacked into the cache keyed by package name and version. When that version
// is cached, only two local apt-cache queries run; no network is used (a private archive's
// lists are refreshed once a day, see debian.Open).
//
// The kernel's lib/modules tree is indexed with the host's depmod (the package leaves that to
// its postinst).
func (r Resolver) Stock(ctx context.Context, log *slog.Logger, line StockLine) (Kernel, error) {
	archive, err := debian.Lookup(line.Archive)
	if err != nil {
		return Kernel{}, fmt.Errorf("stock kernel %s: %w", line.Name, err)
	}
	apt, err := debian.Open(ctx, log, archive, r.Cache.Dir)
	if err != nil {
		return Kernel{}, fmt.Errorf("stock kernel %s: %w", line.Name, err)
	}
	pkg, version, err := resolveStock(ctx, apt, line.MetaPackage)
	if err != nil {
		return Kernel{}, fmt.Errorf("stock kernel %s: %w", line.Name, err)
	}
	log.Debug("stock kernel resolved", "line", line.Name, "package", pkg, "version", version)
	// Package and version name the kernel in every suite: the archive is not an input.
	inputs := image.Inputs{"recipe": stockRecipe, "package": pkg, "version": version}
	dir, err := r.Cache.Artefact(ctx, log, stockArtefactKind, inputs, func(ctx context.Context, dir string) error {
		return fetchDebianKernel(ctx, log, apt, line.Name, pkg, version, dir)
	})
	if err != nil {
		return Kernel{}, fmt.Errorf("stock kernel %s (%s %s): %w", line.Name, pkg, version, err)
	}
	k, err := loadKernel(dir)
	k.Name = line.Name
	k.Build = pkg + " " + version
	return k, err
}

// resolveStock asks apt (locally) which package and version a meta package's kernel is.
func resolveStock(ctx context.Context, apt *debian.Apt, meta string) (pkg, version string, err error) {
	if pkg, err = apt.Depends(ctx, meta); err != nil {
		return "", "", err
	}
	if version, err = apt.Candidate(ctx, pkg); err != nil {
		return "", "", err
	}
	return pkg, version, nil
}

// fetchDebianKernel downloads pkg=version and keeps boot/vmlinuz-*, boot/config-* and
// lib/modules/<release> in dir.
func fetchDebianKernel(ctx context.Context, log *slog.Logger, apt *debian.Apt, name, pkg, version, dir string) error {
	dl := filepath.Join(dir, "download")
	if err := os.Mkdir(dl, 0o755); err != nil {
		return err
	}
	start := time.Now()
	log.Info("downloading kernel package", "package", pkg, "version", version)
	deb, err := apt.Download(ctx, pkg, version, dl)
	if err != nil {
		return err
	}
	log.Info("unpacking kernel package", "deb", filepath.Base(deb), "elapsed", time.Since(start).Round(100*time.Millisecond))
	x := filepath.Join(dir, "extract")
	if err := debian.Unpack(ctx, deb, x); err != nil {
		return err
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
		Name: name, Release: release, Package: pkg, Version: version,
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
