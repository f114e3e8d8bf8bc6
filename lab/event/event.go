// Package event is the timeline: the JSON-line records the in-VM agent streams to the host.
//
// Every record carries the agent's CLOCK_MONOTONIC time, so that durations computed on the host
// (recovery time, verdict latency) do not depend on wall clocks or on transport delays. The host
// never parses free text: anything a decision rests on is a typed field of an Event.
package event

import (
	"encoding/json"
	"fmt"
	"time"
)

// PortName is the name of the virtio-serial port the host and the agent talk over.
const PortName = "nfslab.agent"

// Kind says what sort of record an Event is.
type Kind string

// The kinds of Event.
const (
	KindHello    Kind = "hello"     // agent is up; Hello is set
	KindStep     Kind = "step"      // a step of a cell finished (Step is set)
	KindObserve  Kind = "observe"   // a piece of evidence (one of the evidence fields is set)
	KindError    Kind = "error"     // a step failed; Msg says what and why
	KindCellDone Kind = "cell-done" // the agent finished with a cell (Verdict is set)
	KindBye      Kind = "bye"       // the agent is done with the job and will power the VM off
	KindProgress Kind = "progress"  // a line for people about a long VM-level step (Msg), e.g. kind's
	// KindKept: the cells are done and the agent keeps the kind cluster up (Kept is set) until
	// the host says stop.
	KindKept Kind = "kept"
	// KindReady: the agent is ready for its job and waits for it, doing nothing else: the host
	// may save the VM's state here (a "booted" snapshot) and start later VMs from it. With a
	// cell (Cell >= 0) it is that cell's snapshot point, set up and mounted, right before its
	// fault; it is not part of the cell's timeline.
	KindReady Kind = "ready"
)

// Step names the milestones of a cell, in the order they normally happen.
type Step string

// The steps of a cell.
const (
	StepTopology        Step = "topology-ready"     // bridge, service dummy device and pod netns exist
	StepTracer          Step = "tracer"             // the connect tracers are attached (or why not)
	StepDatapath        Step = "datapath-installed" // kube-proxy rules or socket-LB programs in place
	StepBackendServing  Step = "backend-a-serving"  // first backend listens on 2049
	StepServicePointed  Step = "service-pointed"    // the service maps to backend A
	StepMounted         Step = "mounted"            // the VIP is mounted
	StepBaselineIO      Step = "baseline-io-ok"     // write+fsync+read through the mount worked
	StepDatapathChecked Step = "datapath-checked"   // the datapath in effect on the node is the cell's, alone (an error here is the lab's, not the mount's)
	StepFaultInjected   Step = "fault-injected"     // backend A is gone
	StepStaleEndpoint   Step = "stale-endpoint"     // the service kept pointing at the dead backend for the scenario's time
	StepNoEndpoints     Step = "no-endpoint-window" // the service had no endpoint for the scenario's window
	StepBackendBReady   Step = "backend-b-ready"    // backend B listens and the service points at it
	StepIORecovered     Step = "io-recovered"       // first probe that succeeded after backend B ready
	StepIOStuck         Step = "io-stuck"           // a probe exceeded its deadline after backend B ready
	StepDeadline        Step = "deadline"           // the scenario's recovery deadline passed
	StepTeardown        Step = "teardown-done"      // mounts, datapath and netns of the cell are gone
	StepTeardownTainted Step = "teardown-tainted"   // the teardown failed or left I/O stuck in the kernel: the VM runs no other cell
)

// Phase places an observation relative to the fault.
type Phase string

// Phases of a cell.
const (
	PhaseBefore Phase = "before-fault"
	PhaseAfter  Phase = "after-fault"
)

// Event is one record of the timeline.
type Event struct {
	Mono  Mono   `json:"mono_ns"`
	Cell  int    `json:"cell"` // index into the job's cells, -1 for VM-level events
	Kind  Kind   `json:"kind"`
	Step  Step   `json:"step,omitempty"`
	Phase Phase  `json:"phase,omitempty"`
	Msg   string `json:"msg,omitempty"`
	// Errno is, for an error event, the symbolic errno (EINVAL) the failed step's system call
	// got, when its error carries one: the kernel's own answer, which the verdict may rest on
	// where Msg is only for people.
	Errno string `json:"errno,omitempty"`

	// Evidence; an observe event sets exactly one of these.
	Hello   *Hello         `json:"hello,omitempty"`
	Mount   *MountObs      `json:"mount,omitempty"`
	Probe   *ProbeObs      `json:"probe,omitempty"`
	Sockets *SocketsObs    `json:"sockets,omitempty"`
	Kernel  *KernelLogObs  `json:"kernel_log,omitempty"`
	Hook    *HookObs       `json:"hook,omitempty"`
	Connect *ConnectObs    `json:"connect,omitempty"`
	Failed  *ConnectFailed `json:"connect_failed,omitempty"`
	Window  *WindowObs     `json:"window,omitempty"`
	Service *ServiceObs    `json:"service,omitempty"`
	Backend *BackendObs    `json:"backend,omitempty"`
	Instr   *InstrumentObs `json:"instrument,omitempty"`
	Engine  *EngineObs     `json:"engine,omitempty"`
	Cluster *ClusterObs    `json:"cluster,omitempty"`
	Verdict *VerdictRecord `json:"verdict,omitempty"`
	Kept    *Kept          `json:"kept,omitempty"`
	Sync    *SyncObs       `json:"sync,omitempty"`
}

