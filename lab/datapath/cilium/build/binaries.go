// Package build compiles Cilium from its Go module, with nothing but the Go module proxy: the
// agent, operator and helper programs of Cilium's images, and the files those images carry
// beside them (the datapath's C sources, which the agent compiles with clang at run time, and
// the scripts the Helm chart's init containers run). The result is cached per version, Go
// toolchain and recipe.
//
// Cilium's own build runs in its builder image with a vendor/ tree and git; neither is in the
// module zip, so nfslab calls go build directly in a writable copy of the module, as its main
// module (go install …@version refuses a module with replace directives).
package build

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/nfslab/nfslab/internal/lines"
	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/internal/gomod"
)

const (
	// Module is Cilium's Go module.
	Module = "github.com/cilium/cilium"
	// recipe names the way Build builds; bump it when that changes the result in a way the
	// inputs do not capture.
	recipe = "cilium-binaries-v2"
	// cacheKind is the cache's name for the artefacts.
	cacheKind = "cilium-binaries"
	// RootDir is the tree in an artefact that goes over the image's userland as it is:
	// usr/bin/<commands>, var/lib/cilium/bpf/, and the init scripts at its top.
	RootDir = "root"
	// BinDir is where the commands are in RootDir, as in Cilium's images; the CNI plugin is in
	// CNIBinDir, where the chart's install-plugin.sh copies it from to the node.
	BinDir    = "usr/bin"
	CNIBinDir = "opt/cni/bin"
	// BPFDir is where the agent looks for the datapath's sources in RootDir.
	BPFDir = "var/lib/cilium/bpf"
)

// Command is one program of Cilium's agent or operator image: its name there, its main package
// in the module and its directory in RootDir.
type Command struct {
	Name, Package, Dir string
	// Operator marks the operator, built apart with its own build tag.
	Operator bool
}

// Commands are the programs nfslab builds: what the agent's image runs (the agent itself, the
// cilium-dbg CLI the chart's config init container runs, the CNI plugin, the health checker,
// and the cgroup mount and sysctl helpers of the init containers) and the operator in its
// generic (no cloud IPAM) variant.
func Commands() []Command {
	return []Command{
		{Name: "cilium-agent", Package: "./daemon", Dir: BinDir},
		{Name: "cilium-dbg", Package: "./cilium-dbg", Dir: BinDir},
		{Name: "cilium-cni", Package: "./plugins/cilium-cni", Dir: CNIBinDir},
		{Name: "cilium-health", Package: "./cilium-health", Dir: BinDir},
		{Name: "cilium-health-responder", Package: "./cilium-health/responder", Dir: BinDir},
		{Name: "cilium-mount", Package: "./tools/mount", Dir: BinDir},
		{Name: "cilium-sysctlfix", Package: "./tools/sysctlfix", Dir: BinDir},
		{Name: "cilium-operator-generic", Package: "./operator", Dir: BinDir, Operator: true},
	}
}

// buildTags are Cilium's own (Makefile.defs: osusergo); the operator adds the tag that selects
// its generic IPAM providers, as Cilium's operator-generic target does.
func buildTags(operator bool) []string {
	if operator {
		return []string{"osusergo", "ipam_provider_operator"}
	}
	return []string{"osusergo"}
}

// scripts are the files of the module Cilium's Dockerfile copies to the image's top, where the
// chart's init containers and its CNI install hook run them.
func scripts() []string {
	return []string{"images/cilium/init-container.sh", "plugins/cilium-cni/install-plugin.sh", "plugins/cilium-cni/cni-uninstall.sh"}
}

// bpfSkipped are the entries of the module's bpf/ that Cilium's install-bpf target leaves
// out: tests and build files the agent never reads.
func bpfSkipped() []string {
	return []string{"tests", "complexity-tests", "custom", "Makefile", "Makefile.bpf", ".gitignore"}
}

// Binaries is a built Cilium: Dir is the artefact, Root its RootDir.
type Binaries struct {
	Version string
	Dir     string
}

