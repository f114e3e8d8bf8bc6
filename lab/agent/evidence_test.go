package agent

import (
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/observe/connecttrace"
	"github.com/nfslab/nfslab/lab/verdict"
)

// slowSockets is a node whose socket read takes a while, and says when it began.
type slowSockets struct {
	fakeNode
	began event.Mono
}

func (n *slowSockets) KernelSockets(uint16) ([]event.Socket, error) {
	n.began = now()
	time.Sleep(30 * time.Millisecond)
	return []event.Socket{{Local: "10.0.0.1:700", Remote: "10.244.0.5:2049", State: "SYN-SENT", Kernel: true}}, nil
}

// newTestRun is a cell run against w's fakes whose timeline the test reads.
func newTestRun(w *world, node Node) (*cellRun, *emitter) {
	em := newEmitter(io.Discard, slog.New(slog.NewTextHandler(io.Discard, nil)))
	w.addresses()
	em.beginCell(0)
	r := newCellRun(testCell(), em, slog.New(slog.NewTextHandler(io.Discard, nil)), parts{node: node, datapath: fakeDatapath{w}})
	return r, em
}

// TestSampleStampsTheRead: a sockets record carries the time its read began, not the time it
// was emitted — "after the datapath pointed at B" is decided on it.
func TestSampleStampsTheRead(t *testing.T) {
	w := &world{}
	node := &slowSockets{fakeNode: fakeNode{w}}
	r, em := newTestRun(w, node)
	r.sample()
	i := slices.IndexFunc(em.events(), func(e event.Event) bool { return e.Sockets != nil })
	if i < 0 {
		t.Fatal("no sockets record")
	}
	if got := em.events()[i].Mono; got > node.began {
		t.Errorf("sockets record at %d, %s after its read began (%d)", got, time.Duration(got-node.began), node.began)
	}
}

// TestInstrumentLosses: connect records past the cell's cap, records the tracer lost, and a
// lost count that cannot be read are on the timeline as instrument losses, and a stuck cell
// whose verdict rests on them is inconclusive.
func TestInstrumentLosses(t *testing.T) {
	tests := []struct {
		name    string
		records int
		lost    uint64
		lostErr error
		want    []event.InstrumentObs
		inconcl bool
	}{
		{"nothing lost", maxConnectEvents, 0, nil, nil, false},
		{"past the cap", maxConnectEvents + 7, 0, nil,
			[]event.InstrumentObs{{Name: instrConnects, Error: "past the cap of 300 connect records per cell", Lost: 7}}, true},
		{"the kprobe's ring was full", 3, 12, nil, []event.InstrumentObs{{Name: instrKprobe, Lost: 12}}, true},
		{"the lost count cannot be read", 3, 0, errors.New("EBADF"),
			[]event.InstrumentObs{{Name: instrKprobe, Error: "read the lost-record count: EBADF"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &world{tracerLost: tt.lost, lostErr: tt.lostErr}
			r, em := newTestRun(w, fakeNode{w})
			r.tracer = fakeTracer{w}
			for range tt.records {
				r.emitConnect(now(), &event.ConnectObs{Source: instrKprobe, Input: "10.96.133.7:2049", Kernel: true})
			}
			r.stopTracing()
			var got []event.InstrumentObs
			for _, e := range em.events() {
				if e.Instr != nil {
					got = append(got, *e.Instr)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("instrument records %+v, want %+v", got, tt.want)
			}
			// A cell stuck after B with only these records: its verdict rests on what was lost.
			stuck := timelineStuck()
			stuck = append(stuck, em.events()...)
			d := verdict.Decide(verdict.Collect(2049, stuck), true)
			if (d.Verdict == verdict.Inconclusive) != tt.inconcl {
				t.Errorf("verdict %s (%s); inconclusive wanted: %v", d.Verdict, d.Reason, tt.inconcl)
			}
		})
	}
}

// timelineStuck is a cell whose I/O is stuck after backend B, with nothing else seen.
func timelineStuck() []event.Event {
	obs := func(e event.Event) event.Event { e.Kind = event.KindObserve; return e }
	svc := func(eps ...string) event.Event {
		return obs(event.Event{Service: &event.ServiceObs{VIP: "10.96.133.7", Endpoints: eps, Datapath: true}})
	}
	return []event.Event{
		svc("10.244.0.5"),
		{Kind: event.KindStep, Step: event.StepBaselineIO},
		{Kind: event.KindStep, Step: event.StepFaultInjected, Phase: event.PhaseAfter},
		svc("10.244.0.9"),
		{Kind: event.KindStep, Step: event.StepBackendBReady, Phase: event.PhaseAfter},
		obs(event.Event{Probe: &event.ProbeObs{Stuck: true}, Phase: event.PhaseAfter}),
		{Kind: event.KindStep, Step: event.StepDeadline, Phase: event.PhaseAfter},
	}
}

// TestKprobeSight: a kprobe that was handed none of the mount's connects says it cannot see
// the client's connects; one that saw them says nothing.
func TestKprobeSight(t *testing.T) {
	for _, sees := range []bool{false, true} {
		w := &world{}
		if sees {
			// The mount's connect, already in the tracer's buffer when it is attached.
			w.addresses()
			w.connects <- connecttrace.Connect{Mono: int64(now()), Addr: w.vipPort(), Comm: "kworker/u4:1"}
		}
		events, _ := runCell(t, w, testCell())
		blind := slices.ContainsFunc(events, func(e event.Event) bool {
			return e.Instr != nil && e.Instr.Name == instrKprobe && strings.HasPrefix(e.Instr.Error, "blind:")
		})
		if blind == sees {
			t.Errorf("kprobe handed the mount's connects: %v; blind on the timeline: %v", sees, blind)
		}
	}
}
