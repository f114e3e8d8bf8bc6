package gomod

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestBuildArgs(t *testing.T) {
	tests := []struct {
		name string
		b    Build
		want []string
	}{
		{"one package, no flags", Build{Packages: []string{"./cmd/a"}, OutDir: "/out"},
			[]string{"-n", "10", "go", "build", "-v", "-trimpath", "-gcflags=all=-dwarf=false", "-o", "/out/", "./cmd/a"}},
		{"one package named", Build{Packages: []string{"./server/v3"}, OutDir: "/out", Name: "etcd"},
			[]string{"-n", "10", "go", "build", "-v", "-trimpath", "-gcflags=all=-dwarf=false", "-o", "/out/etcd", "./server/v3"}},
		{"tags and ldflags", Build{Packages: []string{"./a", "./b"}, OutDir: "/out/", Tags: []string{"osusergo", "x"}, LDFlags: "-s -w"},
			[]string{"-n", "10", "go", "build", "-v", "-trimpath", "-gcflags=all=-dwarf=false", "-tags", "osusergo,x", "-ldflags", "-s -w", "-o", "/out/", "./a", "./b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.b.args(); !slices.Equal(got, tt.want) {
				t.Fatalf("args = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestMakefileCompileFlags: the Makefile's GOFLAGS must compile packages as Build does, or
// Kubernetes' build would compile client-go and the rest again instead of reusing nfslab's.
func TestMakefileCompileFlags(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	var goflags []string
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "export GOFLAGS := "); ok {
			v = strings.TrimSuffix(strings.TrimPrefix(v, "$(strip $(GOFLAGS) "), ")")
			goflags = strings.Fields(v)
		}
	}
	if goflags == nil {
		t.Fatal("no `export GOFLAGS := ` line in the Makefile")
	}
	for _, f := range CompileFlags() {
		if !slices.Contains(goflags, f) {
			t.Errorf("the Makefile's GOFLAGS %q lack %s", goflags, f)
		}
	}
}

// writeModule writes a module "m" with a main package in each of dirs, whose source is main.
func writeModule(t *testing.T, main string, dirs ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module m\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, d, "main.go"), []byte(main), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestBuildRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	t.Run("builds every command into OutDir", func(t *testing.T) {
		dir := writeModule(t, "package main\n\nvar v = \"default\"\n\nfunc main() { println(v) }\n", "one", "two")
		out := filepath.Join(t.TempDir(), "bin")
		b := Build{Dir: dir, Packages: []string{"./one", "./two"}, OutDir: out, LDFlags: "-X main.v=stamped-by-ldflags"}
		if err := b.Run(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"one", "two"} {
			data, err := os.ReadFile(filepath.Join(out, name))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(data), "stamped-by-ldflags") {
				t.Errorf("%s: the -X value is not in the binary", name)
			}
		}
	})
	// go build names a command in a major-version directory after the element before it: etcd's
	// go.etcd.io/etcd/server/v3 is "server". Name keeps such a command's name.
	t.Run("a major version suffix", func(t *testing.T) {
		dir := writeModule(t, "package main\n\nfunc main() {}\n", "server/v3")
		for _, tt := range []struct{ name, want string }{{"", "server"}, {"etcd", "etcd"}} {
			out := t.TempDir()
			if err := (Build{Dir: dir, Packages: []string{"./server/v3"}, OutDir: out, Name: tt.name}).Run(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(out, tt.want)); err != nil {
				t.Errorf("Name %q: %v", tt.name, err)
			}
		}
	})
	t.Run("a Name with two packages", func(t *testing.T) {
		if err := (Build{Packages: []string{"./a", "./b"}, OutDir: t.TempDir(), Name: "x"}).Run(context.Background(), nil); err == nil {
			t.Fatal("Run accepted a Name for two packages")
		}
	})
	t.Run("a compile error ends the error", func(t *testing.T) {
		dir := writeModule(t, "package main\n\nfunc main() { undefinedName() }\n", "bad")
		err := Build{Dir: dir, Packages: []string{"./bad"}, OutDir: t.TempDir()}.Run(context.Background(), nil)
		if err == nil || !strings.Contains(err.Error(), "undefinedName") {
			t.Fatalf("Run = %v, want the compiler's message naming undefinedName", err)
		}
	})
	t.Run("no packages", func(t *testing.T) {
		if err := (Build{OutDir: t.TempDir()}).Run(context.Background(), nil); err == nil {
			t.Fatal("Run with no packages succeeded")
		}
	})
}
