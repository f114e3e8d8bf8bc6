package nodeimage

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/nfslab/nfslab/internal/lines"
	"github.com/nfslab/nfslab/lab/hosttools"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/internal/procgroup"
	"github.com/nfslab/nfslab/lab/kernel/debian"
)

// Cilium before v1.18 learns the kernel's BPF features by running `bpftool -j feature probe`
// and exits when it fails. Debian's bpftool package is built with libcap, and then refuses a
// full probe unless CAP_BPF and CAP_PERFMON are effective by name ("missing CAP_BPF,
// CAP_PERFMON, required for full feature probing"). Cilium's agent container has
// CAP_SYS_ADMIN, which the kernel accepts for both, but not those two; and they cannot be added
// here: the kind node, a privileged container of the VM's Docker 20.10, does not have them to
// hand on ("unable to apply caps: operation not permitted"). Cilium's own images carry a
// bpftool built without libcap, which checks only that it runs as root. So does nfslab's: built
// from the host's Debian kernel source (the same bpftool as Debian's package), statically, so
// that it runs on the images' userland whatever the host's C library.

// bpftoolKind is the cache directory of the built bpftool.
const bpftoolKind = "cilium-bpftool"

// bpftoolSourcePackage is the Debian kernel source package bpftool is built from.
const bpftoolSourcePackage = "linux-source-6.1"

// bpftoolPath is where the tool goes in Cilium's images: first on their PATH (imageEnv).
const bpftoolPath = "usr/local/bin/bpftool"

// bpftoolMakeArgs are bpftool's make variables: without libcap (the point), libbfd (its
// disassembler, which links the host's binutils) and the BPF skeletons (which want clang on the
// host), statically linked.
func bpftoolMakeArgs() []string {
	return []string{"feature-libcap=0", "feature-libbfd=0", "feature-libbfd-liberty=0",
		"feature-libbfd-liberty-z=0", "feature-clang-bpf-co-re=0", "EXTRA_LDFLAGS=-static"}
}

// bpftoolSourceDirs are the parts of the kernel source bpftool's build reads: its own and
// libbpf's sources under tools/, the kernel's headers, bpf_doc.py (libbpf's helper
// definitions) and the verifier's disassembler, which bpftool compiles in.
func bpftoolSourceDirs() []string {
	return []string{"tools", "scripts", "include", "arch/x86/include", "kernel/bpf"}
}

func bpftoolTools() hosttools.Set {
	return hosttools.Set{
		For:        "building bpftool for Cilium's images",
		AptOptions: hosttools.NoRecommends,
		Tools: []hosttools.Tool{
			{Command: "gcc", Package: "build-essential"},
			{Command: "make", Package: "build-essential"},
			{Command: "python3", Package: "python3"},
			{Command: "tar", Package: "tar"},
			{Command: "xz", Package: "xz-utils"},
			{Command: "dpkg-query", Package: "dpkg"},
			{File: "/usr/include/gelf.h", Package: "libelf-dev"},
			{File: "/usr/include/zlib.h", Package: "zlib1g-dev"},
		},
	}
}

// ciliumBpftool returns a directory holding bpftool at bpftoolPath, building it into the cache
// if needed (about 35 s cold, most of it unpacking the source).
func ciliumBpftool(ctx context.Context, cache image.Cache, log *slog.Logger, progress func(string)) (string, error) {
	if err := bpftoolTools().Check(); err != nil {
		return "", err
	}
	say := func(s string) {
		if progress != nil {
			progress("node image: bpftool: " + s)
		}
	}
	tarball, version, err := debian.HostSource(ctx, log, bpftoolSourcePackage, "building bpftool for Cilium's images", say)
	if err != nil {
		return "", err
	}
	inputs := image.Inputs{
		"source":  bpftoolSourcePackage + "=" + version,
		"make":    strings.Join(bpftoolMakeArgs(), " "),
		"install": bpftoolPath,
	}
	dir, err := cache.Artefact(ctx, log, bpftoolKind, inputs, func(ctx context.Context, dir string) error {
		say(fmt.Sprintf("building it from %s %s, without libcap", bpftoolSourcePackage, version))
		return buildBpftool(ctx, tarball, dir)
	})
	if err != nil {
		return "", fmt.Errorf("bpftool for Cilium's images: %w", err)
	}
	return dir, nil
}

// buildBpftool unpacks the parts of the kernel source in tarball that bpftool needs into a
// work directory under dir, builds it there at the lowest CPU priority and installs it at
// dir/bpftoolPath, then removes the work directory.
func buildBpftool(ctx context.Context, tarball, dir string) error {
	work := filepath.Join(dir, "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	defer image.RemoveTree(work)
	top := strings.TrimSuffix(filepath.Base(tarball), ".tar.xz")
	args := []string{"-xJf", tarball, "-C", work}
	for _, d := range bpftoolSourceDirs() {
		args = append(args, top+"/"+d)
	}
	if err := run(ctx, "", "tar", args...); err != nil {
		return fmt.Errorf("unpacking %s: %w", filepath.Base(tarball), err)
	}
	src := filepath.Join(work, top, "tools", "bpf", "bpftool")
	mk := append([]string{"-n", "19", "make", "-j", fmt.Sprint(runtime.NumCPU())}, bpftoolMakeArgs()...)
	if err := run(ctx, src, "nice", mk...); err != nil {
		return fmt.Errorf("make in tools/bpf/bpftool: %w", err)
	}
	target := filepath.Join(dir, bpftoolPath)
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	if err := image.CopyFile(filepath.Join(src, "bpftool"), target); err != nil {
		return err
	}
	return os.Chmod(target, 0o755)
}

// run runs a command in dir in a process group of its own, its output kept for the error. On
// cancellation the whole group is killed: make, its sub-makes and the compilers.
func run(ctx context.Context, dir, name string, args ...string) error {
	cmd := procgroup.Command(ctx, syscall.SIGKILL, 10*time.Second, name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: interrupted: %w", name, ctx.Err())
		}
		return fmt.Errorf("%s: %w: %s", name, err, lines.Tail(string(out), 15))
	}
	return nil
}
