package cilium

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// Install is a Cilium install as the agent in the VM receives it: the chart rendered on the host
// (chart.Render with Required's values), for the datapath and version it was rendered for.
type Install struct {
	Datapath string `json:"datapath"`
	Version  string `json:"version"`
	// Values are the effective Helm values the chart was rendered with: a user's
	// (--cilium-values) under nfslab's (Required).
	Values map[string]any `json:"values"`
	// Objects are the rendered manifests, in the chart's order.
	Objects []map[string]any `json:"objects"`
}

// Key names the install: "datapath@version".
func (in Install) Key() string { return Key(in.Datapath, in.Version) }

// Key names the install of a Cilium datapath and version: "datapath@version".
func Key(datapath, version string) string { return datapath + "@" + version }

// NodeCgroupRoot is where a kind node sees the VM's cgroup2 root (an extraMount of the VM's
// /sys/fs/cgroup): cgroup.hostRoot for the datapaths that attach there (VMRoot).
const NodeCgroupRoot = "/run/nfslab/vm-cgroup2"

// Names of what the chart installs, in Namespace (chart.Namespace; repeated here because the
// chart package imports this one).
const (
	namespace      = "kube-system"
	agentDaemonSet = "cilium"
	operatorDeploy = "cilium-operator"
	// AgentContainer is the agent's container in its pod, as the kubelet names it.
	AgentContainer = "cilium-agent"
)

// fieldManager is nfslab's name as the owner of the fields it applies.
const fieldManager = "nfslab"

// Apply applies the objects to the cluster with server-side apply, in order, and returns how
// many it applied. A kind the API server does not serve is an error naming it.
func Apply(ctx context.Context, cfg *rest.Config, objs []map[string]any) (int, error) {
	dc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return 0, fmt.Errorf("apply Cilium's manifests: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return 0, fmt.Errorf("apply Cilium's manifests: %w", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc.Discovery()))
	for i, o := range objs {
		obj := &unstructured.Unstructured{Object: o}
		gvk := obj.GroupVersionKind()
		what := fmt.Sprintf("%s %s", gvk.Kind, objectName(obj))
		m, err := mapper.RESTMapping(schema.GroupKind{Group: gvk.Group, Kind: gvk.Kind}, gvk.Version)
		if err != nil {
			return i, fmt.Errorf("apply Cilium's %s: %w", what, err)
		}
		var r dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ns := obj.GetNamespace()
			if ns == "" {
				ns = namespace
			}
			r = dyn.Resource(m.Resource).Namespace(ns)
		}
		if _, err := r.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
			return i, fmt.Errorf("apply Cilium's %s: %w", what, err)
		}
	}
	return len(objs), nil
}

// objectName is namespace/name, or name for a cluster-scoped object.
func objectName(o *unstructured.Unstructured) string {
	if ns := o.GetNamespace(); ns != "" {
		return ns + "/" + o.GetName()
	}
	return o.GetName()
}

// WaitReady waits until Cilium's agent DaemonSet has a ready pod on every node it schedules to
// and its operator is available, or ctx ends. Under TCG the agent compiles its datapath with
// clang for minutes before it is ready: say receives the agent pods' state every 30 s.
func WaitReady(ctx context.Context, c kubernetes.Interface, say func(string)) error {
	start := time.Now()
	report := time.NewTicker(30 * time.Second)
	defer report.Stop()
	for {
		ready, why, crashed := readiness(ctx, c)
		if ready {
			return nil
		}
		if crashed {
			return fmt.Errorf("the Cilium agent keeps exiting (%.0f s after the apply): %s", time.Since(start).Seconds(), why)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the Cilium agent and operator not ready after %.0f s: %s", time.Since(start).Seconds(), why)
		case <-report.C:
			if say != nil {
				say(fmt.Sprintf("cilium: (%.0f s) %s", time.Since(start).Seconds(), why))
			}
		case <-time.After(2 * time.Second):
		}
	}
}

// readiness reports whether the agent and the operator are ready, and otherwise what they are
// doing; crashed when an agent has exited with an error twice (its log says why, and waiting
// longer only repeats its datapath's compile).
func readiness(ctx context.Context, c kubernetes.Interface) (ready bool, why string, crashed bool) {
	ds, err := c.AppsV1().DaemonSets(namespace).Get(ctx, agentDaemonSet, metav1.GetOptions{})
	if err != nil {
		return false, "the agent's DaemonSet: " + err.Error(), false
	}
	dep, err := c.AppsV1().Deployments(namespace).Get(ctx, operatorDeploy, metav1.GetOptions{})
	if err != nil {
		return false, "the operator's Deployment: " + err.Error(), false
	}
	if daemonSetReady(ds) && dep.Status.AvailableReplicas > 0 {
		return true, "", false
	}
	pods, err := c.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/part-of=cilium"})
	if err != nil {
		return false, "Cilium's pods: " + err.Error(), false
	}
	var parts []string
	for _, p := range pods.Items {
		parts = append(parts, p.Name+" "+PodState(p))
		for _, st := range p.Status.ContainerStatuses {
			if st.Name == AgentContainer && agentFailures(st) >= 2 {
				crashed = true
			}
		}
	}
	slices.Sort(parts)
	return false, fmt.Sprintf("agents ready %d/%d, operator available %d; %s",
		ds.Status.NumberReady, ds.Status.DesiredNumberScheduled, dep.Status.AvailableReplicas, strings.Join(parts, "; ")), crashed
}

