// Package verdict decides, from a cell's evidence and nothing else, whether NFS I/O recovered
// after the backend was replaced. It is pure logic: no I/O, no clocks, no kernel or datapath
// names. The evidence model is described in lab/README.md.
//
// Collect reduces a cell's timeline to Evidence; Decide turns Evidence into a Decision. Decide
// applies these rules in order; the first that applies wins ("done" means final, or the
// recovery deadline has passed):
//
//  1. A step before the fault failed → failed (final), "setup: …". When the kernel refused the
//     mount(2) itself (the mounted step failed with an errno) the code is "mount-refused:
//     <errno>", an answer of the system under test; any other setup failure is the lab's own,
//     "setup-error: <step>", which never meets an expectation (Expectation.Met).
//  2. No baseline I/O before the fault → failed (final) once the fault was injected or the cell
//     is done; before that, wait. The code is "setup-error: baseline-io-ok".
//  3. The fault was not injected, or backend B never became ready → inconclusive (final) when
//     done (the lab did not get as far as the question); else wait. When a step of the lab
//     failed meanwhile the code is "failover-error: <step>", a lab failure.
//  4. A probe succeeded after backend B became ready → recovered (final), with the time it took.
//  5. A probe is stuck after backend B became ready and the kernel client itself (SUNRPC for
//     NFS, the CIFS client for SMB) asked for the old backend (see Evidence.AskedOld) →
//     bug-reproduced (final even while the cell runs: the
//     evidence is complete, so the agent may stop early).
//  6. A probe is stuck, the client was not seen asking for the old backend → wait; when done,
//     failed ("I/O stuck, reconnects went to X" or "… no reconnect seen") — or inconclusive
//     when an instrument failed, lost records or cannot see the client's connects, since the
//     verdict would rest on its silence.
//  7. Probes after backend B became ready failed with errors (a soft mount gives up with EIO
//     instead of hanging) and the client asked for the old backend → bug-reproduced (final).
//  8. Probes after backend B became ready only failed with errors otherwise → wait; when done,
//     failed — or inconclusive when an instrument failed, lost records or cannot see the
//     client's connects, as in 6.
//  9. Nothing after backend B became ready → wait; when done, inconclusive.
//
// Every Decision has a Code (code.go) beside its Reason. A waiting Decision is Inconclusive
// with Final false and the code "waiting". The mount's addr= in /proc/mounts is
// never evidence: the kernel formats it once, when the transport is created, so it keeps showing
// the VIP even after SUNRPC's own copy of the address was overwritten.
package verdict

import (
	"time"

	"github.com/nfslab/nfslab/lab/event"
)

// Verdict is the outcome of a cell.
type Verdict string

// The verdicts.
const (
	Recovered     Verdict = "recovered"      // I/O succeeded after the new backend became ready
	BugReproduced Verdict = "bug-reproduced" // I/O stuck AND SUNRPC asked for the old backend's IP
	Failed        Verdict = "failed"         // I/O stuck (or broken) for another reason
	Inconclusive  Verdict = "inconclusive"   // the evidence does not allow a decision
)

// Evidence is what a cell observed, reduced to the facts a verdict rests on.
type Evidence struct {
	// The service as the cluster reported it on the timeline.
	VIP        string // the service address
	OldBackend string // the backend the service pointed at before the fault (dead after it)
	NewBackend string // the backend the service pointed at after the fault

	SetupError     string     // a step before the fault failed (no baseline)
	SetupStep      event.Step // the step SetupError is about
	SetupErrno     string     // the errno the step's system call got (EINVAL), when it failed that way
	FailoverError  string     // a step after the fault failed (e.g. backend B did not start): the lab's fault, not the mount's
	FailoverStep   event.Step // the step FailoverError is about
	BaselineIOOK   bool       // write+fsync+read worked before the fault
	FaultInjected  bool
	BackendBReady  bool
	SinceBReady    time.Duration  // how long after backend B became ready the evidence was taken
	FirstIOOKAfter *time.Duration // time from backend B ready to the end of the first successful probe
	ProbeStuck     bool           // a probe after B ready exceeded its deadline
	ProbeErrors    int            // probes after B ready that failed fast with an error
	DeadlinePassed bool           // the scenario's recovery deadline passed

	// ReconnectTargets are where connects went after the fault, in first-seen order: remote
	// addresses of the kernel's new sockets to the NFS port, and the addresses tracers saw
	// handed to connect() and returned by the socket-LB hook. Reported; not decided on alone.
	ReconnectTargets []string
	// AskedOld describes each kind of evidence that SUNRPC itself asked for the old backend
	// after the fault: the address handed to kernel_connect(), or the socket-LB hook's input on
	// a kernel socket, was the old backend (with who called), or a new kernel socket to it
	// appeared after the datapath was read back pointing the VIP at the new backend. A connect
	// to the old backend that a load balancer made from the VIP while its endpoint was stale is
	// not in this list, nor is a process's own connect.
	AskedOld []string
	// InstrumentFailures lists instruments that failed, lost records or cannot see the client's
	// connects ("name: what").
	InstrumentFailures []string
}

// Decision is a verdict with its reason. Final is false while more evidence could change it.
// Code is the reason in a form a program can match (an expectation may require one); Reason
// says the same for people, with the evidence.
type Decision struct {
	Verdict Verdict
	Reason  string
	Final   bool
	Code    Code
}

// All returns every verdict, in the order of the constants.
func All() []Verdict { return []Verdict{Recovered, BugReproduced, Failed, Inconclusive} }

// Valid reports whether v is one of the verdicts.
func (v Verdict) Valid() bool {
	for _, w := range All() {
		if v == w {
			return true
		}
	}
	return false
}
