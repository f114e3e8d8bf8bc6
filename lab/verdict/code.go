package verdict

import (
	"fmt"
	"slices"
	"strings"
)

// Code is a verdict's reason in a form a program can match, beside the Decision's Reason for
// people: a kind, optionally followed by ": " and a detail ("mount-refused: EINVAL",
// "setup-error: backend-a-serving").
type Code string

// The kinds of Code, by the verdict they come with.
const (
	// recovered
	CodeRecovered Code = "io-recovered" // a probe succeeded after backend B became ready
	// bug-reproduced
	CodeStuckAskedOld  Code = "io-stuck-asked-old-backend"  // a probe hung and the client asked for the old backend
	CodeErrorsAskedOld Code = "io-errors-asked-old-backend" // probes failed with errors (a soft mount) and the client asked for the old backend
	// failed: the system under test
	CodeStuck        Code = "io-stuck"      // a probe hung; the client was not seen asking for the old backend
	CodeErrors       Code = "io-errors"     // probes failed with errors and I/O never recovered
	CodeMountRefused Code = "mount-refused" // the kernel refused mount(2); the detail is its errno (EINVAL)
	// inconclusive: the lab did not get as far as the question
	CodeFaultNotInjected Code = "fault-not-injected"
	CodeBackendBNotReady Code = "backend-b-not-ready"
	CodeNoProbe          Code = "no-probe-after-backend-b" // no probe finished after backend B became ready
	CodeInstrumentFailed Code = "instrument-failed"        // the verdict would rest on the silence of a failed instrument
	CodeWaiting          Code = "waiting"                  // not final: more evidence may come

	// The lab's own failures (LabFailure): whatever verdict they come with, they never meet
	// an expectation.
	CodeSetupError    Code = "setup-error"    // a step before the fault failed (the detail names it) or gave no baseline I/O
	CodeFailoverError Code = "failover-error" // a step of the lab after the fault failed (the detail names it)
	CodeCutShort      Code = "cut-short"      // the cell ended before its verdict (the VM died, the run was interrupted)
	CodeNotRun        Code = "not-run"        // the cell never ran
)

// codesOf lists the kinds of Code an expectation may require of verdict v. The lab's own
// failures are in none of them.
func codesOf(v Verdict) []Code {
	switch v {
	case Recovered:
		return []Code{CodeRecovered}
	case BugReproduced:
		return []Code{CodeStuckAskedOld, CodeErrorsAskedOld}
	case Failed:
		return []Code{CodeStuck, CodeErrors, CodeMountRefused}
	case Inconclusive:
		return []Code{CodeFaultNotInjected, CodeBackendBNotReady, CodeNoProbe, CodeInstrumentFailed}
	}
	return nil
}

// With returns the code "c: detail" (c a kind), or c alone when detail is empty.
func (c Code) With(detail string) Code {
	if detail == "" {
		return c
	}
	return c + Code(": "+detail)
}

// Kind is the code without its detail.
func (c Code) Kind() Code {
	kind, _, _ := strings.Cut(string(c), ": ")
	return Code(kind)
}

// LabFailure reports whether the code says that the lab itself failed in the cell (a setup or
// failover step, the VM, the run), rather than anything about the system under test.
func (c Code) LabFailure() bool {
	switch c.Kind() {
	case CodeSetupError, CodeFailoverError, CodeCutShort, CodeNotRun:
		return true
	}
	return false
}

// Satisfies reports whether c meets a required code: any code when want is empty, else the
// same code, or the same kind when want names a kind alone ("mount-refused" is met by
// "mount-refused: EINVAL"), or the same kind with one of the details want lists split by "|"
// ("mount-refused: ETIMEDOUT|ENETUNREACH" is met by "mount-refused: ENETUNREACH").
func (c Code) Satisfies(want Code) bool {
	if want == "" || c == want || (want.Kind() == want && c.Kind() == want) {
		return true
	}
	wantKind, alternatives, ok := strings.Cut(string(want), ": ")
	kind, detail, hasDetail := strings.Cut(string(c), ": ")
	return ok && hasDetail && kind == wantKind && slices.Contains(strings.Split(alternatives, "|"), detail)
}

// Expectation is what a scenario expects of a cell: a verdict and, optionally, the reason
// code it must come with.
type Expectation struct {
	Verdict Verdict
	Reason  Code
}

// Met reports whether a cell's verdict and reason code meet x. A lab failure never does,
// whatever the verdict: the lab's own breakage must not pass for an outcome of the system
// under test.
func (x Expectation) Met(v Verdict, c Code) bool {
	return !c.LabFailure() && v == x.Verdict && c.Satisfies(x.Reason)
}

// isErrnoName reports whether s has the form of a symbolic errno: E and capitals or digits.
func isErrnoName(s string) bool {
	rest, ok := strings.CutPrefix(s, "E")
	return ok && rest != "" && strings.Trim(rest, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") == ""
}

// notErrnoName reports whether s is not a symbolic errno.
func notErrnoName(s string) bool { return !isErrnoName(s) }

// ReasonProblem says what is wrong with a reason an expectation requires of verdict v, or ""
// when it is a code that verdict can come with: a kind of codesOf(v), with a detail only for
// mount-refused (an errno name such as EINVAL, or several split by "|": ETIMEDOUT|ENETUNREACH).
func ReasonProblem(v Verdict, reason Code) string {
	kind, detail, hasDetail := strings.Cut(string(reason), ": ")
	k := Code(kind)
	if k.LabFailure() {
		return fmt.Sprintf("%q is the lab's own failure, which no expectation can require: it always fails the cell", reason)
	}
	allowed := codesOf(v)
	if !slices.Contains(allowed, k) {
		var all []string
		for _, c := range allowed {
			all = append(all, string(c))
		}
		return fmt.Sprintf("%q is not a reason of verdict %s (want %s)", reason, v, strings.Join(all, ", "))
	}
	switch {
	case k == CodeMountRefused && hasDetail && slices.ContainsFunc(strings.Split(detail, "|"), notErrnoName):
		return fmt.Sprintf("%q: the detail of mount-refused is an errno name such as EINVAL, or several split by | (ETIMEDOUT|ENETUNREACH)", reason)
	case k != CodeMountRefused && hasDetail:
		return fmt.Sprintf("%q: %s takes no detail", reason, k)
	}
	return ""
}
