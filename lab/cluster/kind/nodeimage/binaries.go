// Package nodeimage builds, on the host and without a registry, what a kind node image is made
// of: the Kubernetes commands and etcd compiled from the Go module proxy.
package nodeimage

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/nfslab/nfslab/internal/lines"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/internal/gomod"
	"github.com/nfslab/nfslab/manifests"
)

// Versions of what the node image is built from. The wrapper modules in manifests/kind pin the
// same versions (TestWrapperModulesPinVersions keeps them in step).
const (
	KubernetesVersion = "v1.37.2"
	EtcdVersion       = "v3.7.3"
)

// binariesRecipe names the way Binaries builds; bump it when that changes the result in a way the
// inputs do not capture.
const binariesRecipe = "k8s-binaries-v1"

// Command is one program Binaries builds: its name, its main package, and the wrapper module
// ("k8s" or "etcd") it is built in.
type Command struct {
	Name, Package, Module string
}

// Wrapper modules: a go.mod requiring the commands' module at its version and a go.sum pinning
// every dependency, embedded from manifests/kind as <module>.go.mod.txt and <module>.go.sum.txt
// (".txt": a go.mod file would make that directory another module, which go:embed cannot reach).
//
// Kubernetes' go.mod requires its staging modules (k8s.io/api, client-go, …) at v0.0.0; the k8s
// wrapper maps exactly that version to the published twin of the same release
// (`k8s.io/api v0.0.0 => k8s.io/api v0.37.2`) and requires the twin itself, so the build selects
// k8s.io/api v0.37.2 unreplaced. Together with the same versions as nfslab's own go.mod for every
// module both use (golang.org/x/sys, protobuf, …), that makes the packages nfslab and Kubernetes
// share byte-for-byte the same compile in Go's build cache: with -trimpath, a replaced module is
// hashed under its v0.0.0 name and would be compiled again. In `make test` nfslab's own build has
// compiled client-go, api and apimachinery by the time Kubernetes is built: with them in the
// cache, 2132 packages are left to compile for the seven commands instead of 2490, and the ones
// saved are among the largest. TestWrapperSharesNfslabVersions keeps the versions in step.
func wrapperFiles(module string) (goMod, goSum string) {
	return "kind/" + module + ".go.mod.txt", "kind/" + module + ".go.sum.txt"
}

func wrapperModules() []string { return []string{"k8s", "etcd"} }

// Commands are the programs of a kind node: the kubelet, kubeadm and kubectl run on the node;
// the control plane's and kube-proxy's go into their component images; etcd too.
func Commands() []Command {
	var cs []Command
	for _, c := range []string{"kubelet", "kubeadm", "kubectl", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"} {
		cs = append(cs, Command{Name: c, Package: "k8s.io/kubernetes/cmd/" + c, Module: "k8s"})
	}
	return append(cs, Command{Name: "etcd", Package: "go.etcd.io/etcd/server/v3", Module: "etcd"})
}

// Binaries returns a directory holding every Command as a static binary, building them into the
// cache first if needed: about 10-14 minutes on 2 cores with an empty Go build cache, 2-3 with a
// warm one. progress receives a line when a module's build starts and ends, and one a minute in
// between.
func Binaries(ctx context.Context, cache image.Cache, log *slog.Logger, progress func(string)) (string, error) {
	inputs, err := binariesInputs(ctx)
	if err != nil {
		return "", err
	}
	return cachedBinaries(ctx, cache, log, inputs, progress)
}

// cachedBinaries is Binaries for inputs already read by binariesInputs.
func cachedBinaries(ctx context.Context, cache image.Cache, log *slog.Logger, inputs image.Inputs, progress func(string)) (string, error) {
	return cache.Artefact(ctx, log, binariesKind, inputs, func(ctx context.Context, dir string) error {
		return buildBinaries(ctx, dir, progress)
	})
}

// DownloadSources fetches the Go modules the commands are built from into Go's module cache
// without building anything: `go mod download` in each wrapper module. A later Binaries then
// starts compiling at once; the download alone took over a minute of a cold build here.
func DownloadSources(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "nfslab-k8s-sources-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	for _, m := range wrapperModules() {
		w := filepath.Join(dir, m)
		if err := writeWrapper(w, m); err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, "go", "mod", "download")
		cmd.Dir = w
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("download the Go modules of %s: %w\n%s", m, err, lines.Tail(string(out), 15))
		}
	}
	return nil
}

// binariesKind is the cache's name for the binaries' artefacts.
const binariesKind = "k8s-binaries"

