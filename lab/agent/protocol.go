// Package agent is the side of nfslab that runs where the kernel under test is: inside the VM, as
// PID 1. It receives a Job from the host over a virtio-serial port, runs the cells one after the
// other (topology, datapath, nfs-ganesha backends, the kernel NFS mount, the fault, the probes)
// and streams every step and observation back as event JSON lines.
package agent

import (
	"github.com/nfslab/nfslab/lab/cluster/kind"
	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/scenario"
)

// Job is what the host sends the agent, as one JSON line, once the agent said it is ready.
type Job struct {
	// ClockNS is the host's wall clock (Unix nanoseconds) when it sent the job, and Entropy
	// random bytes of the host's: the agent sets the guest's clock and reseeds its random number
	// generator with them before anything else (sync.go), so that a VM restored from a saved
	// state runs on the host's time and draws numbers of its own.
	ClockNS int64  `json:"clock_ns,omitempty"`
	Entropy []byte `json:"entropy,omitempty"`
	// SetClock makes the agent set the guest's wall clock to ClockNS; without it the skew is
	// only measured. The kind form's machine keeps its own clock: a restored cluster's
	// components (leases, token lifetimes) run on without a jump.
	SetClock bool `json:"set_clock,omitempty"`
	// Prepare, with Engine and Kind, brings the kind form's machine to the point a snapshot is
	// taken at (snapshot.ClusterReady): the engine up and a kind cluster created as it says.
	// The agent then says it is ready and reads a second job, whose Cells (and clock and
	// entropy) it runs on that cluster.
	Prepare *Prepare `json:"prepare,omitempty"`

	Cells []scenario.Cell `json:"cells"`
	// CellReady makes the agent stop each cell at the point a snapshot is taken at
	// (snapshot.CellReady: set up, mounted, right before its fault), say so (event.KindReady
	// of the cell) and read a job that says how to go on: its clock and entropy, the cells to
	// run after this one (Cells, replacing the rest of this job's), whether to stop at theirs
	// too (CellReady) and whether to send the cell's events again first (Replay: a VM restored
	// at that point talks to a host that has not seen them).
	CellReady bool `json:"cell_ready,omitempty"`
	Replay    bool `json:"replay,omitempty"`
	// Demo, when set, makes the job nfslab demo's: its one cell waits for the presenter, who
	// has a shell on the node meanwhile (demo.go).
	Demo *Demo `json:"demo,omitempty"`
	// Engine, when set, makes the agent start a Docker engine on the given disk before the
	// cells (the kind form's machine) and stop it after them.
	Engine *kind.EngineConfig `json:"engine,omitempty"`
	// Kind, with Engine, is what the kind form's cells create their clusters with (the node
	// and nfs-ganesha images, the creation's deadline; the kube-proxy mode is each cell's).
	Kind *kind.ClusterConfig `json:"kind,omitempty"`
	// Cilium, with Kind, are the Cilium installs (the chart rendered on the host) that the
	// cells' Cilium datapaths create their clusters with, one per datapath and version.
	Cilium []cilium.Install `json:"cilium,omitempty"`
	// Keep, with Kind, keeps the kind cluster and the cells' workloads after the cells, and the
	// VM up until the host says stop (nfslab run --keep); the VM's network is then up, for the
	// host's forward to the API server.
	Keep bool `json:"keep,omitempty"`
}

// Prepare is the kind cluster a kind form's machine creates before its cells.
type Prepare struct {
	ProxyMode string `json:"proxy_mode"`
	Nodes     int    `json:"nodes"`
	// Cilium names the install of Job.Cilium the cluster gets (cilium.Install.Key), for a
	// Cilium datapath's cells.
	Cilium string `json:"cilium,omitempty"`
}
