package verdict

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab/event"
)

func dur(d time.Duration) *time.Duration { return &d }

// base is the evidence of a cell that got as far as backend B being ready.
func base() Evidence {
	return Evidence{
		VIP: "10.96.0.50", OldBackend: "10.0.0.11", NewBackend: "10.0.0.12",
		BaselineIOOK: true, FaultInjected: true, BackendBReady: true, SinceBReady: 12 * time.Second,
	}
}

func TestDecide(t *testing.T) {
	with := func(f func(*Evidence)) Evidence { e := base(); f(&e); return e }
	tests := []struct {
		name    string
		e       Evidence
		final   bool
		verdict Verdict
		isFinal bool
		reason  string // a piece of the reason
	}{
		{"setup error", with(func(e *Evidence) { e.SetupError = "mounted: mount: timed out"; e.BaselineIOOK = false }), false, Failed, true, "setup: mounted: mount: timed out"},
		{"setup error wins over recovery", with(func(e *Evidence) { e.SetupError = "x"; e.FirstIOOKAfter = dur(time.Second) }), true, Failed, true, "setup: x"},
		{"no baseline yet", Evidence{}, false, Inconclusive, false, "baseline"},
		{"no baseline, final", Evidence{}, true, Failed, true, "no baseline"},
		{"no baseline, fault injected", Evidence{FaultInjected: true}, false, Failed, true, "no baseline"},
		{"fault not injected yet", Evidence{BaselineIOOK: true}, false, Inconclusive, false, "waiting for the fault"},
		{"fault never injected", Evidence{BaselineIOOK: true}, true, Inconclusive, true, "never injected"},
		{"B not ready yet", Evidence{BaselineIOOK: true, FaultInjected: true}, false, Inconclusive, false, "waiting for backend B"},
		{"B never ready", Evidence{BaselineIOOK: true, FaultInjected: true, FailoverError: "backend-b-ready: ganesha exited"}, true, Inconclusive, true, "backend B never became ready: backend-b-ready: ganesha exited"},
		{"B never ready, deadline", Evidence{BaselineIOOK: true, FaultInjected: true, DeadlinePassed: true}, false, Inconclusive, true, "never became ready"},
		{"recovered", with(func(e *Evidence) { e.FirstIOOKAfter = dur(870 * time.Millisecond) }), false, Recovered, true, "I/O recovered 0.87s after backend B became ready"},
		{"recovered after a stuck probe", with(func(e *Evidence) {
			e.ProbeStuck = true
			e.ReconnectTargets = []string{"10.0.0.11"}
			e.FirstIOOKAfter = dur(7 * time.Second)
		}), true, Recovered, true, "7.00s"},
		{"bug, early", with(func(e *Evidence) {
			e.ProbeStuck = true
			e.ReconnectTargets = []string{"10.0.0.11"}
			e.AskedOld = []string{"kprobe:kernel_connect was handed 10.0.0.11:2049"}
		}), false, BugReproduced, true, "the kernel client asked for the old backend 10.0.0.11: kprobe:kernel_connect was handed 10.0.0.11:2049"},
		{"bug stands when an instrument failed", with(func(e *Evidence) {
			e.ProbeStuck = true
			e.AskedOld = []string{"a"}
			e.InstrumentFailures = []string{"sockets: EIO"}
		}), true, BugReproduced, true, "the kernel client asked"},
		{"stuck, old backend only by a load balancer's rewrite, wait", with(func(e *Evidence) { e.ProbeStuck = true; e.ReconnectTargets = []string{"10.0.0.11"} }), false, Inconclusive, false, "waiting"},
		{"stuck, old backend only by a load balancer's rewrite, final", with(func(e *Evidence) { e.ProbeStuck = true; e.ReconnectTargets = []string{"10.96.0.50", "10.0.0.11"} }), true, Failed, true,
			"reconnects went to 10.96.0.50, 10.0.0.11, none of them the kernel client asking for the old backend"},
		{"stuck, an instrument failed", with(func(e *Evidence) {
			e.ProbeStuck = true
			e.InstrumentFailures = []string{"kprobe:kernel_connect: lost 3 records"}
		}), true, Inconclusive, true,
			"an instrument failed (kprobe:kernel_connect: lost 3 records)"},
		{"stuck, reconnects elsewhere, wait", with(func(e *Evidence) { e.ProbeStuck = true; e.ReconnectTargets = []string{"10.0.0.12"} }), false, Inconclusive, false, "waiting"},
		{"stuck, reconnects elsewhere, final", with(func(e *Evidence) { e.ProbeStuck = true; e.ReconnectTargets = []string{"10.0.0.12"} }), true, Failed, true, "reconnects went to 10.0.0.12, none of them"},
		{"stuck, no reconnect, final", with(func(e *Evidence) { e.ProbeStuck = true }), true, Failed, true, "no reconnect seen"},
		{"stuck, deadline passed", with(func(e *Evidence) { e.ProbeStuck = true; e.DeadlinePassed = true }), false, Failed, true, "I/O stuck 12.00s"},
		{"errors, wait", with(func(e *Evidence) { e.ProbeErrors = 3 }), false, Inconclusive, false, "failing"},
		{"soft mount: errors and the kernel client asked for the old backend", with(func(e *Evidence) {
			e.ProbeErrors = 2
			e.AskedOld = []string{"kprobe:kernel_connect was handed 10.0.0.11:2049"}
		}), false, BugReproduced, true, "I/O failed with an error 2 times after backend B became ready; the kernel client asked for the old backend 10.0.0.11"},
		{"soft mount: errors, then a good read-back", with(func(e *Evidence) {
			e.ProbeErrors = 2
			e.AskedOld = []string{"x"}
			e.FirstIOOKAfter = dur(3 * time.Second)
		}), true, Recovered, true, "3.00s"},
		{"errors until the deadline", with(func(e *Evidence) { e.ProbeErrors = 3; e.DeadlinePassed = true }), false, Failed, true, "failed with an error 3 times"},
		{"errors, final", with(func(e *Evidence) { e.ProbeErrors = 1 }), true, Failed, true, "1 times"},
		{"errors, an instrument failed, final: inconclusive, the instrument named", with(func(e *Evidence) {
			e.ProbeErrors = 2
			e.InstrumentFailures = []string{"kprobe:kernel_connect: unavailable: no kprobes"}
		}), true, Inconclusive, true, "an instrument failed (kprobe:kernel_connect: unavailable: no kprobes)"},
		{"errors until the deadline, an instrument lost records: inconclusive", with(func(e *Evidence) {
			e.ProbeErrors = 3
			e.DeadlinePassed = true
			e.InstrumentFailures = []string{"socket-lb:hook-events: lost 9 records"}
		}), false, Inconclusive, true, "lost 9 records"},
		{"nothing yet", base(), false, Inconclusive, false, "waiting for I/O"},
		{"nothing, final", base(), true, Inconclusive, true, "no I/O probe finished"},
		{"old backend unknown", with(func(e *Evidence) { e.OldBackend = ""; e.ProbeStuck = true; e.ReconnectTargets = []string{""} }), true, Failed, true, "I/O stuck"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(tt.e, tt.final)
			if d.Verdict != tt.verdict || d.Final != tt.isFinal || !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("Decide = %+v, want %s final=%v with reason containing %q", d, tt.verdict, tt.isFinal, tt.reason)
			}
			if strings.Contains(d.Reason, "\n") || d.Reason == "" {
				t.Errorf("reason %q is not one line", d.Reason)
			}
		})
	}
}

