// Package reports holds the result model of a run and its writers: result.json (a stable,
// documented format a CI job can read) and a Markdown summary.
package reports

import (
	"time"

	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/verdict"
)

// Schema identifies the result.json format. Bump it on any incompatible change. v2 added the
// scenario's identity (scenario_hash, scenario_cells), the reason codes, and changed what pass
// means (a cell's reason code must meet its expectation, and a lab failure never passes).
const Schema = "nfslab.result/v2"

// Result is one run of a scenario.
type Result struct {
	Schema     string    `json:"schema"`
	RunID      string    `json:"run_id"`
	Scenario   string    `json:"scenario"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Host       Host      `json:"host"`
	Cells      []Cell    `json:"cells"`
	Pass       bool      `json:"pass"` // every cell got its expected verdict (and, for a merge, no cell is missing)
	// ScenarioHash identifies the scenario's contents (scenario.Scenario.Hash); ScenarioCells
	// are every cell of its matrix, with what it expects, whichever of them this result holds.
	// Merge checks results against them.
	ScenarioHash  string         `json:"scenario_hash"`
	ScenarioCells []ScenarioCell `json:"scenario_cells"`
	// MissingCells are the IDs of the scenario's cells that no merged result held (a merge
	// only); Partial says the merge was told to accept that (--allow-partial), so that they
	// do not fail it.
	MissingCells []string `json:"missing_cells"`
	Partial      bool     `json:"partial"`
	// Timings are the run's own phases in seconds: "image" (root filesystem ready), "kernel:<name>"
	// (kernel and modules ready), "vm_boot:<name>" (qemu start to the agent's hello, the last boot of that kernel),
	// "total".
	Timings map[string]float64 `json:"timings"`
}

// ScenarioCell is one cell of the scenario's matrix and what the scenario expects of it.
type ScenarioCell struct {
	ID             string `json:"id"`
	Expected       string `json:"expected"`
	ExpectedReason string `json:"expected_reason,omitempty"`
}

// Host describes where the run happened.
type Host struct {
	Accel  string `json:"accel"`  // "kvm" or "tcg"
	QEMU   string `json:"qemu"`   // qemu version line
	Kernel string `json:"kernel"` // the host's uname -r (not the kernel under test)
}

// Window is the no-endpoint window of a cell (cilium/cilium#33395).
type Window struct {
	Seconds             float64 `json:"seconds"`
	ConnectAttempts     uint64  `json:"connect_attempts"`
	AttemptsPerSecond   float64 `json:"attempts_per_second"`
	Refused             uint64  `json:"refused"`
	KernelLogLines      int     `json:"kernel_log_lines"`
	KernelLogPerSecond  float64 `json:"kernel_log_per_second"`
	SocketLBWithoutEnds string  `json:"socket_lb_no_backend"` // "refuse" or "pass"
}

// Cell is one combination of the matrix and what happened to it.
type Cell struct {
	ID               string   `json:"id"`
	Kernel           string   `json:"kernel"`            // the scenario's name for it (debian-stock, a recipe, a path)
	KernelRelease    string   `json:"kernel_release"`    // uname -r inside the VM
	KernelBuild      string   `json:"kernel_build"`      // exactly what was booted: Debian package + version, recipe + cache key, or image sha256
	Cluster          string   `json:"cluster,omitempty"` // netns or kind
	Datapath         string   `json:"datapath"`
	Cilium           string   `json:"cilium,omitempty"`   // a real Cilium datapath's Cilium version
	Protocol         string   `json:"protocol,omitempty"` // nfs or smb
	NFS              string   `json:"nfs"`                // the protocol's version: 4.1, …, or smb3
	Fault            string   `json:"fault"`
	Verdict          string   `json:"verdict"`
	Expected         string   `json:"expected"`
	ExpectedReason   string   `json:"expected_reason,omitempty"` // the reason code the expected verdict must come with
	Pass             bool     `json:"pass"`                      // see Passes
	Reason           string   `json:"reason"`
	ReasonCode       string   `json:"reason_code"` // the reason as a verdict.Code: io-recovered, mount-refused: EINVAL, setup-error: mounted, …
	VIP              string   `json:"vip"`
	BackendA         string   `json:"backend_a"`
	BackendB         string   `json:"backend_b"`
	MountAddrBefore  string   `json:"mount_addr_before"`
	MountAddrAfter   string   `json:"mount_addr_after"`
	RecoverySeconds  *float64 `json:"recovery_seconds"`      // null unless I/O recovered
	ProbeTimeout     float64  `json:"probe_timeout_seconds"` // a probe running this long after backend B was ready is stuck
	ReconnectTargets []string `json:"reconnect_targets"`
	// AskedOld is the evidence that SUNRPC itself asked for the old backend after the fault
	// (the bug's signature); InstrumentFailures names instruments that failed or lost records.
	AskedOld           []string           `json:"asked_old_backend,omitempty"`
	InstrumentFailures []string           `json:"instrument_failures,omitempty"`
	KernelLog          []string           `json:"kernel_log"`
	Phases             map[string]float64 `json:"phases"` // seconds spent per step, keyed by step name
	Error              string             `json:"error,omitempty"`
	// NoEndpointWindow is set when the scenario kept the service without endpoints between
	// the two backends: how hard the kernel tried to reconnect meanwhile.
	NoEndpointWindow *Window `json:"no_endpoint_window,omitempty"`
	// Start says how the cell's VM came up: booted, or restored from a snapshot.
	Start  *Start        `json:"start,omitempty"`
	Events []event.Event `json:"events"`
}

// Start is how a cell's VM came up.
type Start struct {
	// Mode is "cold" (booted from its kernel) or "restored" (from a snapshot of a booted VM).
	Mode    string  `json:"mode"`
	Seconds float64 `json:"seconds"` // from starting qemu to the agent's hello, or to the restored VM running
	// Snapshot names the snapshot restored from (point/key), or for a cold boot the one it took
	// for later VMs; SnapshotTaken is when it was taken.
	Snapshot      string     `json:"snapshot,omitempty"`
	SnapshotTaken *time.Time `json:"snapshot_taken,omitempty"`
	// ClockSkewSeconds is the guest's wall clock minus the host's when the job arrived (a
	// restored guest wakes with the clock of the snapshot's moment), and Reseeded says the agent reseeded the guest's random number generator with the host's bytes.
	// ClockSet says the agent then set it to the host's (the netns form; a kind cluster keeps
	// its own time, which ran on without a jump).
	ClockSkewSeconds float64 `json:"clock_skew_seconds"`
	ClockSet         bool    `json:"clock_set"`
	Reseeded         bool    `json:"reseeded"`
}

// Start modes.
const (
	StartCold     = "cold"
	StartRestored = "restored"
)

// Passes reports whether a cell met its expectation: its verdict is the expected one, its
// reason code the expected reason (when one is required), and it is no lab failure. It is
// what a cell's pass is, computed, never read.
func Passes(c Cell) bool {
	want := verdict.Expectation{Verdict: verdict.Verdict(c.Expected), Reason: verdict.Code(c.ExpectedReason)}
	return want.Met(verdict.Verdict(c.Verdict), verdict.Code(c.ReasonCode))
}

// LabFailed reports whether the lab itself failed in the cell (its reason code is a lab
// failure: setup-error, failover-error, cut-short, not-run): no verdict about the system under
// test, and exit code 3.
func LabFailed(c Cell) bool { return verdict.Code(c.ReasonCode).LabFailure() }
