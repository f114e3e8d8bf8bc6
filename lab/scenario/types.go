// Package scenario reads scenario files: it parses them strictly, validates them with errors that
// name the file and the field, and expands their matrix into cells.
package scenario

import "time"

// Scenario is one scenario file. Field names are the YAML keys.
type Scenario struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Matrix      Matrix   `json:"matrix"`
	Expect      Expect   `json:"expect"`
	Mount       Mount    `json:"mount,omitempty"`
	Service     Service  `json:"service,omitempty"`
	Topology    Topology `json:"topology,omitempty"`
	Timeouts    Timeouts `json:"timeouts,omitempty"`
	Failover    Failover `json:"failover,omitempty"`
	Kind        Kind     `json:"kind,omitempty"`
	Cilium      Cilium   `json:"cilium,omitzero"`

	// cell, when set, is the ID of the only cell Cells returns (SelectCell, nfslab run --cell).
	cell string
}

// Failover shapes how the backend is replaced.
type Failover struct {
	// NoEndpointWindow is how long the service has no endpoint between pod A's death and pod
	// B's start (default 0: B starts at once). An I/O probe is in flight during the window, so
	// the kernel keeps reconnecting; the cell records the attempt rate and kernel log rate.
	NoEndpointWindow Duration `json:"noEndpointWindow,omitempty"`
	// StaleEndpoint is how long the service keeps pointing at the dead backend after the fault
	// (default 0), as when the node has not seen the EndpointSlice update yet: a load balancer
	// then rewrites the VIP to the dead backend, legitimately. An I/O probe is in flight.
	StaleEndpoint Duration `json:"staleEndpoint,omitempty"`
	// SocketLBNoBackend is what socket-LB does with a connect to a VIP that has no endpoint:
	// "refuse" (EPERM from the hook, as Cilium does; default) or "pass" (let it through).
	SocketLBNoBackend string `json:"socketLBNoBackend,omitempty"`
}

// Kind shapes the kind form's cluster.
type Kind struct {
	// Nodes is the cluster's node count: 1 (default), or 2 — the NFS server then runs on the
	// worker and the mount is made from the control-plane node, so that the server's node can
	// be restarted (the restart-node fault) while the client's survives.
	Nodes int `json:"nodes,omitempty"`
}

// Cilium shapes the Cilium datapaths' cells (cilium.Datapaths).
type Cilium struct {
	// Versions are the Cilium releases the cells install, an axis of the matrix for the Cilium
	// datapaths: each a release nfslab can build (cilium.Versions); default the newest
	// (CiliumVersions).
	Versions []string `json:"versions,omitempty"`
}

// Matrix holds the axes; every combination that its cluster form has is one cell.
type Matrix struct {
	Kernels []string `json:"kernels"` // "debian-stock", a recipe name, or a path to a bzImage
	// Clusters are the forms of cluster the cells run on: "netns" (default) and/or "kind". A
	// combination a form does not have is not a cell (see form.go).
	Clusters []string `json:"clusters,omitempty"`
	// Datapaths: "kube-proxy" and "socket-lb" (both forms), "kube-proxy-ipvs" and
	// "kube-proxy-nftables" (kind only).
	Datapaths []string `json:"datapaths"`
	// Protocols are the file protocols mounted: "nfs" (default) and/or "smb" (netns only). NFS
	// cells take each version of NFS; an SMB cell has the one version "smb3".
	Protocols []string `json:"protocols,omitempty"`
	// NFS: "4.1" (default for NFS), "4.0", "4.2" (both forms), "3", "3-udp" (netns only).
	NFS []string `json:"nfs"`
	// Faults: "delete-pod" (both forms), "delete-pod-abrupt" and "node-crash" (netns only),
	// "force-delete", "kill-container" and "restart-node" (kind only; restart-node needs
	// kind.nodes: 2).
	Faults []string `json:"faults"`
}

// Expect gives the verdict each cell should get: the first matching rule, else Default.
type Expect struct {
	Default string `json:"default"`
	Rules   []Rule `json:"rules,omitempty"`
}

