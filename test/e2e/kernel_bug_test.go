package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nfslab/nfslab/reports"
)

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
