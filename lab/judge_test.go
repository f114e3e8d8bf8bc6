package lab

import (
	"strings"
	"testing"

	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/lab/verdict"
)

// TestJudgeLabFailure: a cell whose datapath check failed before the fault is the lab's
// failure. Its verdict is inconclusive and it does not pass, whatever the scenario expected —
// even a cell expected to fail (NFSv3 over UDP on Debian's kernel) or to be inconclusive.
func TestJudgeLabFailure(t *testing.T) {
	steps := func(s ...event.Step) []event.Event {
		var evs []event.Event
		for i, st := range s {
			evs = append(evs, event.Event{Mono: event.Mono(i + 1), Cell: 0, Kind: event.KindStep, Step: st})
		}
		return evs
	}
	checkFailed := append(steps(event.StepTopology, event.StepTracer, event.StepDatapath, event.StepBackendServing, event.StepServicePointed, event.StepMounted, event.StepBaselineIO),
		event.Event{Mono: 10, Cell: 0, Kind: event.KindError, Step: event.StepDatapathChecked, Msg: "the datapath in effect is not the cell's kube-proxy alone: a socket-level load balancer is in effect at /sys/fs/cgroup: CGroupInet4Connect nfslab_connect4"},
		event.Event{Mono: 11, Cell: 0, Kind: event.KindStep, Step: event.StepTeardown})
	for _, expected := range []string{"failed", "inconclusive", "recovered"} {
		t.Run("expected "+expected, func(t *testing.T) {
			c := scenario.Cell{ID: "debian-stock/kube-proxy/3-udp/delete-pod", Kernel: "debian-stock", Datapath: "kube-proxy", NFS: "3-udp", Port: 2049, Expected: expected}
			for _, complete := range []bool{true, false} {
				rc := Judge(c, checkFailed, complete)
				if rc.Verdict != string(verdict.Inconclusive) || !strings.HasPrefix(rc.Reason, "lab: datapath-checked: ") || !strings.Contains(rc.Reason, "nfslab_connect4") {
					t.Errorf("complete=%v: verdict %s (%s), want inconclusive, the lab's failure with what was in effect", complete, rc.Verdict, rc.Reason)
				}
				if rc.Pass {
					t.Errorf("complete=%v: the cell passes (expected %s)", complete, expected)
				}
			}
		})
	}
	// Without the failed check, the same setup failure at another step is the mount's side's.
	setupFailed := append(steps(event.StepTopology, event.StepTracer, event.StepDatapath, event.StepBackendServing, event.StepServicePointed),
		event.Event{Mono: 10, Cell: 0, Kind: event.KindError, Step: event.StepMounted, Msg: "mount: protocol not supported"})
	c := scenario.Cell{ID: "debian-stock/kube-proxy/3-udp/delete-pod", Port: 2049, Expected: "failed"}
	if rc := Judge(c, setupFailed, true); rc.Verdict != string(verdict.Failed) || !rc.Pass {
		t.Errorf("a failed mount: verdict %s (%s), pass %v; want failed, as expected", rc.Verdict, rc.Reason, rc.Pass)
	}
}
