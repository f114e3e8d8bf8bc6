package nodeimage

import (
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"

	"github.com/nfslab/nfslab/manifests"
)

// TestWrapperModulesPinVersions: the embedded wrapper modules require the versions the node
// image is labelled with, Kubernetes' staging modules are each replaced by their published twin
// of the same release, and every command's module has a wrapper.
func TestWrapperModulesPinVersions(t *testing.T) {
	want := map[string]map[string]string{
		"k8s":  {"k8s.io/kubernetes": KubernetesVersion},
		"etcd": {"go.etcd.io/etcd/server/v3": EtcdVersion},
	}
	staging := "v0." + strings.SplitN(strings.TrimPrefix(KubernetesVersion, "v1."), ".", 2)[0] + "." + strings.SplitN(KubernetesVersion, ".", 3)[2]
	for _, m := range wrapperModules() {
		goMod, goSum := wrapperFiles(m)
		f := wrapperModFile(t, m)
		got := requiredVersions(f)
		for path, v := range want[m] {
			if got[path] != v {
				t.Errorf("%s requires %s %q, want %q", goMod, path, got[path], v)
			}
		}
		for _, r := range f.Replace {
			if strings.HasPrefix(r.Old.Path, "k8s.io/") && r.New.Version != staging {
				t.Errorf("%s replaces %s with %s %s, want %s", goMod, r.Old.Path, r.New.Path, r.New.Version, staging)
			}
		}
		if m == "k8s" && len(f.Replace) < 30 {
			t.Errorf("%s replaces %d modules; Kubernetes has over 30 staging modules", goMod, len(f.Replace))
		}
		if sum, err := manifests.FS.ReadFile(goSum); err != nil || len(sum) == 0 {
			t.Errorf("%s: %v (%d bytes)", goSum, err, len(sum))
		}
	}
	for _, c := range Commands() {
		if _, ok := want[c.Module]; !ok {
			t.Errorf("command %s is built in module %q, which has no wrapper", c.Name, c.Module)
		}
	}
}

func TestLdflagsStampVersion(t *testing.T) {
	f := ldflags("2026-11-30T00:00:00Z")
	for _, want := range []string{
		"-X k8s.io/component-base/version.gitVersion=" + KubernetesVersion,
		"-X k8s.io/component-base/version.gitMajor=1",
		"-X k8s.io/client-go/pkg/version.gitMinor=37",
	} {
		if !strings.Contains(f, want) {
			t.Errorf("ldflags lack %q: %s", want, f)
		}
	}
}

// TestCommandNamesMatchGoBuild: a module with several commands is built by one `go build -o
// dir/`, which names each binary after its package's last path element; a Name that differs
// would be missing from the cache.
func TestCommandNamesMatchGoBuild(t *testing.T) {
	for _, m := range wrapperModules() {
		cs := commandsOf(m)
		if len(cs) < 2 {
			continue
		}
		for _, c := range cs {
			if base := path.Base(c.Package); base != c.Name {
				t.Errorf("module %s: command %s is package %s, which go build names %s", m, c.Name, c.Package, base)
			}
		}
	}
}

// TestWrapperSharesNfslabVersions: the k8s wrapper selects the same version as nfslab's own
// go.mod for every module both require, and selects Kubernetes' staging modules unreplaced, so
// that the packages both build are compiled once into Go's build cache (see wrapperFiles).
func TestWrapperSharesNfslabVersions(t *testing.T) {
	own, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	nf, err := modfile.Parse("go.mod", own, nil)
	if err != nil {
		t.Fatal(err)
	}
	goMod, _ := wrapperFiles("k8s")
	wf := wrapperModFile(t, "k8s")
	selected := requiredVersions(wf)
	for _, r := range wf.Replace {
		// (A staging module outside the commands' build, e.g. k8s.io/sample-controller, is
		// replaced but not required.)
		if v := selected[r.Old.Path]; r.Old.Version != "v0.0.0" || r.New.Path != r.Old.Path || (v != "" && r.New.Version != v) {
			t.Errorf("%s: replace %s %s => %s %s; want only v0.0.0 mapped to the version required (%q), so the build selects it unreplaced",
				goMod, r.Old.Path, r.Old.Version, r.New.Path, r.New.Version, selected[r.Old.Path])
		}
	}
	// Kubernetes' own components, at the node image's release; nfslab requires an earlier patch
	// release of these two for its own use, and shares few packages with them.
	differ := map[string]bool{"k8s.io/component-base": true, "k8s.io/apiextensions-apiserver": true}
	for _, r := range nf.Require {
		v, ok := selected[r.Mod.Path]
		if !ok || v == r.Mod.Version || differ[r.Mod.Path] {
			continue
		}
		t.Errorf("%s selects %s %s, nfslab's go.mod %s: the packages both build would be compiled twice", goMod, r.Mod.Path, v, r.Mod.Version)
	}
}

// wrapperModFile parses the embedded go.mod of wrapper module m.
func wrapperModFile(t *testing.T, m string) *modfile.File {
	t.Helper()
	goMod, _ := wrapperFiles(m)
	data, err := manifests.FS.ReadFile(goMod)
	if err != nil {
		t.Fatal(err)
	}
	f, err := modfile.Parse(goMod, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// requiredVersions maps each module f requires to its version.
func requiredVersions(f *modfile.File) map[string]string {
	v := map[string]string{}
	for _, r := range f.Require {
		v[r.Mod.Path] = r.Mod.Version
	}
	return v
}