// timeline builds a cell's events; times are in seconds.
type timeline []event.Event

func (tl timeline) step(sec float64, s event.Step) timeline {
	return append(slices.Clip(tl), event.Event{Mono: mono(sec), Kind: event.KindStep, Step: s})
}

func (tl timeline) err(sec float64, s event.Step, msg string) timeline {
	return append(slices.Clip(tl), event.Event{Mono: mono(sec), Kind: event.KindError, Step: s, Msg: msg})
}

func (tl timeline) obs(sec float64, e event.Event) timeline {
	e.Mono, e.Kind = mono(sec), event.KindObserve
	return append(slices.Clip(tl), e)
}

func (tl timeline) probe(sec, took float64, ok, stuck bool) timeline {
	p := &event.ProbeObs{OK: ok, Stuck: stuck, Seconds: took, StartNS: mono(sec - took)}
	if !stuck {
		p.FinishNS = mono(sec)
	}
	if !ok && !stuck {
		p.Error = "EIO"
	}
	return tl.obs(sec, event.Event{Probe: p})
}

func (tl timeline) sockets(sec float64, ss ...event.Socket) timeline {
	return tl.obs(sec, event.Event{Sockets: &event.SocketsObs{Sockets: ss}})
}

func mono(sec float64) event.Mono { return event.Mono(sec * 1e9) }

