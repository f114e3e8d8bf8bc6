package fault

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// fakePod records what a fault did to it, in order.
type fakePod struct {
	calls     []string
	killErr   error
	settleErr error
	holeErr   error
}

func (f *fakePod) Kill(context.Context) error { f.calls = append(f.calls, "kill"); return f.killErr }
func (f *fakePod) Settle(context.Context) error {
	f.calls = append(f.calls, "settle")
	return f.settleErr
}
func (f *fakePod) Delete(context.Context) error { f.calls = append(f.calls, "delete"); return nil }
func (f *fakePod) Blackhole(context.Context) error {
	f.calls = append(f.calls, "blackhole")
	return f.holeErr
}

func TestInject(t *testing.T) {
	tests := []struct {
		name      string
		fault     string
		pod       fakePod
		wantCalls string
		wantErr   string
	}{
		{name: "delete-pod waits for the connections to close", fault: DeletePod, wantCalls: "kill settle delete"},
		{name: "abrupt does not wait", fault: DeletePodAbrupt, wantCalls: "kill delete"},
		{name: "settling too long still deletes", fault: DeletePod, pod: fakePod{settleErr: context.DeadlineExceeded}, wantCalls: "kill settle delete"},
		{name: "settle failure stops", fault: DeletePod, pod: fakePod{settleErr: errors.New("no netns")}, wantCalls: "kill settle", wantErr: "no netns"},
		{name: "kill failure stops", fault: DeletePod, pod: fakePod{killErr: errors.New("EPERM")}, wantCalls: "kill", wantErr: "kill: EPERM"},
		{name: "node-crash drops the traffic before the server dies", fault: NodeCrash, wantCalls: "blackhole kill delete"},
		{name: "node-crash: no blackhole, no kill", fault: NodeCrash, pod: fakePod{holeErr: errors.New("no link")}, wantCalls: "blackhole", wantErr: "drop the pod's traffic: no link"},
		{name: "unknown fault", fault: "reboot-node", wantErr: `unknown fault "reboot-node"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := tt.pod
			err := Inject(context.Background(), tt.fault, &pod)
			if got := strings.Join(pod.calls, " "); got != tt.wantCalls {
				t.Errorf("calls %q, want %q", got, tt.wantCalls)
			}
			if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
