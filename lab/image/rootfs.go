package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/nfslab/nfslab/internal/lines"
	"github.com/nfslab/nfslab/lab/hosttools"
	"github.com/nfslab/nfslab/lab/internal/procgroup"
	"github.com/nfslab/nfslab/manifests"
)

// Facts of the guest root filesystem.
const (
	// Suite is the Debian release the rootfs is built from.
	Suite = "bookworm"
	// Hostname is the guest's host name, also in its /etc/hosts.
	Hostname = "nfslab-node"
	// IDMapDomain is the NFSv4 ID-mapping domain written to the guest's /etc/idmapd.conf.
	IDMapDomain = "nfslab.local"
	// RootfsFile is the file name of the rootfs cpio inside its artefact directory.
	RootfsFile = "rootfs.cpio"
	// RootfsPackagesFile lists "package version" of everything installed, next to RootfsFile.
	RootfsPackagesFile = "packages.txt"

	// rootfsRecipeVersion names the build procedure; bump it when the code below changes the
	// result in a way the recorded inputs do not capture.
	rootfsRecipeVersion = "rootfs-v1"

	// mergedUsrHooks is mmdebstrap's hook directory that sets up merged /usr with directory
	// symlinks (as debootstrap does) and installs usr-is-merged. Without it apt satisfies
	// init-system-helpers' "usrmerge | usr-is-merged" with usrmerge, which drags in perl
	// (~50 MB).
	mergedUsrHooks = "/usr/share/mmdebstrap/hooks/merged-usr"
)

// rootfsRecipe is everything that decides the content of the rootfs.
type rootfsRecipe struct {
	Suite    string
	Arch     string
	Packages []string
	// DpkgExcludes are dpkg path-exclude globs: files never unpacked.
	DpkgExcludes []string
	// Trim are path globs (no leading "/") removed when packing; a match on a directory removes
	// everything below it.
	Trim []string
	// HookDirs are mmdebstrap --hook-dir directories.
	HookDirs []string
	// Files are written over (or added to) the tree, by path.
	Files []fixup
}

type fixup struct {
	Path     string
	Mode     uint32 // type bits and permissions
	Data     string // regular file contents
	Linkname string // symlink target
}

func (f fixup) String() string {
	return fmt.Sprintf("%s %o %q %q", f.Path, f.Mode, f.Linkname, f.Data)
}

// embeddedPackages reads the package lists of manifests named by files, in order.
func embeddedPackages(files ...string) ([]string, error) {
	var pkgs []string
	for _, name := range files {
		text, err := manifests.FS.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("reading embedded package list: %w", err)
		}
		p, err := ParsePackageList(string(text))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		pkgs = append(pkgs, p...)
	}
	return pkgs, nil
}

// defaultRootfsRecipe is the nfslab guest: minbase plus manifests/rootfs-packages.txt.
func defaultRootfsRecipe() (rootfsRecipe, error) {
	return rootfsRecipeOf(manifests.RootfsPackages)
}

// kindRootfsRecipe is the guest of the kind form: the default one plus a Docker engine.
func kindRootfsRecipe() (rootfsRecipe, error) {
	return rootfsRecipeOf(manifests.RootfsPackages, manifests.RootfsKindPackages)
}

func rootfsRecipeOf(lists ...string) (rootfsRecipe, error) {
	pkgs, err := embeddedPackages(lists...)
	if err != nil {
		return rootfsRecipe{}, err
	}
	arch, err := debianArch(runtime.GOARCH)
	if err != nil {
		return rootfsRecipe{}, err
	}
	return rootfsRecipe{
		Suite:    Suite,
		Arch:     arch,
		Packages: pkgs,
		DpkgExcludes: []string{
			"/usr/share/man/*", "/usr/share/doc/*", "/usr/share/info/*",
			"/usr/share/locale/*", "/usr/share/lintian/*",
		},
		Trim: []string{
			// Documentation and localisation the guest never reads.
			"usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
			"usr/share/i18n", "usr/share/lintian", "usr/share/bash-completion", "usr/share/bug",
			"usr/share/common-licenses", "usr/share/gcc", "usr/share/gdb", "usr/share/menu",
			// Time zones: the guest runs in UTC, glibc's default when /etc/localtime is absent.
			"usr/share/zoneinfo", "etc/localtime", "etc/timezone",
			// apt and dpkg are never run in the guest: lists, caches and logs.
			"var/cache/apt/*", "var/lib/apt/lists/*", "var/cache/debconf/*-old",
			"var/cache/ldconfig/*", "var/log/*.log", "var/log/apt/*",
			// python3 comes in only through nfs-common's Depends, for these three scripts.
			"usr/bin/python3*", "usr/bin/py3*", "usr/lib/python3*", "usr/share/python3",
			"usr/lib/*-linux-gnu/libpython3*", "usr/share/pyshared",
			"usr/sbin/mountstats", "usr/sbin/nfsiostat", "usr/sbin/nfsdclnts",
			// Full perl beyond perl-base, should usrmerge bring it in (see mergedUsrHooks).
			"usr/share/perl", "usr/lib/*-linux-gnu/perl", "usr/lib/*-linux-gnu/libperl.so*",
		},
		Files: []fixup{
			// ganesha's VFS export is not created without it.
			{Path: "etc/mtab", Mode: ModeSymlink | 0o777, Linkname: "/proc/self/mounts"},
			// Without the host name here and a Domain in idmapd.conf, ganesha's ID mapper
			// takes 10 s to start.
			{Path: "etc/hosts", Mode: ModeRegular | 0o644,
				Data: "127.0.0.1\tlocalhost " + Hostname + "\n::1\tlocalhost ip6-localhost ip6-loopback\n"},
			{Path: "etc/hostname", Mode: ModeRegular | 0o644, Data: Hostname + "\n"},
			{Path: "etc/idmapd.conf", Mode: ModeRegular | 0o644,
				Data: "[General]\nDomain = " + IDMapDomain + "\n\n[Mapping]\nNobody-User = nobody\nNobody-Group = nogroup\n"},
			// ganesha's runtime directories (/var/run is a symlink to /run).
			{Path: "run", Mode: ModeDir | 0o755},
			{Path: "run/ganesha", Mode: ModeDir | 0o755},
			{Path: "var/lib/nfs/ganesha", Mode: ModeDir | 0o755},
			{Path: "var/log/ganesha", Mode: ModeDir | 0o755},
		},
		HookDirs: MergedUsrHookDirs(),
	}, nil
}

