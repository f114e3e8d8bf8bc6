package gomod

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nfslab/nfslab/internal/lines"
	"github.com/nfslab/nfslab/lab/internal/procgroup"
)

// Build is one `go build` of one or more main packages of the module in Dir: static
// (CGO_ENABLED=0), compiled with CompileFlags, with the module graph resolved from go.mod
// and go.sum as they are (-mod=mod, no go.work), under nice so that a lab running beside it
// keeps its CPU.
//
// One invocation for several commands keeps both cores of a small machine busy: the go
// command links one command while it compiles the next one's packages, where a build per
// command links alone at the end of each.
type Build struct {
	// Dir is the main module's directory.
	Dir string
	// Packages are the main packages, as go build takes them (import paths or ./dir).
	Packages []string
	// OutDir receives the commands. go build names each after its package's last path element,
	// or the one before a major version suffix (go.etcd.io/etcd/server/v3 is "server").
	OutDir string
	// Name, with a single package, is its command's file name in OutDir instead.
	Name    string
	Tags    []string
	LDFlags string
}

// CompileFlags are the go build flags that decide how each package compiles. The Makefile's
// GOFLAGS carries the same ones, so that a package nfslab and Kubernetes (or Cilium) both use is
// compiled once into Go's build cache, not once per flag set (TestMakefileCompileFlags):
//   - -trimpath: the same paths whatever the module's directory;
//   - -gcflags=all=-dwarf=false: no debug information in the objects. The binaries are linked
//     without DWARF anyway (-ldflags -w or -s -w), and stack traces do not need it; the compile
//     of nfslab's dependencies took 10 % less CPU without it (301 s of user time instead of 269).
func CompileFlags() []string { return []string{"-trimpath", "-gcflags=all=-dwarf=false"} }

// Progress is a build's state, reported once a minute: how many packages go build has compiled
// so far, the latest one, and the time since the build started.
type Progress struct {
	Compiled int
	Latest   string
	Elapsed  time.Duration
}

// Run runs the build. tick, when not nil, receives a Progress once a minute. A failed build's
// error ends with the tail of the compiler's output.
func (b Build) Run(ctx context.Context, tick func(Progress)) error {
	if len(b.Packages) == 0 {
		return errors.New("go build: no packages")
	}
	if b.Name != "" && len(b.Packages) != 1 {
		return fmt.Errorf("go build %s: a Name with %d packages", strings.Join(b.Packages, " "), len(b.Packages))
	}
	if err := os.MkdirAll(b.OutDir, 0o755); err != nil {
		return fmt.Errorf("go build %s: %w", strings.Join(b.Packages, " "), err)
	}
	start := time.Now()
	var (
		mu       sync.Mutex
		compiled int
		latest   string
	)
	output := &lines.Writer{Keep: 20, OnLine: func(l string) {
		// go build -v names each package as it compiles it.
		if l != "" && !strings.Contains(l, " ") {
			mu.Lock()
			compiled, latest = compiled+1, l
			mu.Unlock()
		}
	}}
	// On cancellation, interrupt the whole process group as a terminal's ^C would, so that no
	// compile or link goes on; SIGKILL (the go command only) if that takes longer than 30 s.
	// An interrupted go build leaves its work directory (126 MB of a Cilium build seen in
	// $TMPDIR): it goes into one of ours, removed whatever happens.
	cmd := procgroup.Command(ctx, syscall.SIGINT, 30*time.Second, "nice", b.args()...)
	work, err := os.MkdirTemp("", "nfslab-gobuild-")
	if err != nil {
		return fmt.Errorf("go build %s: %w", strings.Join(b.Packages, " "), err)
	}
	defer os.RemoveAll(work)
	cmd.Dir = b.Dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOWORK=off", "GOTMPDIR="+work)
	cmd.Stdout, cmd.Stderr = output, output
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("go build %s: %w", strings.Join(b.Packages, " "), err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	ticker := time.NewTicker(time.Minute)
	defer ticker.Stop()
	for {
		select {
		case err := <-done:
			output.Flush()
			if err != nil && ctx.Err() != nil {
				return fmt.Errorf("go build %s: interrupted: %w", strings.Join(b.Packages, " "), ctx.Err())
			}
			if err != nil {
				return fmt.Errorf("go build %s: %w\n%s", strings.Join(b.Packages, " "), err, output.Tail())
			}
			return nil
		case <-ticker.C:
			if tick != nil {
				mu.Lock()
				p := Progress{Compiled: compiled, Latest: latest, Elapsed: time.Since(start)}
				mu.Unlock()
				tick(p)
			}
		}
	}
}

// args is the command line run under nice.
func (b Build) args() []string {
	args := append([]string{"-n", "10", "go", "build", "-v"}, CompileFlags()...)
	if len(b.Tags) > 0 {
		args = append(args, "-tags", strings.Join(b.Tags, ","))
	}
	if b.LDFlags != "" {
		args = append(args, "-ldflags", b.LDFlags)
	}
	if b.Name != "" {
		args = append(args, "-o", filepath.Join(b.OutDir, b.Name))
	} else {
		// A trailing separator makes -o a directory even for one package.
		args = append(args, "-o", filepath.Clean(b.OutDir)+string(filepath.Separator))
	}
	return append(args, b.Packages...)
}
