package kernel

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/kernel/recipe"
)

// Resolve returns the kernel a scenario names: a stock line's name for Debian's kernel of that
// line (downloaded and cached, see Resolver.Stock), a recipe name (built from source and cached, see
// recipe.Build; progress receives the build's progress lines), or the path of a kernel image
// (bzImage or vmlinuz), used in place, with its release read from the image header and no
// modules (such a kernel must have what the lab needs built in). A kernel whose config is known
// is checked for the features the lab needs (a *MissingFeaturesError).
func Resolve(ctx context.Context, cache image.Cache, name string, log *slog.Logger, progress func(string)) (Kernel, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k, err := resolve(ctx, cache, name, log, progress)
	if err != nil {
		return Kernel{}, err
	}
	if err := CheckConfig(k); err != nil {
		return Kernel{}, err
	}
	return k, nil
}

// Preflight checks what can be checked about a kernel name without building or downloading
// anything: a recipe must exist, and a kernel image path must be an x86 bzImage whose config (if
// found beside it) has what the lab needs. Run it before any slow step so that bad input fails
// at once.
func Preflight(name string) error {
	if _, ok := LookupStock(name); ok {
		return nil
	}
	if _, err := recipe.Lookup(name); err == nil {
		return nil
	}
	if _, err := os.Stat(name); err != nil && !strings.ContainsRune(name, '/') {
		return unknownKernel(name)
	}
	k, err := resolve(context.Background(), image.Cache{}, name, nil, nil)
	if err != nil {
		return err
	}
	return CheckConfig(k)
}

func resolve(ctx context.Context, cache image.Cache, name string, log *slog.Logger, progress func(string)) (Kernel, error) {
	if line, ok := LookupStock(name); ok {
		return Resolver{Cache: cache}.Stock(ctx, log, line)
	}
	if r, err := recipe.Lookup(name); err == nil {
		if err := recipe.CheckBuildTools(); err != nil {
			return Kernel{}, fmt.Errorf("build kernel %s: %w", name, err)
		}
		b, err := recipe.Build(ctx, r, cache.Dir, log, progress)
		if err != nil {
			return Kernel{}, err
		}
		return Kernel{Name: name, Release: b.Release, Vmlinuz: b.BzImage, Config: b.Config, Build: "recipe " + name + " " + b.Key}, nil
	}
	if st, err := os.Stat(name); err == nil && st.Mode().IsRegular() {
		return imageKernel(name)
	} else if err == nil {
		return Kernel{}, fmt.Errorf("kernel %q is not a regular file", name)
	} else if strings.ContainsRune(name, '/') {
		return Kernel{}, fmt.Errorf("kernel image %s: %w", name, err)
	}
	return Kernel{}, unknownKernel(name)
}

func unknownKernel(name string) error {
	return fmt.Errorf("unknown kernel %q: want one of %s, or the path of a bzImage", name, strings.Join(Names(), ", "))
}

// ModulesArchive is Resolver.ModulesArchive for a kernel from Resolve, without logging. It
// returns "" and no error for a kernel without modules.
func ModulesArchive(ctx context.Context, cache image.Cache, k Kernel, want []string) (string, error) {
	if k.ModulesDir == "" {
		return "", nil
	}
	return Resolver{Cache: cache}.ModulesArchive(ctx, slog.New(slog.DiscardHandler), k, want)
}

// imageKernel describes a kernel image file given by path.
func imageKernel(p string) (Kernel, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return Kernel{}, err
	}
	f, err := os.Open(abs)
	if err != nil {
		return Kernel{}, fmt.Errorf("kernel image: %w", err)
	}
	defer f.Close()
	version, err := BzImageVersion(f)
	if err != nil {
		return Kernel{}, fmt.Errorf("kernel image %s: %w", p, err)
	}
	sum := sha256.New()
	if _, err := io.Copy(sum, f); err != nil {
		return Kernel{}, fmt.Errorf("kernel image %s: %w", p, err)
	}
	k := Kernel{Name: p, Release: strings.Fields(version)[0], Vmlinuz: abs, Build: "image sha256:" + hex.EncodeToString(sum.Sum(nil))}
	// A bzImage inside a build tree: <tree>/arch/<arch>/boot/bzImage, config at <tree>/.config.
	for _, c := range []string{
		filepath.Join(filepath.Dir(abs), "..", "..", "..", ".config"),
		filepath.Join(filepath.Dir(abs), "config-"+k.Release),
		filepath.Join(filepath.Dir(abs), ".config"),
	} {
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() {
			k.Config = filepath.Clean(c)
			break
		}
	}
	return k, nil
}

// BzImageVersion returns the version string an x86 bzImage carries in its setup header (what
// `file` prints, e.g. "6.1.192 (user@host) #1 SMP ..."), without booting it.
func BzImageVersion(r io.ReaderAt) (string, error) {
	hdr := make([]byte, 0x210)
	if _, err := r.ReadAt(hdr, 0); err != nil {
		return "", fmt.Errorf("reading the setup header: %w", err)
	}
	if string(hdr[0x202:0x206]) != "HdrS" {
		return "", fmt.Errorf("not an x86 bzImage (no HdrS setup header)")
	}
	off := int64(binary.LittleEndian.Uint16(hdr[0x20e:])) + 0x200
	buf := make([]byte, 256)
	n, err := r.ReadAt(buf, off)
	if n == 0 {
		return "", fmt.Errorf("reading the kernel version string: %w", err)
	}
	buf = buf[:n]
	if i := bytes.IndexByte(buf, 0); i >= 0 {
		buf = buf[:i]
	}
	v := strings.TrimSpace(string(buf))
	if v == "" {
		return "", fmt.Errorf("empty kernel version string")
	}
	return v, nil
}
