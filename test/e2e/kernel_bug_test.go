package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/reports"
)

// The tests in the kernel_*_test.go files need a kernel with the bug, vulnerable-6.1 (and
// control-6.1, its control), built from source when it is not cached. They run after the tests
// that need only Debian's own kernel (go test runs files in name order), so that in `make test`
// (-prebuild) that compile runs in the background on idle CPU while the earlier tests run.

// TestBugClassScenarios runs the scenarios that widen the bug class beyond a hard mount and a
// graceful pod deletion — Longhorn's soft mount options, nconnect, a node that dies without a
// goodbye — on the fixed and the vulnerable kernel with both datapaths, and checks each
// verdict against its evidence.
func TestBugClassScenarios(t *testing.T) {
	requireE2E(t)
	bin := buildNfslab(t)
	tests := []struct {
		scenario string
		check    func(t *testing.T, c reports.Cell)
	}{
		{"longhorn", func(t *testing.T, c reports.Cell) {
			if !strings.Contains(mountOptions(c), "soft") || !strings.Contains(mountOptions(c), "timeo=600") {
				t.Errorf("mount options %q: not Longhorn's", mountOptions(c))
			}
		}},
		{"nconnect", func(t *testing.T, c reports.Cell) {
			if n := kernelConnections(c); n < 4 {
				t.Errorf("%d kernel connections to the NFS port before the fault, want nconnect=4", n)
			}
		}},
		{"node-crash", func(t *testing.T, c reports.Cell) {
			// No FIN, no RST: the client only learns of the crash from its own timeouts.
			if c.Verdict == "recovered" && !slices.ContainsFunc(c.KernelLog, func(l string) bool { return strings.Contains(l, "not responding") }) {
				t.Errorf("recovered without ever timing out (kernel log %q): the old server said goodbye", c.KernelLog)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
			defer cancel()
			res := runScenario(ctx, t, bin, tt.scenario, 4)
			for _, c := range res.Cells {
				t.Run(c.Kernel+"/"+c.Datapath, func(t *testing.T) {
					checkVerdict(t, c)
					switch c.Verdict {
					case "bug-reproduced":
						if len(c.AskedOld) == 0 {
							t.Errorf("bug-reproduced without evidence that SUNRPC asked for %s", c.BackendA)
						}
					case "recovered":
						if c.RecoverySeconds == nil {
							t.Errorf("recovered without a recovery time")
						}
						if len(c.AskedOld) > 0 {
							t.Errorf("recovered, yet SUNRPC asked for the dead backend: %v", c.AskedOld)
						}
					}
					tt.check(t, c)
				})
			}
		})
	}
}

// mountOptions is the mount's options in /proc/mounts before the fault.
func mountOptions(c reports.Cell) string {
	for _, e := range c.Events {
		if e.Mount != nil {
			return e.Mount.Options
		}
	}
	return ""
}

// kernelConnections counts the kernel's established connections to the NFS port in the last
// socket snapshot before the fault.
func kernelConnections(c reports.Cell) int {
	n := 0
	for _, e := range c.Events {
		if e.Sockets != nil && e.Phase == "before-fault" {
			n = 0
			for _, s := range e.Sockets.Sockets {
				if s.State == "ESTABLISHED" {
					n++
				}
			}
		}
	}
	return n
}

// TestFidelityMatrix is issue #4's acceptance test: Debian's stock kernel and the same kernel
// with the kernel_connect()/kernel_bind()/sock_sendmsg() address copies reverted, each with
// kube-proxy and with socket-LB. Only the vulnerable kernel with socket-LB must hang, and the
// evidence must show its reconnects aimed at the dead pod. Builds the vulnerable kernel when it
// is not cached (minutes).
//
// It runs the matrix twice: with every VM booted cold (--no-snapshot), and restored from the
// snapshots of booted VMs (snapshot_test.go), and checks both, and that they agree.
func TestFidelityMatrix(t *testing.T) {
	requireE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 75*time.Minute)
	defer cancel()
	bin := buildNfslab(t)
	cold := runScenario(ctx, t, bin, "fidelity", 4, "--no-snapshot")
	checkFidelity(t, cold)
	restored := restoredRun(ctx, t, bin, "fidelity", 4)
	checkFidelity(t, restored)
	checkEquivalent(t, cold, restored)
}

func checkFidelity(t *testing.T, res *reports.Result) {
	for _, c := range res.Cells {
		t.Run(c.Kernel+"/"+c.Datapath, func(t *testing.T) {
			checkVerdict(t, c)
			want, _, _ := groundTruth(c.Kernel, c.Datapath, c.NFS, c.Fault)
			bug := want == "bug-reproduced"
			wantRelease := "6.1.0-"
			if c.Kernel == "vulnerable-6.1" {
				wantRelease = "6.1.192-nfslab-vulnerable"
			}
			if !strings.HasPrefix(c.KernelRelease, wantRelease) {
				t.Errorf("kernel_release %q, want %s…", c.KernelRelease, wantRelease)
			}
			// /proc/mounts keeps the VIP even when the kernel's own copy was overwritten.
			if c.MountAddrBefore != c.VIP || c.MountAddrAfter != c.VIP {
				t.Errorf("mount addr %q → %q, want the VIP %s both times", c.MountAddrBefore, c.MountAddrAfter, c.VIP)
			}
			hitA := slices.Contains(c.ReconnectTargets, c.BackendA)
			if bug {
				if !hitA {
					t.Errorf("reconnect targets %v: want the dead backend %s among them", c.ReconnectTargets, c.BackendA)
				}
				if c.RecoverySeconds != nil {
					t.Errorf("recovery_seconds %v on the hanging cell", *c.RecoverySeconds)
				}
			} else {
				if hitA {
					t.Errorf("reconnect targets %v include the dead backend %s", c.ReconnectTargets, c.BackendA)
				}
				if c.RecoverySeconds == nil {
					t.Errorf("no recovery_seconds")
				}
			}
		})
	}
}

