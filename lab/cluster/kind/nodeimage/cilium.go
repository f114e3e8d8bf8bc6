package nodeimage

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/mod/semver"

	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/datapath/cilium/build"
	"github.com/nfslab/nfslab/lab/image"
)

// Extras is what a node image carries besides Kubernetes, kube-proxy and nfs-ganesha. The zero
// value is nfslab's default node image.
type Extras struct {
	// Cilium are built Cilium versions whose agent and operator images the node's containerd
	// holds (cilium.AgentImage, cilium.OperatorImage).
	Cilium []build.Binaries
	// UserCilium are the user's images of Cilium, imported as they are (and unpacked by the
	// node's containerd at their first use, as their layers are Docker's own).
	UserCilium *CiliumImages
	// bpftool is the directory of the bpftool every Cilium image gets (ciliumBpftool), set
	// by BuildNode when there are Cilium images.
	bpftool string
}

// inputs adds what the extras are made from to a node image's cache inputs. No extras add
// nothing, so the default node image keeps its key.
func (e Extras) inputs(in image.Inputs) {
	if e.UserCilium != nil {
		in["cilium-user"] = e.UserCilium.Key
	}
	if len(e.Cilium) == 0 {
		return
	}
	var vs []string
	for _, b := range e.Cilium {
		// The binaries' artefact name is the hash of what they were built from.
		vs = append(vs, b.Version+"="+filepath.Base(b.Dir))
	}
	in["cilium"] = strings.Join(vs, ",")
	in["cilium-packages"] = strings.Join(e.ciliumPackages(), ",")
	in["cilium-bpftool"] = filepath.Base(e.bpftool) // the artefact's name is the hash of its inputs
	var links []string
	for _, b := range e.Cilium {
		links = append(links, b.Version+"="+fmt.Sprint(ciliumLinks(b.Version)))
	}
	in["cilium-links"] = strings.Join(links, ",")
	in["cilium-env"] = strings.Join(ciliumEnv(), ",")
	in["cilium-store"] = "unpacked-overlayfs" // containerdImport.Unpack
}

// ciliumPackages is the userland of Cilium's images, as Cilium's runtime image has it: clang,
// with which the agent compiles its datapath at run time (every version nfslab builds runs
// clang --target=bpf alone, no llc), each version's (ciliumClang), and the tools the agent and
// its init containers run. Not Debian's bpftool: the images get one built without libcap
// (ciliumBpftool). None without Cilium.
func (e Extras) ciliumPackages() []string {
	if len(e.Cilium) == 0 {
		return nil
	}
	pkgs := []string{"iproute2", "iptables", "ipset", "kmod", "ca-certificates", "util-linux", "bash"}
	for _, b := range e.Cilium {
		if c := ciliumClang(b.Version); !slices.Contains(pkgs, c) {
			pkgs = append(pkgs, c)
		}
	}
	return pkgs
}

// ciliumClang is the clang package a Cilium version's agent compiles its datapath with: LLVM
// 19, the version Cilium's own images ship, from v1.17 on (which want LLVM 18 or later); LLVM
// 16 before, whose datapath LLVM 19 refuses (v1.15.19: "17 errors generated" compiling
// bpf_alignchecker.c, and the agent exits; clang-16 compiles it).
func ciliumClang(version string) string {
	if semver.Compare(version, "v1.17.0") < 0 {
		return "clang-16"
	}
	return "clang-19"
}

// ciliumLinks are the unversioned names a version's agent runs LLVM by.
func ciliumLinks(version string) []fixup {
	return []fixup{{Path: "usr/local/bin/clang", Link: "/usr/bin/" + ciliumClang(version)}}
}

// ciliumEnv is the images' environment: Cilium's Dockerfile sets INITSYSTEM.
func ciliumEnv() []string { return append(imageEnv(), "INITSYSTEM=SYSTEMD") }

// ciliumImages lays out the agent and operator images of each version in bins on land, a
// userland with ciliumPackages and bpftool (the first version's tree is land itself; each further one is a
// hard-linked copy of it), one layer per version that both images share.
func ciliumImages(ctx context.Context, land, bpftool string, bins []build.Binaries) ([]Image, error) {
	if err := overlay(filepath.Join(bpftool, "usr"), filepath.Join(land, "usr")); err != nil {
		return nil, fmt.Errorf("bpftool into the userland of Cilium's images: %w", err)
	}
	// Every copy is taken before any version's files go in.
	roots := []string{land}
	for i, b := range bins[1:] {
		root := fmt.Sprintf("%s-%d", land, i+1)
		if out, err := exec.CommandContext(ctx, "cp", "-al", land, root).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("the userland of Cilium %s: cp -al: %w: %s", b.Version, err, strings.TrimSpace(string(out)))
		}
		roots = append(roots, root)
	}
	var imgs []Image
	for i, b := range bins {
		root := roots[i]
		if err := writeFixups(root, ciliumLinks(b.Version)); err != nil {
			return nil, fmt.Errorf("the userland of Cilium %s: %w", b.Version, err)
		}
		if err := overlay(b.Root(), root); err != nil {
			return nil, fmt.Errorf("the files of Cilium %s into its image: %w", b.Version, err)
		}
		for _, tag := range []string{cilium.AgentImage(b.Version), cilium.OperatorImage(b.Version)} {
			imgs = append(imgs, Image{Tag: tag, Root: root, Env: ciliumEnv()})
		}
	}
	return imgs, nil
}

// overlay copies the tree src over dst, keeping modes. A file that exists in dst is replaced,
// never written through: dst may share its inodes with another tree (cp -al).
func overlay(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(target, info.Mode().Perm())
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: not a regular file", p)
		}
		if err := os.Remove(target); err != nil && !os.IsNotExist(err) {
			return err
		}
		if err := image.CopyFile(p, target); err != nil {
			return err
		}
		return os.Chmod(target, info.Mode().Perm())
	})
}