// svc records what the cluster handed the datapath: the service's endpoints.
func (tl timeline) svc(sec float64, endpoints ...string) timeline {
	return tl.obs(sec, event.Event{Service: &event.ServiceObs{Name: "nfslab/nfs", VIP: "10.96.0.50", Ports: []string{"2049/tcp"}, Endpoints: endpoints, Datapath: true}})
}

// service records the cluster's view of the service: read back from the datapath, or watched.
func (tl timeline) service(sec float64, vip string, datapath bool, endpoints ...string) timeline {
	return tl.obs(sec, event.Event{Service: &event.ServiceObs{Name: "ns/nfs", VIP: vip, Ports: []string{"2049/tcp"}, Endpoints: endpoints, Datapath: datapath}})
}

// snap is a socket snapshot whose previous snapshot was taken at since.
func (tl timeline) snap(sec, since float64, ss ...event.Socket) timeline {
	return tl.obs(sec, event.Event{Sockets: &event.SocketsObs{Sockets: ss, SinceNS: mono(since)}})
}

// failover is the fault, the endpoint removed and backend B ready at bReady.
func (tl timeline) failover(bReady float64) timeline {
	return tl.step(6, event.StepFaultInjected).svc(6.1).svc(bReady-0.01, "10.0.0.12").step(bReady, event.StepBackendBReady)
}

// setup is a cell up to the fault; A's connection (socket-LB: peer is A's IP) is open.
func setup() timeline {
	return timeline{}.
		step(1, event.StepTopology).
		step(2, event.StepDatapath).
		step(3, event.StepBackendServing).
		svc(3.4, "10.0.0.11").
		step(3.5, event.StepServicePointed).
		step(4, event.StepMounted).
		sockets(4.1, event.Socket{Local: "10.0.0.1:801", Remote: "10.0.0.11:2049", State: "ESTAB"}).
		obs(4.2, event.Event{Hook: &event.HookObs{Rewrites: 1}}).
		step(5, event.StepBaselineIO)
}

const nfsPort = 2049

