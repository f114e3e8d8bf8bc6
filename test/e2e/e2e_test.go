// Package e2e runs nfslab end to end: it builds the static binary, boots real VMs with real
// kernels, nfs-ganesha and the kernel NFS client, and asserts the verdicts and the evidence in
// result.json. The tests need root, qemu and mmdebstrap (`make deps`), and run only with -e2e.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/kernel/recipe"
	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/reports"
	"github.com/nfslab/nfslab/scenarios"
)

var (
	runE2E   = flag.Bool("e2e", false, "run the end-to-end tests (boot VMs; needs root, qemu, mmdebstrap)")
	cacheDir = flag.String("cache-dir", "", "nfslab artefact cache (default: nfslab's own default)")
)

func requireE2E(tb testing.TB) {
	tb.Helper()
	if !*runE2E {
		tb.Skip("end-to-end test: pass -e2e to boot VMs")
	}
	if os.Geteuid() != 0 {
		tb.Fatal("the end-to-end tests need root (network namespaces, mounts and BPF inside the VM are fine, but mmdebstrap and qemu setup run on the host)")
	}
}

// e2eBinary is the nfslab binary the tests run: built once per test process by buildNfslab (a
// link takes seconds of CPU, and two dozen tests ask for it), in a directory that TestMain
// makes before the tests and removes after them.
var e2eBinary struct {
	once sync.Once
	dir  string
	path string
	out  []byte
	err  error
}

// buildNfslab returns the static nfslab binary, building it on the first call.
func buildNfslab(tb testing.TB) string {
	tb.Helper()
	bin, out, err := sharedNfslab()
	if err != nil {
		tb.Fatalf("build nfslab: %v\n%s", err, out)
	}
	return bin
}

// sharedNfslab builds e2eBinary once and returns it, or the build's error and output.
func sharedNfslab() (bin string, out []byte, err error) {
	e2eBinary.once.Do(func() {
		if e2eBinary.dir == "" {
			e2eBinary.err = errors.New("no directory for it: TestMain did not run")
			return
		}
		bin := filepath.Join(e2eBinary.dir, "nfslab")
		if e2eBinary.out, e2eBinary.err = goBuildNfslab(bin); e2eBinary.err == nil {
			e2eBinary.path = bin
		}
	})
	return e2eBinary.path, e2eBinary.out, e2eBinary.err
}

// goBuildNfslab builds the static nfslab binary into bin with the flags of the go commands that
// ran before it: under make, GOFLAGS=-trimpath for all of them, so its packages come from the
// Go build cache (a -trimpath of its own would compile every package again, 3 minutes cold).
func goBuildNfslab(bin string) ([]byte, error) {
	cmd := exec.Command("go", "build", "-o", bin, "../../cmd/nfslab")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	return cmd.CombinedOutput()
}

// runNfslab runs the binary with args, streams its output to the test log, and returns the exit
// code. The run's temporary files go under tmp, so leftovers(tmp) sees only this run's.
func runNfslab(ctx context.Context, tb testing.TB, bin, tmp string, args ...string) int {
	tb.Helper()
	if *cacheDir != "" {
		args = append(args, "--cache-dir", *cacheDir)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			tb.Log(sc.Text())
		}
	}()
	err := cmd.Run()
	pw.Close()
	<-done
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		tb.Fatalf("run nfslab %v: %v", args, err)
	}
	return 0
}

func steps(c reports.Cell) []event.Step {
	var s []event.Step
	for _, e := range c.Events {
		if e.Kind == event.KindStep {
			s = append(s, e.Step)
		}
	}
	return s
}

// lastSocketsAfterFault returns the remote addresses of the kernel's NFS sockets in the last
// socket snapshot after the fault.
func lastSocketsAfterFault(c reports.Cell) []string {
	var remotes []string
	for _, e := range c.Events {
		if e.Sockets != nil && e.Phase == event.PhaseAfter {
			remotes = remotes[:0]
			for _, s := range e.Sockets.Sockets {
				if s.State == "ESTABLISHED" {
					remotes = append(remotes, s.Remote)
				}
			}
		}
	}
	return remotes
}