// SyncObs is what the agent found and did when its job arrived: the guest's wall clock against
// the host's (a VM restored from a saved state wakes with the clock of the moment it was saved)
// and the reseeding of its random number generator (a restored VM would otherwise draw the same
// TCP ports and sequence numbers as every other VM restored from that state).
type SyncObs struct {
	// ClockSkewNS is the guest's wall clock minus the host's when the job arrived, before the
	// agent set the guest's clock to the host's.
	ClockSkewNS int64  `json:"clock_skew_ns"`
	ClockSet    bool   `json:"clock_set"`
	Reseeded    bool   `json:"reseeded"`
	Error       string `json:"error,omitempty"`
}

// Kept is the kind cluster the agent keeps up after the cells (nfslab run --keep).
type Kept struct {
	// Kubeconfig is the cluster's kubeconfig as kind wrote it in the VM; its API server listens
	// on every address of the VM at APIServerPort, which the host forwards from its loopback.
	Kubeconfig    string `json:"kubeconfig"`
	APIServerPort int    `json:"api_server_port"`
	ProxyMode     string `json:"kube_proxy_mode"`
}

// Mono is a CLOCK_MONOTONIC reading in nanoseconds, as taken inside the VM.
type Mono int64

// Sub returns m - o as a duration.
func (m Mono) Sub(o Mono) time.Duration { return time.Duration(m - o) }

// Seconds renders m as seconds since the agent's clock origin.
func (m Mono) Seconds() float64 { return float64(m) / 1e9 }

// Hello is what the agent says about the machine it runs on.
type Hello struct {
	KernelRelease string `json:"kernel_release"` // uname -r
	KernelVersion string `json:"kernel_version"` // uname -v
	Cgroup2       string `json:"cgroup2"`        // where the cgroup2 root is mounted
	BootMono      Mono   `json:"boot_mono_ns"`   // monotonic time when the agent started
}

// MountObs is the mount's entry in /proc/mounts. Addr is the addr= option: it is formatted when
// the transport is created, so it is recorded but never decided on (see lab/verdict).
type MountObs struct {
	Source  string `json:"source"`
	FSType  string `json:"fstype"`
	Addr    string `json:"addr"`
	Options string `json:"options"`
}

// ProbeObs is the outcome of one I/O probe (write + fsync + read back in a child process).
type ProbeObs struct {
	Seq      int     `json:"seq"`
	OK       bool    `json:"ok"`
	Stuck    bool    `json:"stuck"` // the probe had not finished at its deadline (it is abandoned)
	Error    string  `json:"error,omitempty"`
	Seconds  float64 `json:"seconds"` // how long the probe took (or had run, when stuck)
	StartNS  Mono    `json:"start_ns"`
	FinishNS Mono    `json:"finish_ns,omitempty"`
}

// Socket is one kernel TCP socket to the NFS port, from /proc/net/tcp.
type Socket struct {
	Local  string `json:"local"`
	Remote string `json:"remote"`
	State  string `json:"state"` // ESTABLISHED, SYN-SENT, …
	// Inode is the socket's inode number (0 for TIME-WAIT entries and sockets without a file).
	Inode uint64 `json:"inode,omitempty"`
	// Kernel is true for a socket no process holds, such as SUNRPC's transport.
	Kernel bool `json:"kernel"`
}

// SocketsObs is a snapshot of the TCP sockets whose remote port is the NFS port. Snapshots are
// taken periodically but recorded only when they change, so SinceNS says when the read of the
// previous snapshot began: a socket that is new in this one was created after SinceNS. The
// record's own Mono is when its read began, not when it was emitted.
type SocketsObs struct {
	Sockets []Socket `json:"sockets"`
	SinceNS Mono     `json:"since_ns,omitempty"`
}

