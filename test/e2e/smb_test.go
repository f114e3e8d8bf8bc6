package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nfslab/nfslab/reports"
)

// TestSMB runs NFS next to SMB on the fixed, the vulnerable and the partially fixed kernel (only
// the SMB client's conversion to kernel_connect() reverted). Measured here: under a socket-LB the
// hook overwrites the SMB client's own address on both vulnerable kernels — `mount` then shows the
// pod IP — but SMB recovers, because the client derives the address again from the share's
// server name before each reconnect; NFS hangs on vulnerable-6.1 only. Builds vulnerable-6.1 and
// partial-6.1 when they are not cached (partial-6.1 only with -kernels, as `make kernels` runs).
func TestSMB(t *testing.T) {
	requireE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 75*time.Minute)
	defer cancel()
	bin := buildNfslab(t)
	// partial-6.1 is a third 6.1 build (minutes on a cold cache): with -kernels only.
	var res *reports.Result
	if *runKernels {
		res = runScenario(ctx, t, bin, "smb", 12)
	} else {
		res = runScenario(ctx, t, bin, "smb", 8, "--kernel", "debian-stock", "--kernel", "vulnerable-6.1")
	}
	for _, c := range res.Cells {
		t.Run(c.ID, func(t *testing.T) {
			checkVerdict(t, c)
			smb := c.NFS == "smb3"
			if smb && !strings.Contains(mountOptions(c), "vers=3.1.1") {
				t.Errorf("mount options %q: not an SMB 3.1.1 mount", mountOptions(c))
			}
			if c.Verdict == "bug-reproduced" && len(c.AskedOld) == 0 {
				t.Errorf("bug-reproduced without evidence that the client asked for %s", c.BackendA)
			}
			if c.Verdict == "recovered" && len(c.AskedOld) > 0 {
				t.Errorf("recovered, yet the client asked for the dead backend: %v", c.AskedOld)
			}
			// Where the SMB client's address was overwritten, `mount` shows the pod it was
			// rewritten to; on the fixed kernel, the VIP.
			if smb && c.Datapath == "socket-lb" {
				overwritten := c.Kernel != "debian-stock"
				if shows := c.MountAddrBefore == c.BackendA; shows != overwritten {
					t.Errorf("mount addr before the fault %q (VIP %s, pod A %s): want the pod's address exactly when the kernel lets the hook overwrite it", c.MountAddrBefore, c.VIP, c.BackendA)
				}
			}
			// The partial kernel's SMB client bypasses kernel_connect(): the kprobe never sees its
			// reconnects, only the socket-LB hook does.
			if smb && c.Kernel == "partial-6.1" {
				for _, e := range c.Events {
					if e.Connect != nil && e.Connect.Source == "kprobe:kernel_connect" && e.Phase == "after-fault" {
						t.Errorf("kernel_connect() saw an SMB reconnect on partial-6.1: %+v", e.Connect)
						break
					}
				}
			}
		})
	}
}