// TestDefaultScenario is issue #3's acceptance test: the default scenario on Debian's stock
// kernel recovers on both datapaths, with the evidence to show it.
func TestDefaultScenario(t *testing.T) {
	requireE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	bin := buildNfslab(t)
	dir, tmp := t.TempDir(), t.TempDir()

	if code := runNfslab(ctx, t, bin, tmp, "run", "--report-dir", dir); code != 0 {
		t.Fatalf("nfslab run: exit code %d, want 0", code)
	}
	res, err := reports.ReadJSON(filepath.Join(dir, "result.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Pass || len(res.Cells) != 2 {
		t.Fatalf("result: pass=%v with %d cells, want pass with 2", res.Pass, len(res.Cells))
	}
	var datapaths []string
	for _, c := range res.Cells {
		t.Run(c.Datapath, func(t *testing.T) {
			datapaths = append(datapaths, c.Datapath)
			checkVerdict(t, c)
			if c.KernelRelease == "" || c.KernelRelease[:3] != "6.1" {
				t.Errorf("kernel_release %q, want Debian's 6.1 stock kernel", c.KernelRelease)
			}
			if c.MountAddrBefore != c.VIP || c.MountAddrAfter != c.VIP {
				t.Errorf("mount addr before %q after %q, want the VIP %s both times", c.MountAddrBefore, c.MountAddrAfter, c.VIP)
			}
			if c.RecoverySeconds == nil || *c.RecoverySeconds <= 0 || *c.RecoverySeconds > 60 {
				t.Errorf("recovery_seconds %v, want a measured time in (0, 60]", c.RecoverySeconds)
			}
			if slices.Contains(c.ReconnectTargets, c.BackendA) {
				t.Errorf("reconnect targets %v include the dead backend %s on a fixed kernel", c.ReconnectTargets, c.BackendA)
			}
			want := []event.Step{event.StepMounted, event.StepBaselineIO, event.StepFaultInjected, event.StepBackendBReady, event.StepIORecovered, event.StepTeardown}
			got := steps(c)
			i := 0
			for _, s := range got {
				if i < len(want) && s == want[i] {
					i++
				}
			}
			if i != len(want) {
				t.Errorf("steps %v do not contain %v in order", got, want)
			}
			// Where the kernel's socket went after failover: kube-proxy keeps the VIP as the
			// peer (DNAT happens per packet), socket-LB connects straight to the new pod.
			wantPeer := fmt.Sprintf("%s:2049", c.VIP)
			if c.Datapath == "socket-lb" {
				wantPeer = fmt.Sprintf("%s:2049", c.BackendB)
			}
			if peers := lastSocketsAfterFault(c); !slices.Contains(peers, wantPeer) {
				t.Errorf("established NFS sockets after failover %v, want one to %s", peers, wantPeer)
			}
		})
	}
	slices.Sort(datapaths)
	if !slices.Equal(datapaths, []string{"kube-proxy", "socket-lb"}) {
		t.Errorf("datapaths %v, want kube-proxy and socket-lb", datapaths)
	}
	for _, f := range []string{"summary.md", "console-debian-stock-1.log"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("report file: %v", err)
		}
	}
	if left := leftovers(t, tmp); len(left) > 0 {
		t.Errorf("left behind after the run: %v", left)
	}
}

// logEvidence logs a cell's observations, so that a failure in CI can be understood without the
// report directory (which the test removes).
func logEvidence(t testing.TB, c reports.Cell) {
	t.Helper()
	for _, e := range c.Events {
		if e.Kind == event.KindObserve || e.Kind == event.KindError {
			b, _ := json.Marshal(e)
			t.Logf("  %s", b)
		}
	}
}

// leftovers lists what a run with TMPDIR=tmp may leave behind by mistake: its work directories
// and qemu processes booted from them.
func leftovers(tb testing.TB, tmp string) []string {
	tb.Helper()
	var left []string
	dirs, _ := filepath.Glob(filepath.Join(tmp, "nfslab-run-*"))
	left = append(left, dirs...)
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.HasPrefix(cmd, "qemu-system-x86_64") && strings.Contains(cmd, tmp) {
			left = append(left, "process "+filepath.Base(filepath.Dir(p))+": "+cmd[:min(len(cmd), 120)])
		}
	}
	return left
}