// ServiceObs is what the cluster reports about the NFS service: its address, its ports and the
// backends its endpoints list. It is recorded whenever the endpoints change as far as the lab
// can see: when the datapath nfslab programmed is read back forwarding to them (the netns form's
// endpoint controller, or an EndpointSlice informer), when kube-proxy's rules are read back, or
// when an EndpointSlice update is watched. The verdict takes the VIP and the old and new backends
// from these records, not from configuration.
type ServiceObs struct {
	Name      string   `json:"name"` // namespace/name
	VIP       string   `json:"vip"`
	Ports     []string `json:"ports"`     // "2049/tcp", …
	Endpoints []string `json:"endpoints"` // ready backend IPs; empty: the service has no endpoint
	// Datapath is true when the datapath was read back forwarding the VIP to these endpoints
	// (nfslab's socket-LB service map, kube-proxy's rules on the node): an observed fact about
	// the datapath, recorded after the read. False for the cluster's own view alone (a watched
	// EndpointSlice update), which says nothing about when the datapath changed.
	Datapath bool `json:"datapath,omitempty"`
	// Cilium, on a cluster with real Cilium, is the agent's own service table entry for the
	// VIP when it was read back ("10.244.0.5:2049 (active)", …).
	Cilium string `json:"cilium,omitempty"`
}

// BackendObs is a backend pod's life as the cluster reports it.
type BackendObs struct {
	Name  string `json:"name"`
	IP    string `json:"ip"`
	State string `json:"state"` // BackendServing, BackendKilled or BackendDeleted
}

// Backend states.
const (
	BackendServing = "serving" // the server listens on its IP
	BackendKilled  = "killed"  // its server process is dead
	BackendDeleted = "deleted" // the pod's sandbox (network namespace, IP) is gone
)

// InstrumentObs says that an evidence instrument failed or lost records: a tracer whose ring
// buffer overflowed, a sampler whose read failed, a node reset (conntrack flush) that did not
// happen. A verdict that would rest on the silence of a failed instrument is inconclusive.
type InstrumentObs struct {
	Name  string `json:"name"`            // "kprobe:kernel_connect", "socket-lb:hook-events", "sockets", "conntrack-flush", …
	Error string `json:"error,omitempty"` // the failure, if it failed
	Lost  uint64 `json:"lost,omitempty"`  // records dropped
}

// EngineObs is what the Docker engine of a kind-form machine said about itself once its API
// answered (`docker info`): the facts that decide whether kind can run on the kernel under test.
type EngineObs struct {
	ServerVersion string   `json:"server_version"`
	Driver        string   `json:"storage_driver"`
	BackingFS     string   `json:"backing_filesystem,omitempty"`
	CgroupVersion string   `json:"cgroup_version"`
	CgroupDriver  string   `json:"cgroup_driver"`
	KernelVersion string   `json:"kernel_version"`
	Warnings      []string `json:"warnings,omitempty"`
	// ReadySeconds is the time from starting dockerd to its API answering.
	ReadySeconds float64 `json:"ready_seconds"`
	// Images are the images the engine held once it started (and loaded Loaded).
	Images []string `json:"images,omitempty"`
	// Loaded are the docker-archives loaded into the engine when it started.
	Loaded []LoadedObs `json:"loaded,omitempty"`
	// Container is the node-like container the engine ran as a check, when it was asked to.
	Container *ContainerObs `json:"container,omitempty"`
}

// ClusterObs is a kind cluster a kind-form machine created: how long creating it took, its node
// once Ready, and (when the agent deleted it) how long deleting it took.
type ClusterObs struct {
	Name           string  `json:"name"`
	NodeImage      string  `json:"node_image"`
	ProxyMode      string  `json:"kube_proxy_mode"`
	CreateSeconds  float64 `json:"create_seconds"` // kind's Create
	ReadySeconds   float64 `json:"ready_seconds"`  // from the start of Create to the node Ready
	Node           string  `json:"node,omitempty"`
	KubeletVersion string  `json:"kubelet_version,omitempty"`
	KernelVersion  string  `json:"kernel_version,omitempty"` // as the node reports it
	DeleteSeconds  float64 `json:"delete_seconds,omitempty"`
	DeleteError    string  `json:"delete_error,omitempty"`
	// SwitchedFrom, when set, says the cluster was not created but its kube-proxy switched from
	// that mode to ProxyMode, in SwitchSeconds.
	SwitchedFrom  string  `json:"switched_from,omitempty"`
	SwitchSeconds float64 `json:"switch_seconds,omitempty"`
	// NFS is the NFS smoke test run on the cluster, when it was asked for.
	NFS *NFSCheckObs `json:"nfs,omitempty"`
	// Cilium is real Cilium, when the cluster runs it instead of kube-proxy.
	Cilium *CiliumObs `json:"cilium,omitempty"`
	Error  string     `json:"error,omitempty"`
}

