package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/nfslab/nfslab/lab"
)

// checkKind runs `nfslab kernel check-kind KERNEL extra... -o json` with TMPDIR=tmp, fails the
// test when it fails, and returns its report and the JSON it printed.
func checkKind(t *testing.T, bin, tmp, kernel string, extra ...string) (lab.MachineReport, []byte) {
	t.Helper()
	args := append([]string{"kernel", "check-kind", kernel, "-o", "json"}, extra...)
	if *cacheDir != "" {
		args = append(args, "--cache-dir", *cacheDir)
	}
	cmd := exec.CommandContext(t.Context(), bin, args...)
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	t.Log(stderr.String())
	if err != nil {
		t.Fatalf("nfslab %s: %v", strings.Join(args, " "), err)
	}
	var rep lab.MachineReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("decode the report: %v\n%s", err, out)
	}
	return rep, out
}

// TestKindMachine: `nfslab kernel check-kind` boots Debian's kernel and the vulnerable recipe as
// the kind form's machine: Docker starts on its disk with overlay2 on ext4 under cgroup v2, and
// a container runs the way kind runs its nodes. Nothing is left behind; bad input is refused
// before anything boots. With -kind-scenarios only (make kind): in make test, TestKindSuite
// runs a whole kind cluster on the vulnerable kernel already.
func TestKindMachine(t *testing.T) {
	requireE2E(t)
	if !*runKindScenarios {
		t.Skip("the kind form's machine check: pass -kind-scenarios (make kind)")
	}
	bin := buildNfslab(t)
	for _, k := range []string{"debian-stock", "vulnerable-6.1"} {
		t.Run(k, func(t *testing.T) {
			tmp := t.TempDir()
			rep, _ := checkKind(t, bin, tmp, k)
			e := rep.Engine
			if e.ServerVersion == "" || e.Driver != "overlay2" || e.BackingFS != "extfs" || e.CgroupVersion != "2" {
				t.Errorf("engine %+v: want a server version, overlay2 on extfs, cgroup v2", e)
			}
			if e.KernelVersion != rep.Release || rep.Release == "" {
				t.Errorf("the engine runs on kernel %q, the VM booted %q", e.KernelVersion, rep.Release)
			}
			if e.Container == nil || e.Container.Image == "" {
				t.Errorf("no node-like container ran: %+v", e)
			}
			if left := leftovers(t, tmp); len(left) > 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
	t.Run("bad input", func(t *testing.T) {
		for _, args := range [][]string{
			{"kernel", "check-kind", "no-such-kernel"},
			{"kernel", "check-kind", "debian-stock", "--accel", "warp"},
			{"kernel", "check-kind", "debian-stock", "-o", "yaml"},
		} {
			tmp := t.TempDir()
			if code := runNfslab(context.Background(), t, bin, tmp, args...); code != 2 {
				t.Errorf("nfslab %s: exit code %d, want 2", strings.Join(args, " "), code)
			}
			if left := leftovers(t, tmp); len(left) > 0 {
				t.Errorf("nfslab %s left behind: %v", strings.Join(args, " "), left)
			}
		}
	})
}
