package recipe

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/kernel/debian"
)

// source is the kernel source a build unpacks.
type source struct {
	// Tarball is the path of <SourcePackage>.tar.xz.
	Tarball string
	// Version is the Debian version of the source package it came from.
	Version string
}

// sourceArtefactKind is the cache directory of source tarballs from private archives.
const sourceArtefactKind = "sources"

// findSource returns the recipe's kernel source. From the host's archive it is the installed
// package's /usr/src/<SourcePackage>.tar.xz (installed first with apt-get, as root, when
// missing). From another archive it is the package's candidate version there, downloaded and
// unpacked into <cacheDir>/sources/ (never installed on the host), and reused while that
// version stays the candidate.
func findSource(ctx context.Context, r Recipe, cacheDir string, log *slog.Logger, progress func(string)) (source, error) {
	archive, err := debian.Lookup(r.Archive)
	if err != nil {
		return source{}, fmt.Errorf("kernel recipe %s: %w", r.Name, err)
	}
	if archive.Host() {
		tarball, v, err := debian.HostSource(ctx, log, r.SourcePackage, "kernel recipe "+r.Name, progress)
		if err != nil {
			return source{}, err
		}
		return source{Tarball: tarball, Version: v}, nil
	}
	apt, err := debian.Open(ctx, log, archive, cacheDir)
	if err != nil {
		return source{}, fmt.Errorf("kernel recipe %s: %w", r.Name, err)
	}
	v, err := apt.Candidate(ctx, r.SourcePackage)
	if err != nil {
		return source{}, fmt.Errorf("kernel recipe %s: %w", r.Name, err)
	}
	inputs := image.Inputs{"package": r.SourcePackage, "version": v}
	dir, err := image.Cache{Dir: cacheDir}.Artefact(ctx, log, sourceArtefactKind, inputs, func(ctx context.Context, dir string) error {
		progress(fmt.Sprintf("downloading %s %s from %s", r.SourcePackage, v, archive))
		deb, err := apt.Download(ctx, r.SourcePackage, v, dir)
		if err != nil {
			return err
		}
		x := filepath.Join(dir, "extract")
		if err := debian.Unpack(ctx, deb, x); err != nil {
			return err
		}
		name := r.SourcePackage + ".tar.xz"
		if err := os.Rename(filepath.Join(x, "usr", "src", name), filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("%s has no usr/src/%s: %w", filepath.Base(deb), name, err)
		}
		if err := os.Remove(deb); err != nil {
			return err
		}
		return image.RemoveTree(x)
	})
	if err != nil {
		return source{}, fmt.Errorf("kernel recipe %s: source %s %s: %w", r.Name, r.SourcePackage, v, err)
	}
	return source{Tarball: filepath.Join(dir, r.SourcePackage+".tar.xz"), Version: v}, nil
}