// TestInterruptCleansUp sends SIGINT to a run in the middle of a cell and checks that nfslab
// exits promptly with code 3 and leaves no qemu process and no work directory behind.
func TestInterruptCleansUp(t *testing.T) {
	requireE2E(t)
	bin := buildNfslab(t)
	tmp := t.TempDir()
	cmd := exec.Command(bin, "run", "--report-dir", t.TempDir())
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	if *cacheDir != "" {
		cmd.Args = append(cmd.Args, "--cache-dir", *cacheDir)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	interrupted := false
	var sent time.Time
	for sc.Scan() {
		t.Log(sc.Text())
		if !interrupted && strings.Contains(sc.Text(), string(event.StepMounted)) {
			sent = time.Now()
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			interrupted = true
		}
	}
	err = cmd.Wait()
	if !interrupted {
		t.Fatalf("the run never reached %q", event.StepMounted)
	}
	took := time.Since(sent)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("exit after SIGINT: %v, want exit code 3", err)
	}
	if took > 20*time.Second {
		t.Errorf("nfslab took %s to exit after SIGINT", took)
	}
	if left := leftovers(t, tmp); len(left) > 0 {
		t.Errorf("left behind after SIGINT: %v", left)
	}
}

// runScenario runs a built-in scenario (or a scenario file) to completion, with extra run
// arguments if any, and returns its result.
// The test fails when nfslab does not exit 0 (some cell did not get its expected verdict; the
// cells then say which) and stops when the result is missing or its cell count is not wantCells.
func runScenario(ctx context.Context, t *testing.T, bin, scenario string, wantCells int, args ...string) *reports.Result {
	t.Helper()
	buildKernels(t, bin, scenarioKernels(t, scenario, args))
	dir := t.TempDir()
	args = append([]string{"run", "--scenario", scenario, "--report-dir", dir}, args...)
	if code := runNfslab(ctx, t, bin, t.TempDir(), args...); code != 0 {
		t.Errorf("nfslab run --scenario %s: exit code %d, want 0", scenario, code)
	}
	res, err := reports.ReadJSON(filepath.Join(dir, "result.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Cells) != wantCells {
		t.Fatalf("%s: %d cells, want %d", scenario, len(res.Cells), wantCells)
	}
	return res
}

// kernelBuildBudget bounds the build of one kernel recipe in the tests. A cold build took 7–12
// minutes on one 2-core machine and 23 on another of the same size; a second recipe of the same
// source and config is a relink (the shared build tree).
const kernelBuildBudget = 45 * time.Minute

// buildKernels builds the kernel recipes among kernels with `nfslab kernel build`, each under a
// deadline of its own, so that the timeout of the scenario that needs them measures the
// scenario, not a cold compile. A kernel already built costs a cache lookup.
func buildKernels(t testing.TB, bin string, kernels []string) {
	t.Helper()
	for _, k := range kernels {
		if !slices.Contains(recipe.Names(), k) {
			continue // Debian's kernels and paths are fetched or read by the run itself
		}
		ctx, cancel := context.WithTimeout(context.Background(), kernelBuildBudget)
		code := runNfslab(ctx, t, bin, t.TempDir(), "kernel", "build", k)
		cancel()
		if code != 0 {
			t.Fatalf("nfslab kernel build %s: exit code %d", k, code)
		}
	}
}

// scenarioKernels returns the kernels of a built-in scenario's cells, in order, as narrowed by
// the run's --kernel arguments.
func scenarioKernels(t testing.TB, name string, args []string) []string {
	t.Helper()
	var only []string
	for i, a := range args {
		if a == "--kernel" && i+1 < len(args) {
			only = append(only, args[i+1])
		}
	}
	s, err := scenario.Load(name, scenarios.FS)
	if err != nil {
		t.Fatalf("scenario %s: %v", name, err)
	}
	var out []string
	for _, c := range s.Cells() {
		if !slices.Contains(out, c.Kernel) && (len(only) == 0 || slices.Contains(only, c.Kernel)) {
			out = append(out, c.Kernel)
		}
	}
	return out
}
