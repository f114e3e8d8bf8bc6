package demo

import (
	"testing"

	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/tty"
)

func TestDescribe(t *testing.T) {
	obs := func(e event.Event) event.Event { e.Kind = event.KindObserve; return e }
	tests := []struct {
		name  string
		ev    event.Event
		want  string // "" when the event is not shown
		color string
	}{
		{"step", event.Event{Kind: event.KindStep, Step: event.StepFaultInjected, Msg: "delete-pod: pod c0-pod-a (10.0.0.11) is gone"},
			"fault-injected: delete-pod: pod c0-pod-a (10.0.0.11) is gone", tty.Cyan},
		{"failed step", event.Event{Kind: event.KindError, Step: event.StepMounted, Msg: "mount: timed out"},
			"FAILED mounted: mount: timed out", tty.Red},
		{"agent error", event.Event{Kind: event.KindError, Msg: "no virtio port"}, "agent error: no virtio port", tty.Red},
		{"bye", event.Event{Kind: event.KindBye, Msg: "demo done"}, "agent done: demo done", ""},
		{"hello is not shown", event.Event{Kind: event.KindHello, Hello: &event.Hello{}}, "", ""},
		{"the agent's verdict is not shown (the host judges)", event.Event{Kind: event.KindCellDone, Verdict: &event.VerdictRecord{Verdict: "recovered"}}, "", ""},
		{"kernel_connect", obs(event.Event{Connect: &event.ConnectObs{Source: "kprobe:kernel_connect", Input: "10.0.0.11:2049", Comm: "kworker/u4:1"}}),
			"kernel_connect handed 10.0.0.11:2049 (kworker/u4:1)", tty.Yellow},
		{"kernel_connect without a task", obs(event.Event{Connect: &event.ConnectObs{Source: "kprobe:kernel_connect", Input: "10.96.0.50:2049"}}),
			"kernel_connect handed 10.96.0.50:2049", tty.Yellow},
		{"hook rewrite", obs(event.Event{Connect: &event.ConnectObs{Source: "socket-lb:connect4", Input: "10.96.0.50:2049", Output: "10.0.0.12:2049", Action: "rewrite"}}),
			"socket-LB hook rewrote 10.96.0.50:2049 → 10.0.0.12:2049", tty.Yellow},
		{"hook refuse", obs(event.Event{Connect: &event.ConnectObs{Source: "socket-lb:connect4", Input: "10.96.0.50:2049", Action: "refuse"}}),
			"socket-LB hook refused 10.96.0.50:2049: the service has no endpoint", tty.Yellow},
		{"hook handed a pod address (the bug)", obs(event.Event{Connect: &event.ConnectObs{Source: "socket-lb:connect4", Input: "10.0.0.11:2049", Action: "non-vip"}}),
			"socket-LB hook was handed 10.0.0.11:2049, not a service address", tty.Yellow},
		{"sendmsg hook", obs(event.Event{Connect: &event.ConnectObs{Source: "socket-lb:sendmsg4", Input: "10.96.0.50:2049", Output: "10.0.0.11:2049", Action: "rewrite"}}),
			"socket-LB sendmsg4 hook rewrote 10.96.0.50:2049 → 10.0.0.11:2049", tty.Yellow},
		{"hook pass-through", obs(event.Event{Connect: &event.ConnectObs{Source: "socket-lb:connect4", Input: "10.0.0.1:111", Action: "pass-through"}}),
			"socket-LB hook let 10.0.0.1:111 through", tty.Yellow},
		{"service", obs(event.Event{Service: &event.ServiceObs{VIP: "10.96.0.50", Endpoints: []string{"10.0.0.12"}}}), "service 10.96.0.50 → 10.0.0.12", ""},
		{"service without endpoint", obs(event.Event{Service: &event.ServiceObs{VIP: "10.96.0.50"}}), "service 10.96.0.50 → no endpoint", ""},
		{"pod", obs(event.Event{Backend: &event.BackendObs{Name: "c0-pod-a", IP: "10.0.0.11", State: event.BackendKilled}}), "pod c0-pod-a (10.0.0.11) killed", ""},
		{"kernel sockets", obs(event.Event{Sockets: &event.SocketsObs{Sockets: []event.Socket{
			{Local: "10.0.0.1:815", Remote: "10.0.0.11:2049", State: "ESTABLISHED", Kernel: true},
			{Local: "10.0.0.1:40000", Remote: "10.0.0.11:2049", State: "ESTABLISHED"},
			{Local: "10.0.0.1:816", Remote: "10.0.0.11:2049", State: "SYN-SENT", Kernel: true},
		}}}), "kernel sockets to the server: 10.0.0.1:815 → 10.0.0.11:2049 ESTABLISHED; 10.0.0.1:816 → 10.0.0.11:2049 SYN-SENT", ""},
		{"no kernel socket", obs(event.Event{Sockets: &event.SocketsObs{}}), "kernel sockets to the server: none", ""},
		{"baseline", obs(event.Event{Probe: &event.ProbeObs{Seq: 0, OK: true, Seconds: 0.321}}), "baseline I/O ok (write+fsync+read in 0.32 s)", tty.Green},
		{"stuck probe", obs(event.Event{Probe: &event.ProbeObs{Seq: 2, Stuck: true, Seconds: 10.04}}), "I/O probe 2 stuck for 10.0 s", tty.Red},
		{"failed probe", obs(event.Event{Probe: &event.ProbeObs{Seq: 3, Error: "EIO", Seconds: 1}}), "I/O probe 3 failed after 1.0 s: EIO", tty.Red},
		{"kernel log", obs(event.Event{Kernel: &event.KernelLogObs{Line: "nfs: server 10.96.0.50 not responding, still trying"}}),
			"kernel: nfs: server 10.96.0.50 not responding, still trying", ""},
		{"mount", obs(event.Event{Mount: &event.MountObs{Source: "10.96.0.50:/export", FSType: "nfs4", Addr: "10.96.0.50"}}),
			"/proc/mounts: 10.96.0.50:/export type nfs4, addr=10.96.0.50", ""},
		{"hook counters", obs(event.Event{Hook: &event.HookObs{Rewrites: 2, Refused: 1, NonVIP: 3, LastNonVIPDest: "10.0.0.11:2049"}}),
			"socket-LB counters: 2 rewritten, 1 refused, 3 to a non-VIP address (last 10.0.0.11:2049)", ""},
		{"instrument failed", obs(event.Event{Instr: &event.InstrumentObs{Name: "sockets", Error: "EIO"}}), "instrument sockets failed: EIO", tty.Red},
		{"instrument lost records", obs(event.Event{Instr: &event.InstrumentObs{Name: "kprobe:kernel_connect", Lost: 4}}), "instrument kprobe:kernel_connect lost 4 records", tty.Red},
		{"connect records past the cap", obs(event.Event{Instr: &event.InstrumentObs{Name: "connect-records", Error: "past the cap of 300 connect records per cell", Lost: 7}}),
			"instrument connect-records lost 7 records: past the cap of 300 connect records per cell", tty.Red},
		{"the window is in its step", obs(event.Event{Window: &event.WindowObs{Seconds: 5}}), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, ok := Describe(tt.ev)
			if ok != (tt.want != "") {
				t.Fatalf("shown %v, want %v (%q)", ok, tt.want != "", l.Text)
			}
			if l.Text != tt.want || l.Color != tt.color {
				t.Errorf("got %q in %q, want %q in %q", l.Text, l.Color, tt.want, tt.color)
			}
		})
	}
}
