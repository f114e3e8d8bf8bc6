package nodeimage

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nfslab/nfslab/lab/hosttools"
	"github.com/nfslab/nfslab/lab/image"
)

// TestUserCiliumArchive: the agent and the operator are found among an archive's images by
// their repositories; an archive without exactly one of each is an *UnusableError saying so.
func TestUserCiliumArchive(t *testing.T) {
	const (
		agent    = "quay.io/cilium/cilium:v1.15.19"
		operator = "quay.io/cilium/operator-generic:v1.15.19"
	)
	tests := []struct {
		name               string
		tags               [][]string
		agent, operator, v string
		wantErr            string
	}{
		{name: "Cilium's release", tags: [][]string{{agent}, {operator}}, agent: agent, operator: operator, v: "v1.15.19"},
		{name: "nfslab's own, saved", tags: [][]string{{"nfslab.local/cilium:v1.19.7"}, {"nfslab.local/cilium-operator-generic:v1.19.7"}},
			agent: "nfslab.local/cilium:v1.19.7", operator: "nfslab.local/cilium-operator-generic:v1.19.7", v: "v1.19.7"},
		{name: "a registry with a port, a tag that is no version", tags: [][]string{{"localhost:5000/cilium:dev"}, {"localhost:5000/operator:dev"}},
			agent: "localhost:5000/cilium:dev", operator: "localhost:5000/operator:dev"},
		{name: "other images beside", tags: [][]string{{"debian:12"}, {agent}, {operator}}, agent: agent, operator: operator, v: "v1.15.19"},
		{name: "no operator", tags: [][]string{{agent}}, wantErr: "0 images of Cilium's operator"},
		{name: "no agent", tags: [][]string{{operator}, {"quay.io/cilium/cilium-envoy:v1.15.19"}}, wantErr: "0 images of Cilium's agent"},
		{name: "two agents", tags: [][]string{{agent}, {"quay.io/cilium/cilium:v1.19.7"}, {operator}}, wantErr: "2 images of Cilium's agent"},
		{name: "no tag", tags: [][]string{nil}, wantErr: "no tag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "cilium.tar")
			if err := os.WriteFile(file, savedArchive(t, "", tt.tags...), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := UserCilium(t.Context(), image.Cache{Dir: t.TempDir()}, slog.New(slog.DiscardHandler), file, nil)
			if tt.wantErr != "" {
				var bad *UnusableError
				if !errors.As(err, &bad) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want an *UnusableError saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Archive != file || c.Agent != tt.agent || c.Operator != tt.operator || c.Version() != tt.v || len(c.Key) != 64 {
				t.Errorf("UserCilium = %+v (version %q)", c, c.Version())
			}
		})
	}
}

// TestUserCiliumReference: an agent's reference is saved by the host's Docker with the generic
// operator of the same path and tag, into the cache once; what is not an agent's reference is
// refused before Docker is asked.
func TestUserCiliumReference(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "docker"), []byte(fakeDocker), 0o755); err != nil {
		t.Fatal(err)
	}
	fixture := filepath.Join(t.TempDir(), "cilium.tar")
	if err := os.WriteFile(fixture, savedArchive(t, "", []string{"quay.io/cilium/cilium:v1.15.19"}, []string{"quay.io/cilium/operator-generic:v1.15.19"}), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, value         string
		have                bool
		wantErr, wantCalled string
	}{
		{name: "held by Docker", value: "quay.io/cilium/cilium:v1.15.19", have: true, wantCalled: "image inspect|image inspect|save"},
		{name: "cannot be pulled", value: "quay.io/cilium/cilium:v1.15.19", wantErr: "pull access denied", wantCalled: "image inspect|pull"},
		{name: "not the agent", value: "quay.io/cilium/operator-generic:v1.15.19", have: true, wantErr: "not Cilium's agent image"},
		{name: "not a reference", value: "cilium", have: true, wantErr: "not an image reference"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := filepath.Join(t.TempDir(), "calls")
			t.Setenv("PATH", bin+":/usr/bin:/bin")
			t.Setenv("FAKE_LOG", calls)
			t.Setenv("FAKE_FIXTURE", fixture)
			t.Setenv("FAKE_HAVE", map[bool]string{true: "1"}[tt.have])
			t.Setenv("FAKE_PULLABLE", "")
			if p, err := hosttools.Path("docker"); err != nil || !strings.HasPrefix(p, bin) {
				t.Skipf("docker is %q here, not the fake (%v)", p, err)
			}
			cache := image.Cache{Dir: t.TempDir()}
			c, err := UserCilium(t.Context(), cache, slog.New(slog.DiscardHandler), tt.value, nil)
			if got := calledVerbs(t, calls); got != tt.wantCalled {
				t.Errorf("docker was called for %q, want %q", got, tt.wantCalled)
			}
			if tt.wantErr != "" {
				var bad *UnusableError
				if !errors.As(err, &bad) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want an *UnusableError saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Agent != tt.value || c.Operator != "quay.io/cilium/operator-generic:v1.15.19" || !strings.HasPrefix(c.Archive, cache.Dir) {
				t.Errorf("UserCilium = %+v", c)
			}
			if _, err := UserCilium(t.Context(), cache, slog.New(slog.DiscardHandler), tt.value, nil); err != nil {
				t.Fatal(err)
			}
			if got := calledVerbs(t, calls); got != tt.wantCalled+"|image inspect|image inspect" {
				t.Errorf("the second time docker was called for %q", got)
			}
		})
	}
}

func TestOperatorFor(t *testing.T) {
	for agent, want := range map[string]string{
		"quay.io/cilium/cilium:v1.15.19":  "quay.io/cilium/operator-generic:v1.15.19",
		"localhost:5000/cilium:dev":       "localhost:5000/operator-generic:dev",
		"cilium:v1.19.7":                  "operator-generic:v1.19.7",
		"registry:5000/a/b/cilium:latest": "registry:5000/a/b/operator-generic:latest",
	} {
		if got := OperatorFor(agent); got != want {
			t.Errorf("OperatorFor(%q) = %q, want %q", agent, got, want)
		}
	}
}

// FuzzCiliumReference: any --cilium-image value that names an agent's reference gives an
// operator reference nfslab accepts as NAME:TAG, with the same tag; splitting never panics.
func FuzzCiliumReference(f *testing.F) {
	for _, s := range []string{"quay.io/cilium/cilium:v1.15.19", "localhost:5000/cilium:dev", "cilium", ":", "/:", "a/:b", "cilium:"} {
		f.Add(s)
	}
	re := image.DockerTag()
	f.Fuzz(func(t *testing.T, ref string) {
		name, tag := splitRef(ref)
		dir, repo := splitRepo(name)
		if dir+repo != name || (tag != "" && name+":"+tag != ref) {
			t.Fatalf("split %q into %q %q %q", ref, dir, repo, tag)
		}
		if !re.MatchString(ref) || repo != "cilium" {
			return
		}
		op := OperatorFor(ref)
		if _, opTag := splitRef(op); !re.MatchString(op) || opTag != tag {
			t.Errorf("OperatorFor(%q) = %q", ref, op)
		}
	})
}