// MergedUsrHookDirs is mmdebstrap's merged-/usr hook directory when it is installed, for any
// mmdebstrap run of the lab (the guest's rootfs, the kind node image).
func MergedUsrHookDirs() []string {
	if st, err := os.Stat(mergedUsrHooks); err == nil && st.IsDir() {
		return []string{mergedUsrHooks}
	}
	return nil
}

func debianArch(goarch string) (string, error) {
	switch goarch {
	case "amd64", "arm64", "riscv64", "s390x", "ppc64le":
		return goarch, nil
	case "386":
		return "i386", nil
	case "arm":
		return "armhf", nil
	}
	return "", fmt.Errorf("no Debian architecture for GOARCH=%s", goarch)
}

// ParsePackageList parses a package list: one name per line, '#' starts a comment, blank lines
// are ignored. The result is sorted and deduplicated.
func ParsePackageList(text string) ([]string, error) {
	seen := map[string]bool{}
	var pkgs []string
	for i, line := range strings.Split(text, "\n") {
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		f := strings.Fields(line)
		switch len(f) {
		case 0:
			continue
		case 1:
		default:
			return nil, fmt.Errorf("line %d: want one package name, got %q", i+1, strings.TrimSpace(line))
		}
		if strings.ContainsAny(f[0], ",=/") {
			return nil, fmt.Errorf("line %d: invalid package name %q", i+1, f[0])
		}
		if !seen[f[0]] {
			seen[f[0]] = true
			pkgs = append(pkgs, f[0])
		}
	}
	if len(pkgs) == 0 {
		return nil, errors.New("no packages listed")
	}
	sort.Strings(pkgs)
	return pkgs, nil
}

func (r rootfsRecipe) inputs() Inputs {
	files := make([]string, len(r.Files))
	for i, f := range r.Files {
		files[i] = f.String()
	}
	return Inputs{
		"recipe":        rootfsRecipeVersion,
		"suite":         r.Suite,
		"arch":          r.Arch,
		"packages":      strings.Join(r.Packages, ","),
		"dpkg-excludes": strings.Join(r.DpkgExcludes, ","),
		"trim":          strings.Join(r.Trim, ","),
		"files":         strings.Join(files, ";"),
		"hook-dirs":     strings.Join(r.HookDirs, ","),
	}
}

func (r rootfsRecipe) mmdebstrapArgs() []string {
	args := []string{
		"--variant=minbase",
		"--format=tar",
		"--architectures=" + r.Arch,
		"--include=" + strings.Join(r.Packages, ","),
		"--aptopt=Acquire::Languages \"none\"",
		"--dpkgopt=force-unsafe-io",
	}
	for _, h := range r.HookDirs {
		args = append(args, "--hook-dir="+h)
	}
	for _, x := range r.DpkgExcludes {
		args = append(args, "--dpkgopt=path-exclude="+x)
	}
	return append(args, r.Suite, "-")
}

// Rootfs returns the path of an uncompressed newc cpio of the guest root filesystem, building
// it with mmdebstrap (about 20-30 s and a few hundred MB of downloads) if it is not cached.
// The archive is a usr-merged Debian minbase with the packages of
// manifests/rootfs-packages.txt, trimmed of documentation, python and the like, with the
// fix-ups nfs-ganesha needs (/etc/mtab, /etc/hosts, /etc/idmapd.conf, runtime directories).
func (c Cache) Rootfs(ctx context.Context, log *slog.Logger) (string, error) {
	r, err := defaultRootfsRecipe()
	if err != nil {
		return "", err
	}
	return c.rootfs(ctx, log, r)
}