func TestCollect(t *testing.T) {
	// The service as setup() and failover() publish it.
	const vip, a, b = "10.96.0.50", "10.0.0.11", "10.0.0.12"
	kprobe := func(in string) event.Event {
		return event.Event{Connect: &event.ConnectObs{Source: "kprobe:kernel_connect", Input: in, Kernel: true, Comm: "kworker/u4:2"}}
	}
	tests := []struct {
		name    string
		events  timeline
		want    Evidence
		verdict Verdict
	}{
		{
			name: "recovered on a fixed kernel; the old connection lingers and is no reconnect",
			events: setup().
				step(6, event.StepFaultInjected).
				sockets(6.5, event.Socket{Local: "10.0.0.1:801", Remote: "10.0.0.11:2049", State: "ESTAB"}).
				svc(6.6).svc(7.99, "10.0.0.12").
				step(8, event.StepBackendBReady).
				probe(8.4, 0.3, false, false). // an error probe that started before the fault settled
				probe(8.87, 0.4, true, false).
				sockets(9, event.Socket{Local: "10.0.0.1:802", Remote: "10.0.0.12:2049", State: "ESTAB"}).
				step(9.5, event.StepIORecovered),
			want: Evidence{VIP: vip, OldBackend: a, NewBackend: b, BaselineIOOK: true, FaultInjected: true, BackendBReady: true, SinceBReady: 1500 * time.Millisecond,
				FirstIOOKAfter: dur(870 * time.Millisecond), ProbeErrors: 1, ReconnectTargets: []string{"10.0.0.12"}},
			verdict: Recovered,
		},
		{
			name: "bug on a vulnerable kernel with socket-LB",
			events: setup().
				failover(8).
				obs(9, event.Event{Hook: &event.HookObs{Rewrites: 1, NonVIP: 1, LastNonVIPDest: "10.0.0.11:2049"}}).
				sockets(10, event.Socket{Local: "10.0.0.1:803", Remote: "10.0.0.11:2049", State: "SYN-SENT"},
					event.Socket{Local: "10.0.0.1:804", Remote: "10.0.0.99:22", State: "SYN-SENT"}).
				obs(11, kprobe("10.0.0.11:2049")).
				probe(13, 5, false, true).
				step(13, event.StepIOStuck),
			want: Evidence{VIP: vip, OldBackend: a, NewBackend: b, BaselineIOOK: true, FaultInjected: true, BackendBReady: true, SinceBReady: 5 * time.Second,
				ProbeStuck: true, ReconnectTargets: []string{"10.0.0.11"},
				AskedOld: []string{"kprobe:kernel_connect was handed 10.0.0.11:2049 by the kernel (kworker/u4:2)"}},
			verdict: BugReproduced,
		},
		{
			name: "stuck, reconnects to the VIP until the deadline",
			events: setup().
				failover(8).
				sockets(9, event.Socket{Local: "10.0.0.1:803", Remote: "10.96.0.50:2049", State: "SYN_SENT"}).
				probe(13, 5, false, true).
				obs(20, event.Event{Hook: &event.HookObs{Rewrites: 3}}).
				step(68, event.StepDeadline),
			want: Evidence{VIP: vip, OldBackend: a, NewBackend: b, BaselineIOOK: true, FaultInjected: true, BackendBReady: true, SinceBReady: 60 * time.Second,
				ProbeStuck: true, DeadlinePassed: true, ReconnectTargets: []string{"10.96.0.50"}},
			verdict: Failed,
		},
		{
			name:    "setup error",
			events:  timeline{}.step(1, event.StepTopology).err(2, event.StepMounted, "mount: connection refused"),
			want:    Evidence{SetupError: "mounted: mount: connection refused", SetupStep: event.StepMounted},
			verdict: Failed,
		},
		{
			name: "backend B fails to start",
			events: setup().
				step(6, event.StepFaultInjected).
				err(7, event.StepBackendBReady, "ganesha exited with status 2"),
			want:    Evidence{VIP: vip, OldBackend: a, BaselineIOOK: true, FaultInjected: true, FailoverError: "backend-b-ready: ganesha exited with status 2", FailoverStep: event.StepBackendBReady},
			verdict: Inconclusive,
		},
		{
			name: "the hook's non-VIP counter is a reconnect target, never evidence; before the fault it is nothing; a reload resets it",
			events: setup().
				obs(5.5, event.Event{Hook: &event.HookObs{NonVIP: 4, LastNonVIPDest: "10.0.0.77"}}).
				step(6, event.StepFaultInjected).
				obs(6.5, event.Event{Hook: &event.HookObs{NonVIP: 4, LastNonVIPDest: "10.0.0.77"}}).
				obs(7, event.Event{Hook: &event.HookObs{NonVIP: 0}}).
				obs(7.5, event.Event{Hook: &event.HookObs{NonVIP: 2, LastNonVIPDest: "10.0.0.11"}}).
				step(8, event.StepBackendBReady),
			want:    Evidence{VIP: vip, OldBackend: a, BaselineIOOK: true, FaultInjected: true, BackendBReady: true, ReconnectTargets: []string{"10.0.0.11"}},
			verdict: Inconclusive,
		},
		{
			name: "explicit phases win over order; connects to other ports and processes' own connects are ignored",
			events: setup().
				obs(5.8, event.Event{Phase: event.PhaseAfter, Connect: &event.ConnectObs{Source: "socket-lb:connect4", Input: "[::ffff:10.0.0.11]:2049", Kernel: true}}).
				step(6, event.StepFaultInjected).
				obs(6.1, event.Event{Phase: event.PhaseBefore, Connect: &event.ConnectObs{Input: "10.0.0.66:2049", Kernel: true}}).
				obs(6.2, event.Event{Connect: &event.ConnectObs{Input: "10.0.0.12:111", Kernel: true}}).
				obs(6.3, event.Event{Connect: &event.ConnectObs{Input: "10.96.0.50", Kernel: true}}).
				obs(6.4, event.Event{Connect: &event.ConnectObs{Input: "garbage", Kernel: true}}).
				obs(6.5, event.Event{Connect: &event.ConnectObs{Source: "socket-lb:connect4", Input: "10.0.0.55:2049", PID: 812, Comm: "curl"}}),
			want: Evidence{VIP: vip, OldBackend: a, BaselineIOOK: true, FaultInjected: true, ReconnectTargets: []string{"10.0.0.11", "10.96.0.50"},
				AskedOld: []string{"socket-lb:connect4 was handed [::ffff:10.0.0.11]:2049 by the kernel"}},
			verdict: Inconclusive,
		},
		{
			name: "probes before backend B is ready do not count",
			events: setup().
				step(6, event.StepFaultInjected).
				probe(6.5, 0.1, true, false).
				probe(7.5, 0.1, false, false).
				svc(7.9, "10.0.0.12").
				step(8, event.StepBackendBReady).
				step(9, event.StepIORecovered),
			want: Evidence{VIP: vip, OldBackend: a, NewBackend: b, BaselineIOOK: true, FaultInjected: true, BackendBReady: true, SinceBReady: time.Second,
				FirstIOOKAfter: dur(time.Second)},
			verdict: Recovered,
		},
		{
			name: "a cluster's own addresses: the VIP and backends come from its records, watched and read back",
			events: timeline{}.
				step(1, event.StepTopology).
				service(2, "10.96.201.4", false, "10.244.1.7").
				service(2.5, "10.96.201.4", true, "10.244.1.7").
				step(3, event.StepMounted).
				step(4, event.StepBaselineIO).
				step(5, event.StepFaultInjected).
				service(6, "10.96.201.4", false).
				service(9, "10.244.2.3", false, "10.244.2.3"). // a later record's VIP does not replace the first
				service(9.5, "10.96.201.4", true, "10.244.2.3").
				step(10, event.StepBackendBReady).
				obs(11, kprobe("10.244.1.7:2049")).
				probe(16, 6, false, true),
			want: Evidence{VIP: "10.96.201.4", OldBackend: "10.244.1.7", NewBackend: "10.244.2.3", BaselineIOOK: true, FaultInjected: true, BackendBReady: true,
				SinceBReady: 6 * time.Second, ProbeStuck: true, ReconnectTargets: []string{"10.244.1.7"},
				AskedOld: []string{"kprobe:kernel_connect was handed 10.244.1.7:2049 by the kernel (kworker/u4:2)"}},
			verdict: BugReproduced,
		},
		{
			name:    "empty timeline",
			events:  nil,
			want:    Evidence{},
			verdict: Failed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Collect(nfsPort, tt.events)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Collect\ngot  %+v\nwant %+v", got, tt.want)
				if got.FirstIOOKAfter != nil {
					t.Logf("FirstIOOKAfter %v", *got.FirstIOOKAfter)
				}
			}
			if d := Decide(got, true); d.Verdict != tt.verdict {
				t.Errorf("Decide(final) = %+v, want %s", d, tt.verdict)
			}
		})
	}
}

