package build

import (
	"context"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nfslab/nfslab/lab/image"
)

// Cilium's version parser (pkg/version.FromString) wants seven space-separated fields once the
// Go runtime's are appended: ciliumVersion must carry exactly three.
func TestLdflagsStampsThreeFields(t *testing.T) {
	flags := ldflags("v1.19.7", "2026-08-18T08:34:44Z")
	_, stamp, ok := strings.Cut(flags, "ciliumVersion=")
	if !ok || !strings.HasPrefix(flags, "-s -w ") {
		t.Fatalf("ldflags = %q", flags)
	}
	stamp = strings.TrimSuffix(stamp, "'")
	if f := strings.Fields(stamp); len(f) != 3 || f[0] != "1.19.7" {
		t.Fatalf("stamp %q: want 3 fields starting with 1.19.7", stamp)
	}
}

// go build names each binary after its package's last path element; Build renames them, so two
// commands of one go build may not share that element, and names must be unique.
func TestCommandsRenameUniquely(t *testing.T) {
	names := map[string]bool{}
	built := map[bool]map[string]bool{false: {}, true: {}}
	operators := 0
	for _, c := range Commands() {
		if names[c.Name] {
			t.Errorf("command %s twice", c.Name)
		}
		names[c.Name] = true
		b := path.Base(c.Package)
		if built[c.Operator][b] {
			t.Errorf("%s: another command of its go build is also written as %s", c.Name, b)
		}
		built[c.Operator][b] = true
		if c.Operator {
			operators++
		}
	}
	if operators != 1 {
		t.Errorf("%d operators, want 1", operators)
	}
}

func TestSkippedBPF(t *testing.T) {
	tests := []struct {
		rel  string
		want bool
	}{
		{"bpf_sock.c", false},
		{"lib/lb.h", false},
		{"include/bpf/ctx/skb.h", false},
		{"tests", true},
		{"tests/lb_test.c", true},
		{"complexity-tests/5.10/bpf_lxc.txt", true},
		{"Makefile", true},
		{"Makefile.bpf", true},
		{"lib/Makefile", false},
	}
	for _, tt := range tests {
		if got := skippedBPF(tt.rel); got != tt.want {
			t.Errorf("skippedBPF(%q) = %v, want %v", tt.rel, got, tt.want)
		}
	}
}

func TestReleaseTime(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, info, want string
	}{
		{"the proxy's info", `{"Version":"v1.19.7","Time":"2026-08-18T08:34:44Z"}`, "2026-08-18T08:34:44Z"},
		{"another zone", `{"Version":"v1","Time":"2026-08-18T10:34:44+02:00"}`, "2026-08-18T08:34:44Z"},
		{"no time", `{"Version":"v1"}`, ""},
		{"not JSON", `<html>`, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := filepath.Join(dir, string(rune('a'+i))+".info")
			if err := os.WriteFile(f, []byte(tt.info), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := releaseTime(f)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("releaseTime = %q, want an error", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("releaseTime = %q, %v, want %q", got, err, tt.want)
			}
		})
	}
}

func TestCopyFilesLaysOutTheImageTree(t *testing.T) {
	src, root := t.TempDir(), t.TempDir()
	for _, f := range append(scripts(), "bpf/bpf_sock.c", "bpf/lib/lb.h", "bpf/tests/x.c", "bpf/Makefile") {
		p := filepath.Join(src, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := copyFiles(src, root); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"init-container.sh", "install-plugin.sh", "cni-uninstall.sh"} {
		st, err := os.Stat(filepath.Join(root, want))
		if err != nil || st.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s: %v, mode %v: want an executable script", want, err, st)
		}
	}
	for f, want := range map[string]bool{"bpf_sock.c": true, "lib/lb.h": true, "tests/x.c": false, "Makefile": false} {
		_, err := os.Stat(filepath.Join(root, BPFDir, f))
		if got := err == nil; got != want {
			t.Errorf("%s/%s present = %v, want %v", BPFDir, f, got, want)
		}
	}
}

func TestBuildRefusesAVersionBeforeDownloading(t *testing.T) {
	cache := image.Cache{Dir: t.TempDir()}
	_, err := Build(context.Background(), cache, nil, "v1.20.2", nil)
	if err == nil || !strings.Contains(err.Error(), "v1.19.7") {
		t.Fatalf("Build(v1.20.2) = %v, want an error naming the versions that build", err)
	}
	if entries, _ := os.ReadDir(cache.Dir); len(entries) != 0 {
		t.Errorf("the cache has %d entries after a refused version", len(entries))
	}
}
