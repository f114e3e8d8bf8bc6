package verdict

import (
	"strings"
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab/event"
)

// TestDecideCode: every decision carries the code that says, for a program, why; a setup
// failure is the kernel's refusal of the mount only when mount(2) itself answered with an errno.
func TestDecideCode(t *testing.T) {
	with := func(f func(*Evidence)) Evidence { e := base(); f(&e); return e }
	setup := func(step event.Step, errno string) Evidence {
		return Evidence{SetupError: string(step) + ": x", SetupStep: step, SetupErrno: errno}
	}
	tests := []struct {
		name  string
		e     Evidence
		final bool
		code  Code
	}{
		{"mount refused", setup(event.StepMounted, "EINVAL"), true, "mount-refused: EINVAL"},
		{"mount timed out", setup(event.StepMounted, ""), true, "setup-error: mounted"},
		{"backend A did not start", setup(event.StepBackendServing, ""), true, "setup-error: backend-a-serving"},
		{"an errno in another step", setup(event.StepDatapath, "EPERM"), true, "setup-error: datapath-installed"},
		{"an error without a step", Evidence{SetupError: "x"}, true, "setup-error"},
		{"no baseline", Evidence{}, true, "setup-error: baseline-io-ok"},
		{"fault never injected", Evidence{BaselineIOOK: true}, true, CodeFaultNotInjected},
		{"fault not injected, a lab step failed", Evidence{BaselineIOOK: true, FailoverError: "fault-injected: x", FailoverStep: event.StepFaultInjected}, true, "failover-error: fault-injected"},
		{"B never ready", Evidence{BaselineIOOK: true, FaultInjected: true}, true, CodeBackendBNotReady},
		{"B never ready, a lab step failed", Evidence{BaselineIOOK: true, FaultInjected: true, FailoverError: "backend-b-ready: x", FailoverStep: event.StepBackendBReady}, true, "failover-error: backend-b-ready"},
		{"recovered", with(func(e *Evidence) { e.FirstIOOKAfter = dur(time.Second) }), false, CodeRecovered},
		{"bug, stuck", with(func(e *Evidence) { e.ProbeStuck = true; e.AskedOld = []string{"a"} }), false, CodeStuckAskedOld},
		{"bug, errors", with(func(e *Evidence) { e.ProbeErrors = 1; e.AskedOld = []string{"a"} }), false, CodeErrorsAskedOld},
		{"stuck, instrument failed", with(func(e *Evidence) { e.ProbeStuck = true; e.InstrumentFailures = []string{"a"} }), true, CodeInstrumentFailed},
		{"stuck, no reconnect", with(func(e *Evidence) { e.ProbeStuck = true }), true, CodeStuck},
		{"stuck, reconnects elsewhere", with(func(e *Evidence) { e.ProbeStuck = true; e.ReconnectTargets = []string{"10.0.0.12"} }), true, CodeStuck},
		{"errors", with(func(e *Evidence) { e.ProbeErrors = 1 }), true, CodeErrors},
		{"nothing", base(), true, CodeNoProbe},
		{"waiting", base(), false, CodeWaiting},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := Decide(tt.e, tt.final); d.Code != tt.code {
				t.Errorf("Decide = %+v, want code %q", d, tt.code)
			}
		})
	}
}

// TestCollectSetupErrno: the failed step and its errno reach the evidence from the timeline's
// typed fields, never from the message.
func TestCollectSetupErrno(t *testing.T) {
	tl := timeline{}.step(1, event.StepTopology)
	tl = append(tl, event.Event{Mono: mono(2), Kind: event.KindError, Step: event.StepMounted, Errno: "EINVAL", Msg: "EPROTONOSUPPORT in the text"})
	ev := Collect(2049, tl)
	if ev.SetupStep != event.StepMounted || ev.SetupErrno != "EINVAL" {
		t.Errorf("setup step %q, errno %q", ev.SetupStep, ev.SetupErrno)
	}
	after := setup().failover(10).err(11, event.StepBackendBReady, "ganesha exited")
	if ev := Collect(2049, after); ev.FailoverStep != event.StepBackendBReady || ev.SetupStep != "" {
		t.Errorf("failover step %q, setup step %q", ev.FailoverStep, ev.SetupStep)
	}
}

