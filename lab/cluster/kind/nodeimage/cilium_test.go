package nodeimage

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/datapath/cilium/build"
	"github.com/nfslab/nfslab/lab/image"
)

func TestExtrasInputs(t *testing.T) {
	base := func() image.Inputs { return image.Inputs{"recipe": nodeRecipe} }
	none := base()
	Extras{}.inputs(none)
	if none.Key() != base().Key() {
		t.Error("no extras changed the default node image's key")
	}
	one := base()
	Extras{Cilium: []build.Binaries{{Version: "v1.19.7", Dir: "/c/cilium-binaries/aaa"}}}.inputs(one)
	other := base()
	Extras{Cilium: []build.Binaries{{Version: "v1.19.7", Dir: "/c/cilium-binaries/bbb"}}}.inputs(other)
	if one.Key() == none.Key() || one.Key() == other.Key() {
		t.Error("a node image with Cilium shares a key with one without, or with other binaries")
	}
	withTool := base()
	Extras{Cilium: []build.Binaries{{Version: "v1.19.7", Dir: "/c/cilium-binaries/aaa"}}, bpftool: "/c/cilium-bpftool/ccc"}.inputs(withTool)
	if withTool.Key() == one.Key() {
		t.Error("another bpftool does not change the node image's key")
	}
	user := base()
	Extras{UserCilium: &CiliumImages{Key: "k1"}}.inputs(user)
	userOther := base()
	Extras{UserCilium: &CiliumImages{Key: "k2"}}.inputs(userOther)
	if user.Key() == none.Key() || user.Key() == userOther.Key() {
		t.Error("a node image with the user's Cilium images shares a key with one without, or with other images")
	}
}

// fakeBinaries writes a built Cilium's tree with one command and one datapath source.
func fakeBinaries(t *testing.T, version string) build.Binaries {
	t.Helper()
	b := build.Binaries{Version: version, Dir: t.TempDir()}
	for path, data := range map[string]string{
		filepath.Join(build.BinDir, "cilium-agent"): "agent " + version,
		filepath.Join(build.BPFDir, "bpf_sock.c"):   "sock " + version,
	} {
		p := filepath.Join(b.Root(), path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func TestCiliumImages(t *testing.T) {
	land := filepath.Join(t.TempDir(), "img-cilium")
	shared := filepath.Join(land, "usr/bin/cilium-agent") // a file of the userland the trees share
	for _, d := range []string{filepath.Dir(shared), filepath.Join(land, "usr/local/bin")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(shared, []byte("debian's"), 0o755); err != nil {
		t.Fatal(err)
	}
	bins := []build.Binaries{fakeBinaries(t, "v1.19.7"), fakeBinaries(t, "v1.15.19")}
	only := filepath.Join(bins[0].Root(), build.BPFDir, "only-in-1.19.h")
	if err := os.WriteFile(only, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	bpftool := t.TempDir()
	if err := os.MkdirAll(filepath.Join(bpftool, filepath.Dir(bpftoolPath)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bpftool, bpftoolPath), []byte("nfslab's bpftool"), 0o755); err != nil {
		t.Fatal(err)
	}
	imgs, err := ciliumImages(context.Background(), land, bpftool, bins)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 4 {
		t.Fatalf("%d images, want an agent and an operator per version", len(imgs))
	}
	for i, b := range bins {
		agent, operator := imgs[2*i], imgs[2*i+1]
		if agent.Tag != cilium.AgentImage(b.Version) || operator.Tag != cilium.OperatorImage(b.Version) {
			t.Errorf("tags %s, %s for %s", agent.Tag, operator.Tag, b.Version)
		}
		if agent.Root != operator.Root {
			t.Errorf("%s: the agent and operator do not share a layer", b.Version)
		}
		got, err := os.ReadFile(filepath.Join(agent.Root, build.BinDir, "cilium-agent"))
		if err != nil || string(got) != "agent "+b.Version {
			t.Errorf("%s: cilium-agent = %q, %v", b.Version, got, err)
		}
		if st, err := os.Stat(filepath.Join(agent.Root, build.BinDir, "cilium-agent")); err != nil || st.Mode().Perm() != 0o755 {
			t.Errorf("%s: cilium-agent's mode: %v %v", b.Version, st, err)
		}
		if got, err := os.ReadFile(filepath.Join(agent.Root, bpftoolPath)); err != nil || string(got) != "nfslab's bpftool" {
			t.Errorf("%s: %s = %q, %v: want nfslab's", b.Version, bpftoolPath, got, err)
		}
		if got, err := os.Readlink(filepath.Join(agent.Root, "usr/local/bin/clang")); err != nil || got != "/usr/bin/"+ciliumClang(b.Version) {
			t.Errorf("%s: clang links to %q (%v), want its own %s", b.Version, got, err, ciliumClang(b.Version))
		}
	}
	if imgs[0].Root == imgs[2].Root {
		t.Fatal("two versions share one tree")
	}
	if _, err := os.Stat(filepath.Join(imgs[2].Root, build.BPFDir, "only-in-1.19.h")); err == nil {
		t.Error("a file of v1.19.7 is in v1.15.19's tree")
	}
	if got, _ := os.ReadFile(shared); string(got) != "agent v1.19.7" {
		t.Errorf("the first tree's cilium-agent = %q after the second version went in", got)
	}
}

func TestCiliumClang(t *testing.T) {
	for v, want := range map[string]string{"v1.19.7": "clang-19", "v1.18.3": "clang-19", "v1.17.8": "clang-19", "v1.15.19": "clang-16"} {
		if got := ciliumClang(v); got != want {
			t.Errorf("ciliumClang(%s) = %s, want %s", v, got, want)
		}
	}
	both := Extras{Cilium: []build.Binaries{{Version: "v1.19.7"}, {Version: "v1.15.19"}}}.ciliumPackages()
	if !slices.Contains(both, "clang-19") || !slices.Contains(both, "clang-16") || slices.Contains(both, "bpftool") {
		t.Errorf("packages for v1.19.7 and v1.15.19: %v, want both clangs and no Debian bpftool", both)
	}
	if one := (Extras{Cilium: []build.Binaries{{Version: "v1.19.7"}}}).ciliumPackages(); slices.Contains(one, "clang-16") {
		t.Errorf("packages for v1.19.7 alone: %v, want no clang-16", one)
	}
	if none := (Extras{}).ciliumPackages(); none != nil {
		t.Errorf("packages without Cilium: %v", none)
	}
}