// Rule maps the cells it matches to a verdict. An empty field matches anything.
type Rule struct {
	Match   Match  `json:"match"`
	Verdict string `json:"verdict"`
	// Reason, when set, is the reason code the verdict must come with (a verdict.Code, such as
	// "mount-refused: EINVAL", a kind alone, "mount-refused", or errnos split by "|",
	// "mount-refused: ETIMEDOUT|ENETUNREACH"): a cell that gets the verdict for another reason
	// does not pass.
	Reason string `json:"reason,omitempty"`
}

// Match selects cells by their axis values.
type Match struct {
	Kernel   string `json:"kernel,omitempty"`
	Cluster  string `json:"cluster,omitempty"`
	Datapath string `json:"datapath,omitempty"`
	Protocol string `json:"protocol,omitempty"`
	NFS      string `json:"nfs,omitempty"` // the version: "4.1", … or "smb3"
	Fault    string `json:"fault,omitempty"`
	Cilium   string `json:"cilium,omitempty"` // the Cilium version of a Cilium datapath's cell
}

// Mount says how the node mounts the service.
type Mount struct {
	Options []string `json:"options,omitempty"` // NFS cells: e.g. hard, timeo=10, retrans=2 (vers= comes from the matrix)
	// SMBOptions are the SMB cells' extra mount options, e.g. hard (the address, port, dialect
	// and credentials are the lab's).
	SMBOptions []string `json:"smbOptions,omitempty"`
}

// Service is the ClusterIP that fronts the NFS backend.
type Service struct {
	VIP  string `json:"vip,omitempty"`  // default 10.96.0.50
	Port int    `json:"port,omitempty"` // default 2049
}

// Topology is the node and pod addressing inside the VM.
type Topology struct {
	NodeCIDR string `json:"nodeCIDR,omitempty"` // the node's bridge address, default 10.0.0.1/24
	BackendA string `json:"backendA,omitempty"` // first pod IP, default 10.0.0.11
	BackendB string `json:"backendB,omitempty"` // replacement pod IP, default 10.0.0.12
}

// Timeouts bound every wait of a cell.
type Timeouts struct {
	Recovery Duration `json:"recovery,omitempty"` // after backend B is ready, how long I/O may take to recover (default 60s)
	Probe    Duration `json:"probe,omitempty"`    // one I/O probe's deadline (default 5s)
	// Setup bounds each setup step: backend start, mount, baseline I/O. Its default depends on
	// the cell's cluster (DefaultSetup, DefaultKindSetup), so a parsed Scenario keeps it zero
	// when the file leaves it out, and each Cell has the value that applies to it.
	Setup Duration `json:"setup,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("60s", "1m30s").
type Duration struct{ time.Duration }

// Cell is one combination of the matrix with everything the agent needs to run it.
type Cell struct {
	Index   int    `json:"index"`
	ID      string `json:"id"` // kernel/datapath/nfs/fault (kind cells: kernel/kind/datapath/nfs/fault), stable across runs
	Kernel  string `json:"kernel"`
	Cluster string `json:"cluster"` // "netns" or "kind"
	// Nodes is a kind cell's cluster's node count (Kind.Nodes); 0 for a netns cell.
	Nodes    int    `json:"nodes,omitempty"`
	Datapath string `json:"datapath"`
	Protocol string `json:"protocol"` // "nfs" or "smb"
	NFS      string `json:"nfs"`      // the protocol's version: "4.1", …, or "smb3"
	Fault    string `json:"fault"`
	Expected string `json:"expected"`
	// ExpectedReason is the reason code the expected verdict must come with; "" for any.
	ExpectedReason string `json:"expected_reason,omitempty"`

	MountOptions []string `json:"mount_options"` // for the cell's protocol
	VIP          string   `json:"vip"`
	Port         int      `json:"port"`
	NodeCIDR     string   `json:"node_cidr"`
	BackendA     string   `json:"backend_a"`
	BackendB     string   `json:"backend_b"`
	Timeouts     Timeouts `json:"timeouts"`

	NoEndpointWindow  Duration `json:"no_endpoint_window"`
	StaleEndpoint     Duration `json:"stale_endpoint"`
	SocketLBNoBackend string   `json:"socket_lb_no_backend"`
	// Cilium is the Cilium release a Cilium datapath's cell installs (cilium.versions); "" for
	// any other datapath.
	Cilium string `json:"cilium,omitempty"`
}