func TestExpectationMet(t *testing.T) {
	tests := []struct {
		want    Expectation
		verdict Verdict
		code    Code
		met     bool
	}{
		{Expectation{Verdict: Recovered}, Recovered, CodeRecovered, true},
		{Expectation{Verdict: Recovered}, Failed, CodeStuck, false},
		{Expectation{Verdict: Failed}, Failed, "mount-refused: EINVAL", true},
		{Expectation{Verdict: Failed}, Failed, "setup-error: backend-a-serving", false},
		{Expectation{Verdict: Failed}, Failed, "setup-error: baseline-io-ok", false},
		{Expectation{Verdict: Inconclusive}, Inconclusive, CodeNotRun, false},
		{Expectation{Verdict: Inconclusive}, Inconclusive, CodeCutShort, false},
		{Expectation{Verdict: Inconclusive}, Inconclusive, "failover-error: backend-b-ready", false},
		{Expectation{Verdict: Inconclusive}, Inconclusive, CodeBackendBNotReady, true},
		{Expectation{Verdict: Failed, Reason: "mount-refused: EINVAL"}, Failed, "mount-refused: EINVAL", true},
		{Expectation{Verdict: Failed, Reason: "mount-refused: EINVAL"}, Failed, "mount-refused: ETIMEDOUT", false},
		{Expectation{Verdict: Failed, Reason: "mount-refused: EINVAL"}, Failed, CodeStuck, false},
		{Expectation{Verdict: Failed, Reason: "mount-refused"}, Failed, "mount-refused: ETIMEDOUT", true},
		{Expectation{Verdict: Failed, Reason: "mount-refused"}, Failed, "mount-refusedX", false},
		{Expectation{Verdict: Failed, Reason: "mount-refused: ETIMEDOUT|ENETUNREACH"}, Failed, "mount-refused: ENETUNREACH", true},
		{Expectation{Verdict: Failed, Reason: "mount-refused: ETIMEDOUT|ENETUNREACH"}, Failed, "mount-refused: ETIMEDOUT", true},
		{Expectation{Verdict: Failed, Reason: "mount-refused: ETIMEDOUT|ENETUNREACH"}, Failed, "mount-refused: EIO", false},
		{Expectation{Verdict: Failed, Reason: "mount-refused: ETIMEDOUT|ENETUNREACH"}, Failed, "mount-refused", false},
		{Expectation{Verdict: Failed, Reason: "mount-refused: ETIMEDOUT|ENETUNREACH"}, Failed, "mount-refused: ETIMEDOUT|ENETUNREACH|EIO", false},
		{Expectation{Verdict: Failed, Reason: "mount-refused: ETIMEDOUT|ENETUNREACH"}, Failed, "setup-error: ETIMEDOUT", false},
		{Expectation{Verdict: Failed, Reason: CodeStuck}, Failed, CodeStuck, true},
		{Expectation{Verdict: Failed}, Failed, "", true}, // a cell without a code (nothing requires one)
	}
	for _, tt := range tests {
		if got := tt.want.Met(tt.verdict, tt.code); got != tt.met {
			t.Errorf("%+v met by %s %q = %v, want %v", tt.want, tt.verdict, tt.code, got, tt.met)
		}
	}
}

func TestReasonProblem(t *testing.T) {
	tests := []struct {
		verdict Verdict
		reason  Code
		problem string // a piece of it; "" for none
	}{
		{Failed, "mount-refused: EINVAL", ""},
		{Failed, "mount-refused", ""},
		{Failed, "io-stuck", ""},
		{BugReproduced, "io-errors-asked-old-backend", ""},
		{Inconclusive, "instrument-failed", ""},
		{Failed, "setup-error: mounted", "the lab's own failure"},
		{Inconclusive, "not-run", "the lab's own failure"},
		{Recovered, "io-stuck", `"io-stuck" is not a reason of verdict recovered (want io-recovered)`},
		{Failed, "mount-refused: einval", "an errno name such as EINVAL"},
		{Failed, "mount-refused: E", "an errno name"},
		{Failed, "mount-refused: ETIMEDOUT|ENETUNREACH", ""},
		{Failed, "mount-refused: ETIMEDOUT|", "or several split by |"},
		{Failed, "mount-refused: ETIMEDOUT|enetunreach", "or several split by |"},
		{Failed, "io-stuck: long", "io-stuck takes no detail"},
		{Failed, "", "is not a reason of verdict failed"},
	}
	for _, tt := range tests {
		got := ReasonProblem(tt.verdict, tt.reason)
		if (tt.problem == "") != (got == "") || !strings.Contains(got, tt.problem) {
			t.Errorf("ReasonProblem(%s, %q) = %q, want %q", tt.verdict, tt.reason, got, tt.problem)
		}
	}
}

// FuzzReasonProblem: a reason a scenario may require is one its verdict can come with, so that
// some cell can meet it (each of its alternatives, when it lists several), and never a lab failure.
func FuzzReasonProblem(f *testing.F) {
	for _, s := range []string{"mount-refused: EINVAL", "mount-refused", "io-stuck", "setup-error: x", "a: b: c", ": ", "mount-refused: E1", "mount-refused: EIO|EX", "\x00"} {
		f.Add(string(Failed), s)
	}
	f.Fuzz(func(t *testing.T, v, reason string) {
		if ReasonProblem(Verdict(v), Code(reason)) != "" {
			return
		}
		c := Code(reason)
		want := Expectation{Verdict: Verdict(v), Reason: c}
		if c.LabFailure() || !Verdict(v).Valid() || !want.Met(Verdict(v), c) {
			t.Fatalf("accepted %s %q, which no cell can meet", v, reason)
		}
		if kind, details, ok := strings.Cut(reason, ": "); ok {
			for _, d := range strings.Split(details, "|") {
				if !want.Met(Verdict(v), Code(kind+": "+d)) {
					t.Fatalf("accepted %s %q, which a cell's %q does not meet", v, reason, kind+": "+d)
				}
			}
		}
	})
}
