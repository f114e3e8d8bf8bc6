package verdict

import (
	"fmt"
	"strings"
	"time"

	"github.com/nfslab/nfslab/lab/event"
)

// Decide applies the rules of the package documentation to a cell's evidence. final says that
// no more evidence will come (the cell has ended); a non-final Decision may still be Final
// when the evidence is already complete (recovered, bug-reproduced, a setup failure).
func Decide(e Evidence, final bool) Decision {
	done := final || e.DeadlinePassed
	wait := func(why string) Decision { return Decision{Verdict: Inconclusive, Reason: why, Code: CodeWaiting} }

	switch {
	case e.SetupError != "":
		return Decision{Failed, "setup: " + e.SetupError, true, setupCode(e)}

	case !e.BaselineIOOK:
		if done || e.FaultInjected {
			return Decision{Failed, "no baseline: I/O through the mount never worked before the fault", true, CodeSetupError.With("baseline-io-ok")}
		}
		return wait("waiting for baseline I/O")

	case !e.FaultInjected:
		if done {
			return Decision{Inconclusive, "the fault was never injected" + because(e.FailoverError), true, failoverCode(e, CodeFaultNotInjected)}
		}
		return wait("waiting for the fault")

	case !e.BackendBReady:
		if done {
			return Decision{Inconclusive, "backend B never became ready" + because(e.FailoverError), true, failoverCode(e, CodeBackendBNotReady)}
		}
		return wait("waiting for backend B")

	case e.FirstIOOKAfter != nil:
		return Decision{Recovered, fmt.Sprintf("I/O recovered %s after backend B became ready", secs(*e.FirstIOOKAfter)), true, CodeRecovered}

	case e.ProbeStuck && len(e.AskedOld) > 0 && e.OldBackend != "":
		return Decision{BugReproduced, fmt.Sprintf("I/O stuck %s after backend B became ready; the kernel client asked for the old backend %s: %s",
			secs(e.SinceBReady), e.OldBackend, strings.Join(e.AskedOld, "; ")), true, CodeStuckAskedOld}

	case e.ProbeStuck:
		if !done {
			return wait("I/O stuck; waiting to see where reconnects go")
		}
		stuck := fmt.Sprintf("I/O stuck %s after backend B became ready", secs(e.SinceBReady))
		if len(e.InstrumentFailures) > 0 {
			return Decision{Inconclusive, fmt.Sprintf("%s; the kernel client was not seen asking for the old backend, but an instrument failed (%s)",
				stuck, strings.Join(e.InstrumentFailures, "; ")), true, CodeInstrumentFailed}
		}
		if len(e.ReconnectTargets) == 0 {
			return Decision{Failed, stuck + "; no reconnect seen", true, CodeStuck}
		}
		return Decision{Failed, fmt.Sprintf("%s; reconnects went to %s, none of them the kernel client asking for the old backend",
			stuck, strings.Join(e.ReconnectTargets, ", ")), true, CodeStuck}

	case e.ProbeErrors > 0 && len(e.AskedOld) > 0 && e.OldBackend != "":
		// A soft mount: the bug shows as I/O errors rather than a hang.
		return Decision{BugReproduced, fmt.Sprintf("I/O failed with an error %d times after backend B became ready; the kernel client asked for the old backend %s: %s",
			e.ProbeErrors, e.OldBackend, strings.Join(e.AskedOld, "; ")), true, CodeErrorsAskedOld}

	case e.ProbeErrors > 0:
		if !done {
			return wait("I/O failing; waiting for recovery")
		}
		failing := fmt.Sprintf("I/O failed with an error %d times and never recovered (%s after backend B became ready)",
			e.ProbeErrors, secs(e.SinceBReady))
		if len(e.InstrumentFailures) > 0 {
			return Decision{Inconclusive, fmt.Sprintf("%s; the kernel client was not seen asking for the old backend, but an instrument failed (%s)",
				failing, strings.Join(e.InstrumentFailures, "; ")), true, CodeInstrumentFailed}
		}
		return Decision{Failed, failing, true, CodeErrors}
	}
	if !done {
		return wait("waiting for I/O after backend B became ready")
	}
	return Decision{Inconclusive, "no I/O probe finished after backend B became ready", true, CodeNoProbe}
}

// setupCode is the code of a failed setup step: the kernel's refusal of the mount, or the
// lab's own failure.
func setupCode(e Evidence) Code {
	if e.SetupStep == event.StepMounted && e.SetupErrno != "" {
		return CodeMountRefused.With(e.SetupErrno)
	}
	return CodeSetupError.With(string(e.SetupStep))
}

// failoverCode is the code of a cell that did not get as far as the question: a lab failure
// when a step of the lab failed meanwhile, else kind.
func failoverCode(e Evidence, kind Code) Code {
	if e.FailoverError != "" {
		return CodeFailoverError.With(string(e.FailoverStep))
	}
	return kind
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

func because(err string) string {
	if err == "" {
		return ""
	}
	return ": " + err
}