// CiliumObs is real Cilium installed in a kind cluster from its rendered chart.
type CiliumObs struct {
	Version  string `json:"version"`
	Datapath string `json:"datapath"`
	// Values are the effective Helm values the chart was rendered with: a user's
	// (--cilium-values) under nfslab's own.
	Values  map[string]any `json:"values,omitempty"`
	Objects int            `json:"objects"` // the chart's objects applied
	// ReadySeconds counts from the apply until the agents were ready on every node and the
	// operator available (the agent compiles its datapath first).
	ReadySeconds float64 `json:"ready_seconds"`
	// KubeProxyReplacement is the agent's own status line about it (cilium-dbg status);
	// Status is that command's whole output.
	KubeProxyReplacement string `json:"kube_proxy_replacement,omitempty"`
	Status               string `json:"status,omitempty"`
	// RootPrograms are the sock_addr programs effective at the VM's root cgroup once Cilium was
	// ready: where the kernel's own NFS sockets are.
	RootPrograms string `json:"root_programs,omitempty"`
}

// NFSCheckObs is the kind form's NFS smoke test: nfs-ganesha behind a ClusterIP, mounted from
// the node by the kernel under test's NFS client. Times count from the objects' creation.
type NFSCheckObs struct {
	VIP              string  `json:"vip"`
	Pod              string  `json:"pod,omitempty"`
	PodIP            string  `json:"pod_ip,omitempty"`
	PodReadySeconds  float64 `json:"pod_ready_seconds,omitempty"`
	EndpointsSeconds float64 `json:"endpoints_seconds,omitempty"` // the EndpointSlice lists the pod
	MountSeconds     float64 `json:"mount_seconds,omitempty"`
	MountAttempts    int     `json:"mount_attempts,omitempty"` // mounts refused before kube-proxy programmed the VIP
	ReadBack         bool    `json:"read_back"`
	MountSource      string  `json:"mount_source,omitempty"` // the node's /proc/mounts
	MountAddr        string  `json:"mount_addr,omitempty"`   // its addr= option
	// CiliumBackends, on a Cilium cluster, are the backends Cilium's agent had programmed for the
	// VIP once the mount was made (cilium-dbg service list).
	CiliumBackends string `json:"cilium_backends,omitempty"`
	Error          string `json:"error,omitempty"`
}

// LoadedObs is one docker-archive loaded into a kind-form machine's engine.
type LoadedObs struct {
	Source  string   `json:"source"` // the block device it was read from
	Images  []string `json:"images"`
	Seconds float64  `json:"seconds"`
}

// ContainerObs is a container a kind-form machine ran the way kind runs its nodes.
type ContainerObs struct {
	Image         string  `json:"image"`
	ImportSeconds float64 `json:"import_seconds"` // building the image from a tar stream
	RunSeconds    float64 `json:"run_seconds"`    // docker run to its exit
}

// KernelLogObs is one kernel log line about NFS or SUNRPC.
type KernelLogObs struct {
	Line string `json:"line"`
}

// HookObs are the socket-LB program's own counters: connects it rewrote, and connects to the
// NFS port whose destination was not a lab VIP (the instrument that shows an overwritten
// address), with the last such destination.
type HookObs struct {
	Rewrites       uint64 `json:"rewrites"`
	Refused        uint64 `json:"refused"`
	NonVIP         uint64 `json:"non_vip"`
	LastNonVIPDest string `json:"last_non_vip_dest,omitempty"`
	LostEvents     uint64 `json:"lost_events,omitempty"` // hook events dropped on a full ring buffer
}

// ConnectObs is one connect attempt seen by a tracer: the address handed in and, where known,
// the address after the socket-LB hook ran, and who made it.
type ConnectObs struct {
	Source string `json:"source"` // what saw it: "kprobe:kernel_connect", "socket-lb:connect4" or "socket-lb:sendmsg4"
	Input  string `json:"input"`
	Output string `json:"output,omitempty"`
	Action string `json:"action,omitempty"` // socket-LB only: rewrite, refuse, pass-through, non-vip
	// Kernel says the kernel itself made the call on a socket of its own: always for the kprobe
	// (kernel_connect() has in-kernel callers only; connect(2) does not go through it), and for
	// the socket-LB hook when no process created the socket with socket(2) (SUNRPC's transport,
	// the CIFS client's). Only such records are evidence of what the kernel client asked for.
	Kernel bool `json:"kernel,omitempty"`
	// PID and Comm are the task that was running: SUNRPC's reconnect worker is a kworker; a
	// process's own connect names the process. PID is 0 when the tracer does not report it.
	PID  uint32 `json:"pid,omitempty"`
	Comm string `json:"comm,omitempty"`
}