// Root is the tree that goes over the image's userland.
func (b Binaries) Root() string { return filepath.Join(b.Dir, RootDir) }

// Path returns where the command c is.
func (b Binaries) Path(c Command) string { return filepath.Join(b.Root(), c.Dir, c.Name) }

// Build returns the Cilium version's binaries, building them into the cache first if needed
// (many minutes on 2 cores: see the README's figures). A version nfslab cannot build is a
// *cilium.VersionError before anything is downloaded. progress, when not nil, receives a line
// as each step starts and once a minute while go build runs.
func Build(ctx context.Context, cache image.Cache, log *slog.Logger, version string, progress func(string)) (Binaries, error) {
	if err := cilium.CheckVersion(version); err != nil {
		return Binaries{}, err
	}
	inputs, err := buildInputs(ctx, version)
	if err != nil {
		return Binaries{}, err
	}
	say := func(format string, a ...any) {
		if progress != nil {
			progress(fmt.Sprintf("cilium %s: ", version) + fmt.Sprintf(format, a...))
		}
	}
	dir, err := cache.Artefact(ctx, log, cacheKind, inputs, func(ctx context.Context, dir string) error {
		return build(ctx, dir, version, say)
	})
	if err != nil {
		return Binaries{}, fmt.Errorf("build Cilium %s: %w", version, err)
	}
	b := Binaries{Version: version, Dir: dir}
	for _, c := range Commands() {
		if _, err := os.Stat(b.Path(c)); err != nil {
			return Binaries{}, fmt.Errorf("cached Cilium %s is incomplete (%w): remove %s to rebuild it", version, err, dir)
		}
	}
	return b, nil
}

// buildInputs is what the binaries are made from, as cache inputs.
func buildInputs(ctx context.Context, version string) (image.Inputs, error) {
	goVersion, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err != nil {
		return nil, fmt.Errorf("the Go toolchain (needed to build Cilium): %w", err)
	}
	var cmds []string
	for _, c := range Commands() {
		cmds = append(cmds, c.Dir+"/"+c.Name+"="+c.Package+" "+strings.Join(buildTags(c.Operator), ","))
	}
	return image.Inputs{
		"recipe":   recipe,
		"module":   Module + "@" + version,
		"go":       strings.TrimSpace(string(goVersion)),
		"goarch":   runtime.GOARCH,
		"commands": strings.Join(cmds, ";"),
		"scripts":  strings.Join(scripts(), ","),
		"bpf-skip": strings.Join(bpfSkipped(), ","),
		"ldflags":  ldflags(version, "<time>"),
		"patches":  fmt.Sprint(timeoutPatches()),
	}, nil
}

// ldflags strips the binaries and stamps the version as Cilium's Makefile does: "<VERSION>
// <revision> <time>", the three fields its version parser expects before the Go runtime's. The
// module proxy knows no git revision; the module version stands in for it.
func ldflags(version, released string) string {
	return fmt.Sprintf("-s -w -X 'github.com/cilium/cilium/pkg/version.ciliumVersion=%s %s %s'",
		strings.TrimPrefix(version, "v"), version, released)
}

// build builds the binaries of version into dir.
func build(ctx context.Context, dir, version string, say func(string, ...any)) error {
	start := time.Now()
	say("downloading the module")
	m, err := gomod.Download(ctx, Module, version)
	if err != nil {
		return err
	}
	released, err := releaseTime(m.Info)
	if err != nil {
		return err
	}
	src := filepath.Join(dir, "src")
	defer image.RemoveTree(src)
	say("copying the module to build in")
	// os.CopyFS makes the copy writable (files 0666 before umask): go build -mod=mod may update
	// go.sum, and the module cache's tree is read-only.
	if err := os.CopyFS(src, os.DirFS(m.Dir)); err != nil {
		return fmt.Errorf("copy %s: %w", m.Dir, err)
	}
	if err := patchTimeouts(src); err != nil {
		return err
	}
	say("downloading its dependencies (about 1 GB into Go's module cache the first time)")
	if err := downloadDeps(ctx, src); err != nil {
		return err
	}
	root := filepath.Join(dir, RootDir)
	flags := ldflags(version, released)
	for _, operator := range []bool{false, true} {
		if err := buildCommands(ctx, src, root, flags, operator, say); err != nil {
			return err
		}
	}
	say("copying the datapath's sources and the init scripts")
	if err := copyFiles(src, root); err != nil {
		return err
	}
	say("built in %.0f s", time.Since(start).Seconds())
	return nil
}

