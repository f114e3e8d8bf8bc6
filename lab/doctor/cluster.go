package doctor

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// SocketLBState says whether the cluster's CNI load-balances services at the socket level.
type SocketLBState string

// Socket-LB states.
const (
	SocketLBOn  SocketLBState = "on"
	SocketLBOff SocketLBState = "off"
	// SocketLBNotDetected: no Cilium configuration was found. Other CNIs' socket-level load
	// balancers (Calico eBPF's connect-time load balancing, …) are not inspected.
	SocketLBNotDetected SocketLBState = "not-detected"
	// SocketLBUnknown: the configuration could not be read.
	SocketLBUnknown SocketLBState = "unknown"
)

// SocketLB is what the cluster's Cilium configuration says about socket-level load balancing.
type SocketLB struct {
	State SocketLBState `json:"state"`
	// Source is the ConfigMap read, namespace/name.
	Source string `json:"source,omitempty"`
	Reason string `json:"reason"`
	// Notes are settings that qualify the state (host-namespace only, TCP only, cgroup root).
	Notes []string `json:"notes,omitempty"`
	// Settings are the keys of the ConfigMap that were read.
	Settings map[string]string `json:"settings,omitempty"`
}

// NodeReport is one node of a cluster.
type NodeReport struct {
	Name    string       `json:"name"`
	OSImage string       `json:"os_image"`
	Kernel  KernelReport `json:"kernel"`
	Outcome Outcome      `json:"outcome"`
	Reason  string       `json:"reason"`
}

// ClusterReport is `nfslab doctor --kubeconfig`.
type ClusterReport struct {
	Server   string       `json:"server,omitempty"`
	SocketLB SocketLB     `json:"socket_lb"`
	Nodes    []NodeReport `json:"nodes"`
	Outcome  Outcome      `json:"outcome"`
	Reason   string       `json:"reason"`
}

// ciliumConfigName is the ConfigMap the Cilium agent reads its options from.
const ciliumConfigName = "cilium-config"

// Cilium agent options that decide socket-level load balancing (pkg/option in cilium/cilium).
const (
	keyKubeProxyReplacement = "kube-proxy-replacement"
	keySocketLB             = "bpf-lb-sock"
	keySocketLBHostnsOnly   = "bpf-lb-sock-hostns-only"
	keyHostReachable        = "enable-host-reachable-services" // before Cilium 1.12
	keyHostReachableProtos  = "host-reachable-services-protos"
	keyDatapathMode         = "datapath-mode"
	keyCgroupRoot           = "cgroup-root"
)

// ClientFromKubeconfig builds a clientset from a kubeconfig file; its requests time out
// after timeout. The error names the file.
func ClientFromKubeconfig(path string, timeout time.Duration) (kubernetes.Interface, string, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	cfg.Timeout = timeout
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return c, cfg.Host, nil
}

// InspectCluster reads every node's kernel and the cluster's Cilium configuration through the
// API server — nothing is created in the cluster — and says per node whether NFS or SMB
// mounts of ClusterIPs are at risk there. An error means the nodes could not be listed.
func InspectCluster(ctx context.Context, c kubernetes.Interface, tab *Table) (ClusterReport, error) {
	var rep ClusterReport
	var nodes []corev1.Node
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := c.CoreV1().Nodes().List(ctx, opts)
		if err != nil {
			return rep, fmt.Errorf("list nodes: %w", err)
		}
		nodes = append(nodes, list.Items...)
		if list.Continue == "" {
			break
		}
		opts.Continue = list.Continue
	}
	rep.SocketLB = findSocketLB(ctx, c)
	for _, n := range nodes {
		info := n.Status.NodeInfo
		nr := NodeReport{Name: n.Name, OSImage: info.OSImage, Kernel: tab.AssessString(info.KernelVersion)}
		nr.Outcome, nr.Reason = nodeOutcome(nr.Kernel, rep.SocketLB)
		rep.Nodes = append(rep.Nodes, nr)
	}
	slices.SortFunc(rep.Nodes, func(a, b NodeReport) int { return strings.Compare(a.Name, b.Name) })
	rep.Outcome, rep.Reason = clusterOutcome(rep.Nodes)
	return rep, nil
}

// findSocketLB reads Cilium's ConfigMap: kube-system/cilium-config, else one of that name in
// any namespace (Helm installs elsewhere).
func findSocketLB(ctx context.Context, c kubernetes.Interface) SocketLB {
	cm, err := c.CoreV1().ConfigMaps("kube-system").Get(ctx, ciliumConfigName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		var list *corev1.ConfigMapList
		list, err = c.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + ciliumConfigName})
		cm = nil
		if err == nil {
			for i := range list.Items {
				if list.Items[i].Name == ciliumConfigName {
					cm = &list.Items[i]
					break
				}
			}
		}
	}
	switch {
	case err != nil:
		return SocketLB{State: SocketLBUnknown, Reason: fmt.Sprintf("read ConfigMap %s: %v", ciliumConfigName, err)}
	case cm == nil:
		return SocketLB{State: SocketLBNotDetected, Reason: "no ConfigMap " + ciliumConfigName + " in any namespace: Cilium is not installed; other CNIs' socket-level load balancing is not inspected"}
	}
	s := CiliumSocketLB(cm.Data)
	s.Source = cm.Namespace + "/" + cm.Name
	return s
}