// ConnectFailed is a kernel connect call (kernel_connect) that failed at once, from the
// function's return: EPERM when a BPF connect hook refused the address, as Cilium's socket-LB
// does for a service without a backend (cilium/cilium#33395). SUNRPC turns that EPERM into
// ECONNREFUSED and retries, without a word in the kernel log: this record is the only trace.
type ConnectFailed struct {
	Source string `json:"source"` // "kretprobe:kernel_connect"
	Input  string `json:"input"`  // the address the call was handed
	Errno  string `json:"errno"`  // EPERM, ENETUNREACH, …
	Comm   string `json:"comm,omitempty"`
}

// Caller renders who made the call: the kernel, with its task ("the kernel (kworker/u4:2)").
func (f *ConnectFailed) Caller() string {
	if f.Comm == "" {
		return "the kernel"
	}
	return "the kernel (" + f.Comm + ")"
}

// Caller renders who made the call: "the kernel (kworker/u4:2)", "process 812 (curl)".
func (c *ConnectObs) Caller() string {
	who := "a process"
	if c.Kernel {
		who = "the kernel"
	} else if c.PID != 0 {
		who = fmt.Sprintf("process %d", c.PID)
	}
	if c.Comm != "" {
		who += " (" + c.Comm + ")"
	}
	return who
}

// WindowObs summarizes the no-endpoint window: the service had no endpoint for Seconds while an
// I/O probe was in flight, so the kernel kept trying to reconnect (cilium/cilium#33395).
type WindowObs struct {
	Seconds float64 `json:"seconds"`
	// ConnectAttempts counts connects the kernel tried: TCP active opens plus connects the
	// socket-LB hook refused before they reached TCP.
	ConnectAttempts uint64 `json:"connect_attempts"`
	Refused         uint64 `json:"refused"`          // of which the socket-LB hook refused
	KernelLogLines  int    `json:"kernel_log_lines"` // NFS/SUNRPC kernel log lines
}

// VerdictRecord is the agent's early decision for a cell. The host recomputes the verdict from
// the whole timeline; this record only says why the agent stopped collecting.
type VerdictRecord struct {
	Verdict string `json:"verdict"`
	Reason  string `json:"reason"`
}

// Validate checks that an event decoded from the wire is well-formed.
func (e *Event) Validate() error {
	switch e.Kind {
	case KindHello:
		if e.Hello == nil {
			return fmt.Errorf("hello event without hello payload")
		}
	case KindStep:
		if e.Step == "" {
			return fmt.Errorf("step event without step name")
		}
	case KindObserve:
		n := 0
		for _, set := range []bool{e.Mount != nil, e.Probe != nil, e.Sockets != nil, e.Kernel != nil, e.Hook != nil, e.Connect != nil, e.Failed != nil, e.Window != nil, e.Service != nil, e.Backend != nil, e.Instr != nil, e.Engine != nil, e.Cluster != nil, e.Sync != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("observe event must carry exactly one piece of evidence, has %d", n)
		}
	case KindKept:
		if e.Kept == nil {
			return fmt.Errorf("kept event without the kept cluster")
		}
	case KindError, KindCellDone, KindBye, KindProgress, KindReady:
	default:
		return fmt.Errorf("unknown event kind %q", e.Kind)
	}
	return nil
}

// Decode parses one JSON line into an Event and validates it.
func Decode(line []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(line, &e); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	if err := e.Validate(); err != nil {
		return Event{}, fmt.Errorf("decode event: %w", err)
	}
	return e, nil
}

// String renders the failure in a few words: "sockets: read /proc/net/tcp: …", "kprobe:kernel_connect: lost 12 records".
func (o *InstrumentObs) String() string {
	switch {
	case o.Error != "" && o.Lost > 0:
		return fmt.Sprintf("%s: %s (lost %d records)", o.Name, o.Error, o.Lost)
	case o.Error != "":
		return o.Name + ": " + o.Error
	default:
		return fmt.Sprintf("%s: lost %d records", o.Name, o.Lost)
	}
}