// agentFailures counts the agent container's exits with an error: its restarts, and its
// present state when that is such an exit.
func agentFailures(st corev1.ContainerStatus) int {
	n := int(st.RestartCount)
	if t := st.State.Terminated; t != nil && t.ExitCode != 0 {
		n++
	}
	return n
}

// daemonSetReady: scheduled somewhere and ready everywhere it is scheduled.
func daemonSetReady(ds *appsv1.DaemonSet) bool {
	s := ds.Status
	return s.DesiredNumberScheduled > 0 && s.NumberReady == s.DesiredNumberScheduled
}

// PodState is one short phrase for what a pod is doing: its phase, and the first container
// (init containers first) that is not running and ready, with its reason.
func PodState(p corev1.Pod) string {
	for _, st := range p.Status.InitContainerStatuses {
		if st.State.Terminated != nil && st.State.Terminated.ExitCode == 0 {
			continue
		}
		return fmt.Sprintf("%s, init %s %s", p.Status.Phase, st.Name, containerState(st))
	}
	for _, st := range p.Status.ContainerStatuses {
		if !st.Ready {
			return fmt.Sprintf("%s, %s %s", p.Status.Phase, st.Name, containerState(st))
		}
	}
	return string(p.Status.Phase)
}

func containerState(st corev1.ContainerStatus) string {
	s := st.State
	switch {
	case s.Waiting != nil:
		if m := s.Waiting.Message; m != "" && s.Waiting.Reason != "PodInitializing" && s.Waiting.Reason != "ContainerCreating" {
			// CreateContainerError and friends: the reason alone does not say what failed.
			return fmt.Sprintf("waiting: %s: %.300s", s.Waiting.Reason, m)
		}
		return "waiting: " + s.Waiting.Reason
	case s.Terminated != nil:
		return fmt.Sprintf("exited %d (%s), %d restart(s)", s.Terminated.ExitCode, s.Terminated.Reason, st.RestartCount)
	case s.Running != nil:
		if st.RestartCount > 0 {
			return fmt.Sprintf("running, not ready, %d restart(s)", st.RestartCount)
		}
		return "running, not ready"
	}
	return "unknown"
}

// NodeExec runs a command on a node (docker exec into the kind node's container) and returns
// its output.
type NodeExec func(ctx context.Context, args ...string) ([]byte, error)

// AgentExec runs a command in the Cilium agent's container on the node, through the node's
// containerd (ctr tasks exec): cilium-dbg needs the agent's API socket, which only the agent's
// mount namespace has.
func AgentExec(ctx context.Context, node NodeExec, args ...string) (string, error) {
	out, err := node(ctx, "ctr", "-n", "k8s.io", "containers", "ls", "-q",
		`labels."io.kubernetes.container.name"==`+AgentContainer)
	if err != nil {
		return "", fmt.Errorf("find the Cilium agent's container: %w", err)
	}
	ids := strings.Fields(string(out))
	if len(ids) == 0 {
		return "", errors.New("no Cilium agent container on the node")
	}
	// A restarted agent leaves its old container until the kubelet collects it: the task that
	// runs is the one to ask.
	var last error
	for _, id := range slices.Backward(ids) {
		cmd := append([]string{"ctr", "-n", "k8s.io", "tasks", "exec", "--exec-id", fmt.Sprintf("nfslab-%d", time.Now().UnixNano()), id}, args...)
		out, err := node(ctx, cmd...)
		if err == nil {
			return string(out), nil
		}
		last = err
	}
	return "", fmt.Errorf("%s in the Cilium agent: %w", strings.Join(args, " "), last)
}

// Status is what the agent says of itself (cilium-dbg status): the line about kube-proxy
// replacement, and the whole output.
type Status struct {
	KubeProxyReplacement string `json:"kube_proxy_replacement,omitempty"`
	Text                 string `json:"text"`
}

// AgentStatus asks the agent on the node for its status.
func AgentStatus(ctx context.Context, node NodeExec) (Status, error) {
	out, err := AgentExec(ctx, node, "cilium-dbg", "status")
	if err != nil {
		return Status{}, err
	}
	return ParseStatus(out), nil
}

// ParseStatus reads cilium-dbg status's output.
func ParseStatus(out string) Status {
	st := Status{Text: strings.TrimSpace(out)}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "KubeProxyReplacement" {
			st.KubeProxyReplacement = strings.TrimSpace(v)
		}
	}
	return st
}