func TestSplitHostPort(t *testing.T) {
	tests := []struct {
		in   string
		ip   string
		port int
		ok   bool
	}{
		{"10.0.0.11:2049", "10.0.0.11", 2049, true},
		{"10.0.0.11", "10.0.0.11", 0, true},
		{"[::ffff:10.0.0.11]:2049", "10.0.0.11", 2049, true},
		{"[fd00::1]:2049", "fd00::1", 2049, true},
		{"host:2049", "", 0, false},
		{"", "", 0, false},
	}
	for _, tt := range tests {
		ip, port, ok := splitHostPort(tt.in)
		if ip != tt.ip || port != tt.port || ok != tt.ok {
			t.Errorf("splitHostPort(%q) = %q %d %v", tt.in, ip, port, ok)
		}
	}
}

func TestVerdictValid(t *testing.T) {
	for _, v := range All() {
		if !v.Valid() {
			t.Errorf("%s not valid", v)
		}
	}
	if Verdict("ok").Valid() || Verdict("").Valid() {
		t.Error("bogus verdict valid")
	}
}

// BenchmarkCollectDecide is the agent's per-tick cost of the early verdict: a cell stuck for a
// minute, sampled every 200 ms (300 socket snapshots), collected and decided from scratch.
func BenchmarkCollectDecide(b *testing.B) {
	tl := setup().failover(7)
	for i := range 300 {
		sec := 7.2 + float64(i)*0.2
		local := fmt.Sprintf("10.0.0.1:%d", 700+i) // SUNRPC binds a new port for each try
		tl = tl.snap(sec, sec-0.2, event.Socket{Local: local, Remote: "10.0.0.11:2049", State: "SYN-SENT"})
	}
	tl = tl.probe(67, 60, false, true)
	for b.Loop() {
		d := Decide(Collect(nfsPort, tl), false)
		if d.Verdict != BugReproduced {
			b.Fatalf("verdict %s, want %s", d.Verdict, BugReproduced)
		}
	}
}