// CiliumSocketLB decides from the data of Cilium's ConfigMap whether the agent load-balances
// at the socket level (cgroup connect4/sendmsg4/recvmsg4 programs).
func CiliumSocketLB(data map[string]string) SocketLB {
	s := SocketLB{Settings: map[string]string{}}
	for _, k := range []string{keyKubeProxyReplacement, keySocketLB, keySocketLBHostnsOnly, keyHostReachable, keyHostReachableProtos, keyDatapathMode, keyCgroupRoot} {
		if v, ok := data[k]; ok {
			s.Settings[k] = v
		}
	}
	kpr := strings.ToLower(strings.TrimSpace(data[keyKubeProxyReplacement]))
	switch {
	case data[keyDatapathMode] == "lb-only":
		s.State, s.Reason = SocketLBOn, "datapath-mode=lb-only turns socket-LB on"
	case kpr == "true" || kpr == "strict":
		s.State, s.Reason = SocketLBOn, keyKubeProxyReplacement+"="+kpr+" turns socket-LB on"
	case isTrue(data[keySocketLB]):
		s.State, s.Reason = SocketLBOn, keySocketLB+"=true"
	case isTrue(data[keyHostReachable]):
		s.State, s.Reason = SocketLBOn, keyHostReachable+"=true (socket-LB's name before Cilium 1.12)"
	case kpr == "probe":
		s.State, s.Reason = SocketLBOn, keyKubeProxyReplacement+"=probe: the agent turns socket-LB on wherever the kernel has the cgroup hooks"
	default:
		s.State = SocketLBOff
		s.Reason = fmt.Sprintf("%s=%q and neither %s nor %s is true: services are translated per packet", keyKubeProxyReplacement, data[keyKubeProxyReplacement], keySocketLB, keyHostReachable)
	}
	if s.State != SocketLBOn {
		return s
	}
	if isTrue(data[keySocketLBHostnsOnly]) {
		s.Notes = append(s.Notes, keySocketLBHostnsOnly+"=true: pods are left alone, but the kernel's NFS and SMB client sockets are host-namespace sockets and stay covered")
	}
	if p, ok := data[keyHostReachableProtos]; ok && !strings.Contains(strings.ToLower(p), "udp") {
		s.Notes = append(s.Notes, keyHostReachableProtos+"="+p+": UDP is not translated (NFS over UDP is not rewritten)")
	}
	if r := data[keyCgroupRoot]; r != "" {
		s.Notes = append(s.Notes, keyCgroupRoot+"="+r+": the kernel's own sockets are covered only if this is the host's cgroup2 root (not a container's cgroup namespace, as in kind)")
	}
	return s
}

func isTrue(v string) bool { return strings.EqualFold(strings.TrimSpace(v), "true") }

// nodeOutcome: a node is at risk when socket-LB covers it and its kernel lacks a fix.
func nodeOutcome(k KernelReport, s SocketLB) (Outcome, string) {
	switch {
	case k.Verdict == Fixed:
		return NotAffected, "kernel carries the fixes"
	case s.State == SocketLBOn:
		return outcomeFor(k.Verdict), fmt.Sprintf("socket-LB on and kernel %s: %s", k.Verdict, k.Reason)
	case s.State == SocketLBUnknown:
		return Undecided, fmt.Sprintf("kernel %s and socket-LB could not be ruled out: %s", k.Verdict, s.Reason)
	default:
		return NotAffected, fmt.Sprintf("kernel %s, but no socket-LB: nothing rewrites the kernel's connects", k.Verdict)
	}
}

// clusterOutcome is the worst node's.
func clusterOutcome(nodes []NodeReport) (Outcome, string) {
	if len(nodes) == 0 {
		return Undecided, "the cluster lists no nodes"
	}
	count := map[Outcome][]string{}
	for _, n := range nodes {
		count[n.Outcome] = append(count[n.Outcome], n.Name)
	}
	for _, o := range []Outcome{Affected, Undecided} {
		if names := count[o]; len(names) > 0 {
			return o, fmt.Sprintf("%d of %d node(s) %s: %s", len(names), len(nodes), o, strings.Join(names, ", "))
		}
	}
	return NotAffected, fmt.Sprintf("none of %d node(s) at risk", len(nodes))
}