// binariesInputs is what the binaries are built from, as cache inputs: the versions, the Go
// toolchain, the flags and the wrapper modules.
func binariesInputs(ctx context.Context) (image.Inputs, error) {
	goVersion, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err != nil {
		return nil, fmt.Errorf("the Go toolchain (needed to build Kubernetes): %w", err)
	}
	inputs := image.Inputs{
		"recipe":     binariesRecipe,
		"kubernetes": KubernetesVersion,
		"etcd":       EtcdVersion,
		"go":         strings.TrimSpace(string(goVersion)),
		"goarch":     runtime.GOARCH,
		"ldflags":    ldflags("<date>"),
	}
	for _, m := range wrapperModules() {
		goMod, goSum := wrapperFiles(m)
		for _, f := range []string{goMod, goSum} {
			b, err := manifests.FS.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("read embedded %s: %w", f, err)
			}
			inputs[f] = image.Inputs{"content": string(b)}.Key()
		}
	}
	return inputs, nil
}

// ldflags stamps the version the way Kubernetes' own build does; without it the commands report
// v0.0.0 and kubeadm refuses its own control plane.
func ldflags(date string) string {
	major, minor, _ := strings.Cut(strings.TrimPrefix(KubernetesVersion, "v"), ".")
	minor, _, _ = strings.Cut(minor, ".")
	flags := []string{"-s", "-w"}
	for _, p := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		flags = append(flags,
			"-X", p+".gitVersion="+KubernetesVersion, "-X", p+".gitMajor="+major, "-X", p+".gitMinor="+minor,
			"-X", p+".gitTreeState=clean", "-X", p+".gitCommit=0000000000000000000000000000000000000000",
			"-X", p+".buildDate="+date)
	}
	return strings.Join(flags, " ")
}

func buildBinaries(ctx context.Context, dir string, progress func(string)) error {
	src := filepath.Join(dir, "src")
	defer os.RemoveAll(src)
	for _, m := range wrapperModules() {
		if err := writeWrapper(filepath.Join(src, m), m); err != nil {
			return err
		}
	}
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}
	flags := ldflags(time.Now().UTC().Format(time.RFC3339))
	for _, m := range wrapperModules() {
		if err := buildModule(ctx, filepath.Join(src, m), bin, flags, commandsOf(m), progress); err != nil {
			return err
		}
	}
	return nil
}

// commandsOf returns the Commands built in wrapper module m.
func commandsOf(m string) []Command {
	var cs []Command
	for _, c := range Commands() {
		if c.Module == m {
			cs = append(cs, c)
		}
	}
	return cs
}

// buildModule builds cs, the commands of one wrapper module, with one `go build` into bin (see
// gomod.Build for why one). Warm (every package in the Go build cache) the seven link in 33 s
// together on 2 cores; cold, one build saved under a minute of the 14 that Kubernetes takes.
// With several commands go build names each binary after its package's last path element, so
// Name must be that; a single command is written as Name.
func buildModule(ctx context.Context, wdir, bin, flags string, cs []Command, progress func(string)) error {
	if len(cs) == 0 {
		return nil
	}
	say := func(string) {}
	if progress != nil {
		say = progress
	}
	var names, pkgs []string
	for _, c := range cs {
		names, pkgs = append(names, c.Name), append(pkgs, c.Package)
	}
	what := strings.Join(names, ", ")
	say(fmt.Sprintf("node image: building %s (one go build; ~10 min on 2 cores with an empty Go build cache)", what))
	start := time.Now()
	b := gomod.Build{Dir: wdir, Packages: pkgs, OutDir: bin, LDFlags: flags}
	if len(cs) == 1 {
		b.Name = cs[0].Name // etcd's package, go.etcd.io/etcd/server/v3, would be "server"
	}
	err := b.Run(ctx, func(p gomod.Progress) {
		say(fmt.Sprintf("node image: building %s: %d packages compiled, now %s [%.0f s]", what, p.Compiled, p.Latest, p.Elapsed.Seconds()))
	})
	if err != nil {
		return fmt.Errorf("build %s: %w", what, err)
	}
	for _, c := range cs {
		if _, err := os.Stat(filepath.Join(bin, c.Name)); err != nil {
			return fmt.Errorf("build %s: go build wrote no %s: %w", c.Package, c.Name, err)
		}
	}
	say(fmt.Sprintf("node image: built %s in %.0f s", what, time.Since(start).Seconds()))
	return nil
}

// writeWrapper writes a wrapper module's go.mod and go.sum into dir.
func writeWrapper(dir, module string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	goMod, goSum := wrapperFiles(module)
	for src, dst := range map[string]string{goMod: "go.mod", goSum: "go.sum"} {
		b, err := manifests.FS.ReadFile(src)
		if err != nil {
			return fmt.Errorf("read embedded %s: %w", src, err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}