// TestAskedOld is the bug's signature: SUNRPC itself asked for the old backend. A connect to
// the old backend that a load balancer made from the VIP while its endpoint was stale is not.
func TestAskedOld(t *testing.T) {
	a := event.Socket{Local: "10.0.0.1:700", Remote: "10.0.0.11:2049", State: "SYN-SENT"}
	a2 := event.Socket{Local: "10.0.0.1:701", Remote: "10.0.0.11:2049", State: "SYN-SENT"}
	// staleThenB: on a fixed kernel the socket-LB rewrites the VIP to the dead backend while
	// the endpoint is stale (6 → 16 s); B is ready at 17 s; SUNRPC's backoff keeps the in-flight
	// probe stuck past the probe deadline (22 s); then it reconnects through the VIP to B.
	staleThenB := setup().
		step(6, event.StepFaultInjected).
		obs(6.5, event.Event{Connect: &event.ConnectObs{Source: "kprobe:kernel_connect", Input: "10.96.0.50:2049", Kernel: true}}).
		obs(6.5, event.Event{Connect: &event.ConnectObs{Source: "socket-lb:connect4", Input: "10.96.0.50:2049", Output: "10.0.0.11:2049", Action: "rewrite", Kernel: true}}).
		snap(6.6, 6.4, a).
		step(16, event.StepStaleEndpoint).
		svc(16.1).
		svc(17, "10.0.0.12").
		step(17, event.StepBackendBReady).
		snap(17.2, 17.0, a). // the same SYN, still retransmitting: not new
		probe(22.2, 16, false, true).
		step(22.2, event.StepIOStuck)
	recovered := staleThenB.
		obs(25, event.Event{Connect: &event.ConnectObs{Source: "kprobe:kernel_connect", Input: "10.96.0.50:2049", Kernel: true}}).
		obs(25, event.Event{Connect: &event.ConnectObs{Source: "socket-lb:connect4", Input: "10.96.0.50:2049", Output: "10.0.0.12:2049", Action: "rewrite", Kernel: true}}).
		probe(25.5, 19.3, true, false)

	tests := []struct {
		name    string
		events  timeline
		final   bool
		asked   []string
		verdict Verdict
		isFinal bool
	}{
		{"stale endpoint, stuck past the probe deadline: not the bug, wait", staleThenB, false, nil, Inconclusive, false},
		{"stale endpoint, then recovered", recovered, true, nil, Recovered, true},
		{"stale endpoint, never recovered: failed, not the bug", staleThenB.step(80, event.StepDeadline), false, nil, Failed, true},
		{"a new socket to the old backend after the datapath pointed at B",
			staleThenB.snap(23, 22.8, a, a2), false,
			[]string{"a new kernel socket to 10.0.0.11:2049 after the datapath pointed at 10.0.0.12"}, BugReproduced, true},
		{"a new socket first seen in a snapshot whose predecessor predates B: ambiguous, not counted",
			setup().step(6, event.StepFaultInjected).svc(6.1).svc(8, "10.0.0.12").step(8, event.StepBackendBReady).
				snap(8.1, 7.9, a).probe(14, 6, false, true), true, nil, Failed, true},
		{"the hook's input on a kernel socket was the old backend",
			staleThenB.obs(23, event.Event{Connect: &event.ConnectObs{Source: "socket-lb:connect4", Input: "10.0.0.11:2049", Action: "non-vip", Kernel: true, PID: 97, Comm: "kworker/u4:2"}}), false,
			[]string{"socket-lb:connect4 was handed 10.0.0.11:2049 by the kernel (kworker/u4:2)"}, BugReproduced, true},
		{"a process's own connect to the old backend, and the hook's counter growing with it, are not the kernel client asking",
			staleThenB.
				obs(23, event.Event{Connect: &event.ConnectObs{Source: "socket-lb:connect4", Input: "10.0.0.11:2049", Action: "non-vip", PID: 812, Comm: "curl"}}).
				obs(23.1, event.Event{Hook: &event.HookObs{Rewrites: 2, NonVIP: 1, LastNonVIPDest: "10.0.0.11:2049"}}).
				step(80, event.StepDeadline), true,
			nil, Failed, true},
		{"watched EndpointSlice updates only: no read-back of the datapath, so no socket is evidence",
			timeline{}.service(3, "10.96.0.50", false, "10.0.0.11").step(4, event.StepMounted).step(5, event.StepBaselineIO).
				step(6, event.StepFaultInjected).
				service(6.1, "10.96.0.50", false).service(8, "10.96.0.50", false, "10.0.0.12").step(8.5, event.StepBackendBReady).
				snap(20, 19.8, a).snap(21, 20.8, a, a2).probe(22, 13, false, true).step(90, event.StepDeadline), true,
			nil, Failed, true},
		{"restarted in place without the endpoint seen to leave: the old address serves again, nothing aimed at it is evidence",
			setup().step(6, event.StepFaultInjected).
				obs(7, event.Event{Connect: &event.ConnectObs{Source: "kprobe:kernel_connect", Input: "10.0.0.11:2049", Kernel: true}}).
				obs(8.9, event.Event{Backend: &event.BackendObs{Name: "nfs-0", IP: "10.0.0.11", State: event.BackendServing}}).
				svc(9, "10.0.0.11").step(9, event.StepBackendBReady).
				snap(12, 11.8, a).probe(15, 6, false, true).step(90, event.StepDeadline), true,
			nil, Failed, true},
		{"the backend kept its IP (its container restarted in place): asking for it is no sign of the bug",
			setup().step(6, event.StepFaultInjected).svc(6.1).svc(9, "10.0.0.11").step(9, event.StepBackendBReady).
				obs(9.5, event.Event{Connect: &event.ConnectObs{Source: "socket-lb:connect4", Input: "10.0.0.11:2049", Action: "non-vip"}}).
				probe(10, 9.6, true, false), true, nil, Recovered, true},
		{"an instrument failed and I/O is stuck: inconclusive",
			staleThenB.obs(18, event.Event{Instr: &event.InstrumentObs{Name: "kprobe:kernel_connect", Lost: 7}}).step(80, event.StepDeadline), true,
			nil, Inconclusive, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := Collect(nfsPort, tt.events)
			if !reflect.DeepEqual(e.AskedOld, tt.asked) {
				t.Errorf("AskedOld = %q, want %q", e.AskedOld, tt.asked)
			}
			if d := Decide(e, tt.final); d.Verdict != tt.verdict || d.Final != tt.isFinal {
				t.Errorf("Decide = %+v, want %s final=%v", d, tt.verdict, tt.isFinal)
			}
		})
	}
}