// KindRootfs is Rootfs plus manifests/rootfs-kind-packages.txt (a Docker engine): the guest of
// the kind form, a separate artefact so that netns cells do not carry Docker in their
// initramfs.
func (c Cache) KindRootfs(ctx context.Context, log *slog.Logger) (string, error) {
	r, err := kindRootfsRecipe()
	if err != nil {
		return "", err
	}
	return c.rootfs(ctx, log, r)
}

func (c Cache) rootfs(ctx context.Context, log *slog.Logger, r rootfsRecipe) (string, error) {
	dir, err := c.Artefact(ctx, log, "rootfs", r.inputs(), func(ctx context.Context, dir string) error {
		return buildRootfs(ctx, log, r, dir)
	})
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, RootfsFile)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("cached rootfs is incomplete (%w): remove %s to rebuild it", err, dir)
	}
	return p, nil
}

func buildRootfs(ctx context.Context, log *slog.Logger, r rootfsRecipe, dir string) error {
	mmdebstrap, err := hosttools.Require("mmdebstrap", "mmdebstrap")
	if err != nil {
		return err
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	start := time.Now()
	args := r.mmdebstrapArgs()
	log.Info("building rootfs with mmdebstrap", "suite", r.Suite, "packages", len(r.Packages))
	// On cancellation, signal the whole process group as a terminal's ^C would: mmdebstrap's
	// main process only waits for its current step, which ends when the apt/dpkg children
	// die; it then unmounts and removes its chroot. SIGKILL (the leader only) if that takes
	// longer than a minute.
	cmd := procgroup.Command(ctx, syscall.SIGTERM, time.Minute, mmdebstrap, args...)
	// Its temporary chroot goes into our build directory, so that whatever an interrupted run
	// leaves behind is removed with it (and RemoveTree refuses if mounts were left).
	cmd.Env = append(os.Environ(), "TMPDIR="+dir)
	logw := &lines.Writer{OnLine: mmdebstrapLogger(log, start), Keep: 30}
	cmd.Stderr = logw
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting mmdebstrap: %w", err)
	}

	out := filepath.Join(dir, RootfsFile)
	stats, convErr := writeRootfsCpio(stdout, out, r)
	if convErr != nil {
		cancel() // stop mmdebstrap: nobody reads its output any more
	} else {
		_, _ = io.Copy(io.Discard, stdout) // the tar's end padding
	}
	waitErr := cmd.Wait()
	logw.Flush()
	if waitErr != nil {
		// Killed mid-install, mmdebstrap leaves its chroot's mounts (proc, sys, devpts, dev/shm).
		if err := UnmountBelow(dir); err != nil {
			log.Warn("mmdebstrap's mounts stay", "dir", dir, "err", err)
		}
	}
	switch {
	case parent.Err() != nil:
		return fmt.Errorf("mmdebstrap interrupted: %w", parent.Err())
	case waitErr != nil:
		return fmt.Errorf("mmdebstrap %s failed: %w; last output:\n%s", strings.Join(args, " "), waitErr, logw.Tail())
	case convErr != nil:
		return fmt.Errorf("packing the mmdebstrap output into %s: %w", RootfsFile, convErr)
	}
	if err := os.WriteFile(filepath.Join(dir, RootfsPackagesFile), []byte(stats.packages), 0o644); err != nil {
		return fmt.Errorf("writing package list: %w", err)
	}
	log.Info("rootfs built",
		"elapsed", time.Since(start).Round(100*time.Millisecond),
		"size_before_trim_MB", mb(stats.bytesIn), "size_after_trim_MB", mb(stats.bytesOut),
		"entries", stats.entriesOut, "trimmed_entries", stats.entriesIn-stats.entriesOut,
		"cpio_MB", mb(stats.cpioSize))
	return nil
}

func mb(n int64) string { return fmt.Sprintf("%.1f", float64(n)/(1<<20)) }

// mmdebstrapLogger returns a function that logs a line of mmdebstrap's output: its "I:"
// progress at Info, warnings and errors at Warn, anything else (apt and dpkg chatter) at Debug.
func mmdebstrapLogger(log *slog.Logger, start time.Time) func(string) {
	const prefix = "mmdebstrap"
	return func(l string) {
		elapsed := time.Since(start).Round(100 * time.Millisecond)
		switch {
		case strings.HasPrefix(l, "I: "):
			log.Info(prefix+": "+strings.TrimPrefix(l, "I: "), "elapsed", elapsed)
		case strings.HasPrefix(l, "W: "), strings.HasPrefix(l, "E: "):
			log.Warn(prefix+": "+l, "elapsed", elapsed)
		default:
			log.Debug(prefix+": "+l, "elapsed", elapsed)
		}
	}
}
