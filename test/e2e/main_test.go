package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nfslab/nfslab/internal/lines"
)

var prebuild = flag.Bool("prebuild", false, "with -e2e: build vulnerable-6.1 and the kind node image in the background, on idle CPU only, while the tests that need neither run")

// TestMain starts the prebuild (-prebuild) before the tests and stops it after them.
//
// Two compiles dominate a cold `make test`: the vulnerable kernel and Kubernetes. Under TCG a
// VM keeps the host's cores only partly busy (the guest waits on NFS timeouts, on kube-proxy,
// on the fault), so the compiles run meanwhile, under SCHED_IDLE: they get only CPU time that
// nothing else asks for. That is not free: in the cold run of 2026-12-06 the tests beside a
// compile ran 5-50 % slower than alone (the cores share their caches), which their deadlines
// allow. The tests that need an artefact come later in file order and wait for it on the cache
// lock, the way two nfslab runs share a build: kernel_*_test.go need the kernel, and the kind
// suite (suite_kind_test.go) needs the node image, built last, so it runs after every test that
// needs neither (smb, snapshot), which thus run while Kubernetes compiles instead of after it.
func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "nfslab-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: a directory for the nfslab binary: %v\n", err)
		os.Exit(1)
	}
	e2eBinary.dir = dir
	stop := func() {}
	if *runE2E && *prebuild {
		stop = startPrebuild()
	}
	code := m.Run()
	stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// prebuildSequences are the artefacts built ahead. Each sequence runs its steps in order, and the
// sequences run side by side: the kernel is needed first (the tests in kernel_bug_test.go), the
// node image later (suite_kind_test.go); the node image's Go modules, which only take the
// network and a little CPU, are fetched meanwhile (in the cold run of 2026-12-06 they held up the
// Kubernetes compile for 70 s).
func prebuildSequences() [][][]string {
	return [][][]string{
		{{"kernel", "build", "vulnerable-6.1"}, {"node-image", "build"}},
		{{"node-image", "build", "--download-only"}},
	}
}

// startPrebuild runs prebuildSequences in the background and returns a function that stops them
// (if still running) and waits. Each step's output goes to a log file; stderr gets each step's
// outcome, with the log's tail when it failed. A failed step is only reported: the test that
// needs the artefact builds it again and fails with the build's own error.
func startPrebuild() (stop func()) {
	dir, err := os.MkdirTemp("", "nfslab-prebuild-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e prebuild: not started: %v\n", err)
		return func() {}
	}
	bin, out, err := sharedNfslab()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e prebuild: not started: build nfslab: %v\n%s", err, out)
		os.RemoveAll(dir)
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for s, seq := range prebuildSequences() {
		wg.Go(func() {
			for i, step := range seq {
				if ctx.Err() != nil {
					return
				}
				runPrebuildStep(ctx, bin, filepath.Join(dir, fmt.Sprintf("seq%d-step%d.log", s+1, i+1)), step)
			}
		})
	}
	return func() {
		cancel()
		wg.Wait()
		os.RemoveAll(dir)
	}
}

// runPrebuildStep runs one step under SCHED_IDLE (chrt -i 0, inherited by make, the compilers
// and go build); where chrt is missing, at nice 19.
func runPrebuildStep(ctx context.Context, bin, logFile string, step []string) {
	args := append([]string{bin}, step...)
	if *cacheDir != "" {
		args = append(args, "--cache-dir", *cacheDir)
	}
	name := "chrt"
	if _, err := exec.LookPath("chrt"); err == nil {
		args = append([]string{"--idle", "0"}, args...)
	} else {
		name, args = "nice", append([]string{"-n", "19"}, args...)
	}
	out, err := os.Create(logFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e prebuild: %v: %v\n", step, err)
		return
	}
	defer out.Close()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	// On stop, SIGTERM first: nfslab stops make or go build and releases its cache lock.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	start := time.Now()
	err = cmd.Run()
	switch {
	case ctx.Err() != nil:
		fmt.Fprintf(os.Stderr, "e2e prebuild: %v stopped after %.0f s (the tests ended first)\n", step, time.Since(start).Seconds())
	case err != nil:
		tail, _ := os.ReadFile(logFile)
		fmt.Fprintf(os.Stderr, "e2e prebuild: %v failed after %.0f s: %v\n%s\n", step, time.Since(start).Seconds(), err, lines.Tail(string(tail), 15))
	default:
		fmt.Fprintf(os.Stderr, "e2e prebuild: %v done in %.0f s, on idle CPU\n", step, time.Since(start).Seconds())
	}
}
