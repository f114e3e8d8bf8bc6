package cilium

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

func TestParseStatus(t *testing.T) {
	out := `KVStore:                 Disabled
Kubernetes:              Ok   1.37 (v1.37.2) [linux/amd64]
KubeProxyReplacement:    True   [eth0   172.18.0.2 (Direct Routing)]
Host firewall:           Disabled
Cilium:                  Ok   1.19.7 (v1.19.7-e58abc)
`
	st := ParseStatus(out)
	if st.KubeProxyReplacement != "True   [eth0   172.18.0.2 (Direct Routing)]" {
		t.Errorf("KubeProxyReplacement = %q", st.KubeProxyReplacement)
	}
	if !strings.HasPrefix(st.Text, "KVStore:") || strings.HasSuffix(st.Text, "\n") {
		t.Errorf("Text = %q", st.Text)
	}
	if got := ParseStatus("garbage\n"); got.KubeProxyReplacement != "" {
		t.Errorf("no such line: %+v", got)
	}
}

func TestPodState(t *testing.T) {
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	done := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}
	tests := []struct {
		name string
		pod  corev1.Pod
		want string
	}{
		{"ready", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning,
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "config", State: done}},
			ContainerStatuses:     []corev1.ContainerStatus{{Name: "cilium-agent", State: running, Ready: true}}}}, "Running"},
		{"in an init container", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending,
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "config", State: done}, {Name: "mount-bpf-fs", State: running}}}},
			"Pending, init mount-bpf-fs running, not ready"},
		{"image missing", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending,
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "config", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull"}}}}}},
			"Pending, init config waiting: ErrImageNeverPull"},
		{"container not created", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodPending,
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "config", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
				Reason: "CreateContainerError", Message: "failed to generate container spec: no such file"}}}}}},
			"Pending, init config waiting: CreateContainerError: failed to generate container spec: no such file"},
		{"agent crashed", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{{Name: "cilium-agent", RestartCount: 2,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}}}}}},
			"Running, cilium-agent exited 1 (Error), 2 restart(s)"},
		{"agent compiling", corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning,
			ContainerStatuses: []corev1.ContainerStatus{{Name: "cilium-agent", State: running}}}},
			"Running, cilium-agent running, not ready"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PodState(tt.pod); got != tt.want {
				t.Errorf("PodState = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestWaitReady: ready when the agents are ready on every node they are scheduled to and the
// operator is available; otherwise the deadline's error says what the pods were doing.
func TestWaitReady(t *testing.T) {
	ds := func(desired, ready int32) *appsv1.DaemonSet {
		return &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: agentDaemonSet, Namespace: namespace},
			Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: desired, NumberReady: ready}}
	}
	dep := func(available int32) *appsv1.Deployment {
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: operatorDeploy, Namespace: namespace},
			Status: appsv1.DeploymentStatus{AvailableReplicas: available}}
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "cilium-x1", Namespace: namespace, Labels: map[string]string{"app.kubernetes.io/part-of": "cilium"}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: "cilium-agent", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}}
	crashed := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "cilium-x2", Namespace: namespace, Labels: map[string]string{"app.kubernetes.io/part-of": "cilium"}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: "cilium-agent", RestartCount: 1,
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 255, Reason: "Error"}}}}}}
	if err := WaitReady(t.Context(), fake.NewClientset(ds(1, 1), dep(1)), nil); err != nil {
		t.Errorf("ready: %v", err)
	}
	for _, c := range []struct {
		name string
		objs []runtime.Object
		want string
	}{
		{"agent compiling", []runtime.Object{ds(1, 0), dep(1), pod}, "agents ready 0/1, operator available 1; cilium-x1 Running, cilium-agent running, not ready"},
		{"operator not available", []runtime.Object{ds(1, 1), dep(0)}, "operator available 0"},
		{"not scheduled", []runtime.Object{ds(0, 0), dep(1)}, "agents ready 0/0"},
		{"no DaemonSet", []runtime.Object{dep(1)}, "the agent's DaemonSet"},
		{"agent exits again and again", []runtime.Object{ds(1, 0), dep(1), crashed}, "keeps exiting"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			err := WaitReady(ctx, fake.NewClientset(c.objs...), nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("WaitReady = %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// TestAgentExec: the command goes to the newest agent container whose task runs, through ctr.
func TestAgentExec(t *testing.T) {
	var calls [][]string
	node := func(_ context.Context, args ...string) ([]byte, error) {
		calls = append(calls, args)
		switch {
		case slices.Contains(args, "containers"):
			return []byte("old\nnew\n"), nil
		case slices.Contains(args, "new"):
			return nil, errors.New("no running task")
		}
		return []byte("OK\n"), nil
	}
	out, err := AgentExec(t.Context(), node, "cilium-dbg", "status", "--brief")
	if err != nil || out != "OK\n" {
		t.Fatalf("AgentExec = %q, %v", out, err)
	}
	last := calls[len(calls)-1]
	if !slices.Contains(last, "old") || !slices.Equal(last[len(last)-3:], []string{"cilium-dbg", "status", "--brief"}) {
		t.Errorf("last call %q", last)
	}
	none := func(context.Context, ...string) ([]byte, error) { return nil, nil }
	if _, err := AgentExec(t.Context(), none, "true"); err == nil || !strings.Contains(err.Error(), "no Cilium agent container") {
		t.Errorf("no container: %v", err)
	}
}