// buildCommands builds the agent's commands (operator false) or the operator with one go build
// and moves each from its package's last path element to its Dir and Name in root.
func buildCommands(ctx context.Context, src, root, flags string, operator bool, say func(string, ...any)) error {
	var (
		names, pkgs []string
		moves       = map[string]string{}
	)
	for _, c := range Commands() {
		if c.Operator == operator {
			names, pkgs = append(names, c.Name), append(pkgs, c.Package)
			moves[path.Base(c.Package)] = filepath.Join(root, c.Dir, c.Name)
		}
	}
	what := strings.Join(names, ", ")
	say("building %s", what)
	out := filepath.Join(src, "_out")
	if operator {
		out += "-operator"
	}
	b := gomod.Build{Dir: src, Packages: pkgs, OutDir: out, Tags: buildTags(operator), LDFlags: flags}
	err := b.Run(ctx, func(p gomod.Progress) {
		say("building %s: %d packages compiled, now %s [%.0f s]", what, p.Compiled, p.Latest, p.Elapsed.Seconds())
	})
	if err != nil {
		return fmt.Errorf("build %s: %w", what, err)
	}
	for built, dst := range moves {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.Rename(filepath.Join(out, built), dst); err != nil {
			return fmt.Errorf("build %s: go build wrote no %s: %w", filepath.Base(dst), built, err)
		}
	}
	return nil
}

// releaseTime reads the time the module proxy gives the version (its .info file).
func releaseTime(infoFile string) (string, error) {
	data, err := os.ReadFile(infoFile)
	if err != nil {
		return "", fmt.Errorf("read the module's version info: %w", err)
	}
	var info struct{ Time time.Time }
	if err := json.Unmarshal(data, &info); err != nil || info.Time.IsZero() {
		return "", fmt.Errorf("read the module's version info %s: no time in it (%v)", infoFile, err)
	}
	return info.Time.UTC().Format(time.RFC3339), nil
}

// downloadDeps fetches the module graph of the copy at src. Apart from go build it is the step
// that needs the network, and its errors name the module the proxy did not serve.
func downloadDeps(ctx context.Context, src string) error {
	cmd := exec.CommandContext(ctx, "go", "mod", "download")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("download the modules Cilium needs: %w\n%s", err, lines.Tail(string(out), 15))
	}
	return nil
}

// copyFiles copies what the image carries besides the commands from the module copy src into
// root: the init scripts (executable) at its top, bpf/ less bpfSkipped under BPFDir.
func copyFiles(src, root string) error {
	for _, s := range scripts() {
		dst := filepath.Join(root, path.Base(s))
		if err := image.CopyFile(filepath.Join(src, filepath.FromSlash(s)), dst); err != nil {
			return fmt.Errorf("copy %s: %w", s, err)
		}
		if err := os.Chmod(dst, 0o755); err != nil {
			return err
		}
	}
	bpf := filepath.Join(src, "bpf")
	return filepath.WalkDir(bpf, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(bpf, p)
		if err != nil {
			return err
		}
		if rel != "." && skippedBPF(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(root, BPFDir, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		return image.CopyFile(p, target)
	})
}

// skippedBPF reports whether rel, a path below bpf/, is left out of the image.
func skippedBPF(rel string) bool {
	first, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
	for _, s := range bpfSkipped() {
		if first == s {
			return true
		}
	}
	return false
}
