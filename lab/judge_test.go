package lab

import (
	"strings"
	"testing"

	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/lab/verdict"
	"github.com/nfslab/nfslab/scenarios"
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
				if rc.Pass || rc.ReasonCode != "setup-error: datapath-checked" {
					t.Errorf("complete=%v: the cell passes (expected %s), code %q", complete, expected, rc.ReasonCode)
				}
			}
		})
	}
	// Without the failed check, the same setup failure at another step is the mount's side's.
	setupFailed := append(steps(event.StepTopology, event.StepTracer, event.StepDatapath, event.StepBackendServing, event.StepServicePointed),
		event.Event{Mono: 10, Cell: 0, Kind: event.KindError, Step: event.StepMounted, Errno: "EPROTONOSUPPORT", Msg: "mount: protocol not supported"})
	c := scenario.Cell{ID: "debian-stock/kube-proxy/3-udp/delete-pod", Port: 2049, Expected: "failed"}
	if rc := Judge(c, setupFailed, true); rc.Verdict != string(verdict.Failed) || !rc.Pass || rc.ReasonCode != "mount-refused: EPROTONOSUPPORT" {
		t.Errorf("a failed mount: verdict %s (%s, %s), pass %v; want failed, as expected", rc.Verdict, rc.Reason, rc.ReasonCode, rc.Pass)
	}
}

// TestJudgeExpectedFailure: a cell that expects failed (NFSv3 over UDP on Debian's kernel, which
// has no UDP transport) passes only when the kernel refused the mount as the scenario says; the
// lab's own breakage before the question (a ganesha that did not start, a mount that timed out)
// is a lab failure and never meets the expectation.
func TestJudgeExpectedFailure(t *testing.T) {
	s, err := scenario.Load("nfs-versions", scenarios.FS)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SelectCell("debian-stock/kube-proxy/3-udp/delete-pod"); err != nil {
		t.Fatal(err)
	}
	c := s.Cells()[0]
	failedAt := func(step event.Step, errno, msg string) []event.Event {
		return []event.Event{
			{Mono: 1e9, Kind: event.KindStep, Step: event.StepTopology},
			{Mono: 2e9, Kind: event.KindError, Step: step, Errno: errno, Msg: msg},
		}
	}
	tests := []struct {
		name   string
		events []event.Event
		code   string
		pass   bool
	}{
		{"the kernel refused the mount", failedAt(event.StepMounted, "EINVAL", "mount …: invalid argument"), "mount-refused: EINVAL", true},
		{"ganesha did not start", failedAt(event.StepBackendServing, "", "ganesha exited"), "setup-error: backend-a-serving", false},
		{"the mount timed out", failedAt(event.StepMounted, "", "mount …: abandoned: context deadline exceeded"), "setup-error: mounted", false},
		{"the mount was refused otherwise", failedAt(event.StepMounted, "ETIMEDOUT", "mount …: connection timed out"), "mount-refused: ETIMEDOUT", false},
		{"the datapath did not install", failedAt(event.StepDatapath, "EPERM", "install kube-proxy: operation not permitted"), "setup-error: datapath-installed", false},
		{"cut short", failedAt(event.StepMounted, "EINVAL", "x")[:1], "cut-short", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := Judge(c, tt.events, tt.code != "cut-short")
			if rc.ReasonCode != tt.code || rc.Pass != tt.pass {
				t.Errorf("verdict %s, code %q, pass %v; want code %q, pass %v", rc.Verdict, rc.ReasonCode, rc.Pass, tt.code, tt.pass)
			}
			if rc.Expected != "failed" || rc.ExpectedReason != "mount-refused: EINVAL" {
				t.Errorf("expects %s %q, want the scenario's failed, mount-refused: EINVAL", rc.Expected, rc.ExpectedReason)
			}
		})
	}
}

// TestNewResult: a run of one cell (nfslab run --cell) records the whole scenario's cells and
// its hash, so that a merge knows which cells are missing.
func TestNewResult(t *testing.T) {
	s, err := scenario.Load("nfs-versions", scenarios.FS)
	if err != nil {
		t.Fatal(err)
	}
	whole := NewResult(s)
	if err := s.SelectCell("debian-stock/kube-proxy/3-udp/delete-pod"); err != nil {
		t.Fatal(err)
	}
	one := NewResult(s)
	if len(whole.Cells) != 20 || len(one.Cells) != 1 || len(one.ScenarioCells) != 20 || one.ScenarioHash != whole.ScenarioHash || one.ScenarioHash == "" {
		t.Fatalf("whole: %d cells, %d scenario cells, hash %s; one: %d cells, %d scenario cells, hash %s",
			len(whole.Cells), len(whole.ScenarioCells), whole.ScenarioHash, len(one.Cells), len(one.ScenarioCells), one.ScenarioHash)
	}
	if c := one.Cells[0]; c.ReasonCode != "not-run" || c.Pass {
		t.Errorf("a pending cell: code %q, pass %v", c.ReasonCode, c.Pass)
	}
	for _, sc := range one.ScenarioCells {
		if sc.ID == one.Cells[0].ID && (sc.Expected != "failed" || sc.ExpectedReason != "mount-refused: EINVAL") {
			t.Errorf("scenario cell %+v", sc)
		}
	}
}
