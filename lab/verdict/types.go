// Package verdict decides, from a cell's evidence and nothing else, whether NFS I/O recovered
// after the backend was replaced. It is pure logic: no I/O, no clocks.
package verdict

import "time"

// Verdict is the outcome of a cell.
type Verdict string

// The verdicts (DESIGN.md §2).
const (
	Recovered     Verdict = "recovered"      // I/O succeeded after the new backend became ready
	BugReproduced Verdict = "bug-reproduced" // I/O stuck AND reconnects aimed at the old backend IP
	Failed        Verdict = "failed"         // I/O stuck (or broken) for another reason
	Inconclusive  Verdict = "inconclusive"   // the evidence does not allow a decision
)

// Evidence is what a cell observed, reduced to the facts a verdict rests on.
type Evidence struct {
	VIP        string // the service address
	OldBackend string // backend A's IP (dead after the fault)
	NewBackend string // backend B's IP

	SetupError     string // a step before the fault failed (no baseline)
	BaselineIOOK   bool   // write+fsync+read worked before the fault
	FaultInjected  bool
	BackendBReady  bool
	SinceBReady    time.Duration // how long after backend B became ready the evidence was taken
	FirstIOOKAfter *time.Duration // time from backend B ready to the end of the first successful probe
	ProbeStuck     bool           // a probe after B ready exceeded its deadline
	ProbeErrors    int            // probes after B ready that failed fast with an error
	DeadlinePassed bool           // the scenario's recovery deadline passed

	// Where reconnects went after the fault: remote addresses of the kernel's sockets to the NFS
	// port, and addresses a tracer or the socket-LB hook saw handed to connect().
	ReconnectTargets []string
}

// Decision is a verdict with its reason. Final is false while more evidence could change it.
type Decision struct {
	Verdict Verdict
	Reason  string
	Final   bool
}