// TestNFSVersions runs every NFS version on both kernels and datapaths. Beyond the expected
// verdicts it checks the two findings the matrix exists for: NFSv3 over UDP hangs on the
// vulnerable kernel with socket-LB because sendmsg4 was handed the dead pod's address (the
// sock_sendmsg() cousin), and Debian's kernel cannot mount NFS over UDP at all.
func TestNFSVersions(t *testing.T) {
	requireE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 75*time.Minute)
	defer cancel()
	bin := buildNfslab(t)
	res := runScenario(ctx, t, bin, "nfs-versions", 20)
	for _, c := range res.Cells {
		checkVerdict(t, c)
		switch {
		case c.Kernel == "debian-stock" && c.NFS == "3-udp":
			if !strings.Contains(c.Error, "CONFIG_NFS_DISABLE_UDP_SUPPORT") {
				t.Errorf("%s: error %q does not name CONFIG_NFS_DISABLE_UDP_SUPPORT", c.ID, c.Error)
			}
			if c.ReasonCode != "mount-refused: EINVAL" {
				t.Errorf("%s: reason code %q, want mount-refused: EINVAL (the kernel's own refusal, not a lab failure)", c.ID, c.ReasonCode)
			}
		case c.Kernel == "vulnerable-6.1" && c.Datapath == "socket-lb" && c.NFS == "3-udp":
			sawSendmsg := false
			for _, e := range c.Events {
				if e.Connect != nil && e.Connect.Source == "socket-lb:sendmsg4" && strings.HasPrefix(e.Connect.Input, c.BackendA+":") {
					sawSendmsg = true
				}
			}
			if !sawSendmsg {
				t.Errorf("%s: no sendmsg4 hook event handed the dead backend %s", c.ID, c.BackendA)
			}
		}
	}
}

// TestControlKernel isolates the revert: control-6.1 is vulnerable-6.1's source and config without
// the revert, so it must recover wherever vulnerable-6.1 hangs, over TCP and over UDP, and its
// kernel_connect() must be handed the VIP, never the dead pod. It runs the control scenario's
// control-6.1 cells only: its vulnerable-6.1 cells are the same cells TestFidelityMatrix (4.1)
// and TestNFSVersions (3-udp) assert, and a second run of them cost `make test` a minute. Builds
// both recipes when they are not cached (control-6.1 relinks vulnerable-6.1's tree).
func TestControlKernel(t *testing.T) {
	requireE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 75*time.Minute)
	defer cancel()
	bin := buildNfslab(t)
	res := runScenario(ctx, t, bin, "control", 4, "--kernel", "control-6.1")
	for _, c := range res.Cells {
		checkVerdict(t, c)
		if c.Kernel != "control-6.1" {
			t.Errorf("%s: a cell of kernel %s, want control-6.1 only", c.ID, c.Kernel)
			continue
		}
		if !strings.HasSuffix(c.KernelRelease, "-nfslab-control") {
			t.Errorf("%s: kernel_release %q, want the control kernel", c.ID, c.KernelRelease)
		}
		for _, e := range c.Events {
			if e.Connect != nil && strings.HasPrefix(e.Connect.Input, c.BackendA+":") {
				t.Errorf("%s: %s was handed the dead backend %s on the control kernel", c.ID, e.Connect.Source, e.Connect.Input)
			}
		}
	}
}

// TestStaleEndpoint checks the bug's signature against its look-alike: for 8 s after the fault
// the datapath still points the VIP at the dead pod, so on the fixed kernel the socket-LB sends
// the kernel's reconnects there (a legitimate rewrite) and I/O stays stuck past the 2 s probe
// deadline after the new pod is ready. That cell must be judged recovered, with no evidence that
// SUNRPC asked for the dead pod; the vulnerable kernel under socket-LB is still the bug.
func TestStaleEndpoint(t *testing.T) {
	requireE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 75*time.Minute)
	defer cancel()
	bin := buildNfslab(t)
	res := runScenario(ctx, t, bin, "stale-endpoint", 4)
	for _, c := range res.Cells {
		t.Run(c.Kernel+"/"+c.Datapath, func(t *testing.T) {
			checkVerdict(t, c)
			if !slices.Contains(steps(c), event.StepStaleEndpoint) {
				t.Errorf("steps %v: no %s", steps(c), event.StepStaleEndpoint)
			}
			switch {
			case c.Kernel == "vulnerable-6.1" && c.Datapath == "socket-lb":
				if len(c.AskedOld) == 0 {
					t.Errorf("bug-reproduced without evidence that SUNRPC asked for %s", c.BackendA)
				}
			case c.Datapath == "socket-lb":
				// The look-alike: stuck past the probe deadline, a connect to the dead pod
				// after the fault, and yet no evidence that SUNRPC asked for it.
				if !slices.Contains(steps(c), event.StepIOStuck) {
					t.Errorf("steps %v: I/O was never stuck past the probe deadline; the cell does not test the look-alike", steps(c))
				}
				if !slices.Contains(c.ReconnectTargets, c.BackendA) {
					t.Errorf("reconnect targets %v: the socket-LB never sent a reconnect to the dead backend %s", c.ReconnectTargets, c.BackendA)
				}
				if len(c.AskedOld) > 0 {
					t.Errorf("evidence that SUNRPC asked for the dead backend on a fixed kernel: %v", c.AskedOld)
				}
			}
		})
	}
}
