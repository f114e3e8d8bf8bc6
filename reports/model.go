// Package reports holds the result model of a run and its writers: result.json (a stable,
// documented format a CI job can read) and a Markdown summary.
package reports

import (
	"time"

	"github.com/nfslab/nfslab/lab/event"
)

// Schema identifies the result.json format. Bump it on any incompatible change.
const Schema = "nfslab.result/v1"

// Result is one run of a scenario.
type Result struct {
	Schema     string    `json:"schema"`
	RunID      string    `json:"run_id"`
	Scenario   string    `json:"scenario"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at"`
	Host       Host      `json:"host"`
	Cells      []Cell    `json:"cells"`
	Pass       bool      `json:"pass"` // every cell got its expected verdict
	// Timings are the run's own phases in seconds: "image" (root filesystem ready), "kernel:<name>"
	// (kernel and modules ready), "vm_boot:<name>" (qemu start to the agent's hello, the last boot of that kernel),
	// "total".
	Timings map[string]float64 `json:"timings"`
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
	Protocol         string   `json:"protocol,omitempty"` // nfs or smb
	NFS              string   `json:"nfs"`                // the protocol's version: 4.1, …, or smb3
	Fault            string   `json:"fault"`
	Verdict          string   `json:"verdict"`
	Expected         string   `json:"expected"`
	Pass             bool     `json:"pass"`
	Reason           string   `json:"reason"`
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
	NoEndpointWindow *Window       `json:"no_endpoint_window,omitempty"`
	Events           []event.Event `json:"events"`
}
