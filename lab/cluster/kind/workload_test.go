package kind

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

const testNS = "nfslab-c0"

func pod(name, ip string, ready bool, deleting bool) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, Labels: map[string]string{"app": appLabel}},
		Status:     corev1.PodStatus{PodIP: ip},
	}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}
	if deleting {
		now := metav1.Now()
		p.DeletionTimestamp = &now
	}
	return p
}

// TestWaitReadyPod: the replacement is the first Ready pod not handed out before, or one whose
// server container restarted since it was, or one with a new IP (a new sandbox after its node
// restarted); a terminating or unready pod is never it.
func TestWaitReadyPod(t *testing.T) {
	ip7 := netip.MustParseAddr("10.244.0.7")
	restarted := pod("c", "10.244.0.7", true, false)
	restarted.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: serverContainerName, ContainerID: "containerd://abc", RestartCount: 1}}
	for _, tc := range []struct {
		name string
		pods []*corev1.Pod
		seen map[string]Pod
		want string // "" = none: a timeout
	}{
		{"first ready pod", []*corev1.Pod{pod("a", "10.244.0.5", true, true), pod("b", "10.244.0.6", false, false), pod("c", "10.244.0.7", true, false)}, map[string]Pod{}, "c"},
		{"handed out already", []*corev1.Pod{pod("c", "10.244.0.7", true, false)}, map[string]Pod{"c": {IP: ip7}}, ""},
		{"container restarted in place", []*corev1.Pod{restarted}, map[string]Pod{"c": {IP: ip7}}, "c"},
		{"restart already handed out", []*corev1.Pod{restarted}, map[string]Pod{"c": {IP: ip7, Restarts: 1}}, ""},
		{"new sandbox, restart count kept", []*corev1.Pod{pod("c", "10.244.0.7", true, false)}, map[string]Pod{"c": {IP: netip.MustParseAddr("10.244.0.6")}}, "c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := make([]runtime.Object, len(tc.pods))
			for i, p := range tc.pods {
				objs[i] = p
			}
			w := NewWorkload(fake.NewClientset(objs...), testNS, "img", "conf", "")
			ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
			defer cancel()
			got, err := w.WaitReadyPod(ctx, tc.seen)
			switch {
			case tc.want == "" && err == nil:
				t.Errorf("WaitReadyPod = %+v; want a timeout", got)
			case tc.want != "" && (err != nil || got.Name != tc.want || got.IP != netip.MustParseAddr("10.244.0.7")):
				t.Errorf("WaitReadyPod = %+v, %v; want %s", got, err, tc.want)
			}
		})
	}
}

// TestWaitEndpoints: only ready addresses of the Service's slices count, and the set must match.
func TestWaitEndpoints(t *testing.T) {
	yes, no := true, false
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "nfs-x", Namespace: testNS, Labels: map[string]string{discoveryv1.LabelServiceName: serviceName}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.244.0.7"}, Conditions: discoveryv1.EndpointConditions{Ready: &yes}},
			{Addresses: []string{"10.244.0.5"}, Conditions: discoveryv1.EndpointConditions{Ready: &no}},
		},
	}
	w := NewWorkload(fake.NewClientset(slice), testNS, "img", "conf", "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := w.WaitEndpoints(ctx, []netip.Addr{netip.MustParseAddr("10.244.0.7")}); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel2()
	if err := w.WaitEndpoints(ctx2, nil); err == nil {
		t.Error("WaitEndpoints(none) returned while a ready endpoint is listed")
	}
}

// TestDeploymentPlacement: a workload given a node pins its pods there; without, the scheduler
// chooses.
func TestDeploymentPlacement(t *testing.T) {
	if sel := NewWorkload(nil, testNS, "img", "conf", "nfslab-worker").deployment(2049).Spec.Template.Spec.NodeSelector; sel[corev1.LabelHostname] != "nfslab-worker" || len(sel) != 1 {
		t.Errorf("node selector %v, want the worker", sel)
	}
	if sel := NewWorkload(nil, testNS, "img", "conf", "").deployment(2049).Spec.Template.Spec.NodeSelector; sel != nil {
		t.Errorf("node selector %v without a node", sel)
	}
}

// TestPodStatesLastEvent: a pod that is not ready is described with the newest event about it,
// whichever timestamp its recorder set; a ready pod with nothing more.
func TestPodStatesLastEvent(t *testing.T) {
	at := func(min int) metav1.Time { return metav1.NewTime(time.Date(2026, 12, 6, 21, min, 0, 0, time.UTC)) }
	ev := func(name, reason, msg string, last metav1.Time, micro bool) *corev1.Event {
		e := &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: name, Namespace: testNS},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "nfs-a", Namespace: testNS},
			Reason:         reason, Message: msg,
		}
		if micro {
			e.EventTime = metav1.NewMicroTime(last.Time)
		} else {
			e.LastTimestamp = last
		}
		return e
	}
	tests := []struct {
		name string
		objs []runtime.Object
		want string
	}{
		{"no events", []runtime.Object{pod("nfs-a", "", false, false)}, ""},
		{"newest by last timestamp", []runtime.Object{pod("nfs-a", "", false, false),
			ev("e1", "Scheduled", "assigned", at(1), false),
			ev("e2", "FailedCreatePodSandBox", "plugin type=cilium-cni failed", at(3), false),
			ev("e3", "Pulled", "image present", at(2), true)},
			"(nfs-a, last event: FailedCreatePodSandBox: plugin type=cilium-cni failed)"},
		{"newest by event time", []runtime.Object{pod("nfs-a", "", false, false),
			ev("e1", "Scheduled", "assigned", at(1), false),
			ev("e3", "Pulled", "image present", at(4), true)},
			"(nfs-a, last event: Pulled: image present)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &Workload{c: fake.NewClientset(tt.objs...), namespace: testNS}
			got := w.PodStates(context.Background())
			if tt.want == "" && strings.Contains(got, "last event") || !strings.Contains(got, tt.want) {
				t.Errorf("PodStates = %q, want it to contain %q (no event when empty)", got, tt.want)
			}
		})
	}
	ready := &Workload{c: fake.NewClientset(pod("nfs-a", "10.244.0.5", true, false),
		ev("e1", "Started", "started", at(1), false)), namespace: testNS}
	if got := ready.PodStates(context.Background()); strings.Contains(got, "last event") {
		t.Errorf("a ready pod: PodStates = %q, want no event", got)
	}
}