// TestServiceFacts: the VIP and backends come from the cluster's records, and the moment the
// datapath was told wins over a watched EndpointSlice update.
func TestServiceFacts(t *testing.T) {
	watched := func(sec float64, eps ...string) event.Event {
		return event.Event{Mono: mono(sec), Kind: event.KindObserve, Service: &event.ServiceObs{VIP: "10.96.7.7", Endpoints: eps}}
	}
	told := func(sec float64, eps ...string) event.Event {
		e := watched(sec, eps...)
		e.Service.Datapath = true
		return e
	}
	fault := event.Event{Mono: mono(5), Kind: event.KindStep, Step: event.StepFaultInjected}
	tests := []struct {
		name   string
		events []event.Event
		want   serviceFacts
	}{
		{"watched only", []event.Event{watched(1, "10.244.0.5"), fault, watched(6), watched(9, "10.244.0.9", "10.244.0.5")},
			serviceFacts{vip: "10.96.7.7", old: "10.244.0.5"}},
		{"watched only, replacement: the datapath was never read back pointing at it", []event.Event{watched(1, "10.244.0.5"), fault, watched(6), watched(9, "10.244.0.9")},
			serviceFacts{vip: "10.96.7.7", old: "10.244.0.5", new: "10.244.0.9"}},
		{"restarted in place: the old address, back alone after leaving", []event.Event{watched(1, "10.244.0.5"), fault, watched(6), watched(9, "10.244.0.5")},
			serviceFacts{vip: "10.96.7.7", old: "10.244.0.5", new: "10.244.0.5", oldServesAgain: true}},
		{"restarted in place, the endpoint never seen to leave: the backend serving again says so", []event.Event{told(1, "10.244.0.5"), fault,
			{Mono: mono(8), Kind: event.KindObserve, Backend: &event.BackendObs{Name: "nfs-0", IP: "10.244.0.5", State: event.BackendServing}}, told(9, "10.244.0.5")},
			serviceFacts{vip: "10.96.7.7", old: "10.244.0.5", oldServesAgain: true}},
		{"the datapath's record wins", []event.Event{watched(1, "10.244.0.5"), told(1.5, "10.244.0.5"), fault, watched(9, "10.244.0.9"), told(11, "10.244.0.9")},
			serviceFacts{vip: "10.96.7.7", old: "10.244.0.5", new: "10.244.0.9", pointedNew: mono(11)}},
		{"none", []event.Event{fault}, serviceFacts{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := services(tt.events); got != tt.want {
				t.Errorf("services = %+v, want %+v", got, tt.want)
			}
		})
	}
}
