package netns

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"testing"

	"github.com/nfslab/nfslab/lab/datapath"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/scenario"
)

// lagging is a datapath that forwards to what it was told a call late: a read-back shows it.
type lagging struct {
	told, holds netip.Addr
	readErr     error
}

func (d *lagging) SetService(_ context.Context, _ netip.Addr, _ []datapath.Port, backend netip.Addr) error {
	d.holds, d.told = d.told, backend
	return nil
}

func (d *lagging) Forwarding(context.Context, netip.Addr, datapath.Port) (netip.Addr, error) {
	return d.holds, d.readErr
}

type pod struct{ addr netip.Addr }

func (p pod) Name() string                        { return "c0-pod-" + p.addr.String() }
func (p pod) Addr() netip.Addr                    { return p.addr }
func (p pod) Fault(context.Context, string) error { return nil }

// TestPublishReadsBack: what Publish records as the datapath's is what the datapath was read
// back forwarding to, not what it was told; without a read, no datapath record.
func TestPublishReadsBack(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.11"), netip.MustParseAddr("10.0.0.12")
	tests := []struct {
		name    string
		readErr error
		want    []event.Event
	}{
		{"read back", nil, []event.Event{
			{Kind: event.KindObserve, Service: &event.ServiceObs{Name: "nfslab/nfs", VIP: "10.96.0.50", Ports: []string{"2049/tcp"}, Datapath: true}},
			{Kind: event.KindObserve, Service: &event.ServiceObs{Name: "nfslab/nfs", VIP: "10.96.0.50", Ports: []string{"2049/tcp"}, Endpoints: []string{"10.0.0.11"}, Datapath: true}},
		}},
		{"the read fails: the cluster's view only, and the failure", errors.New("iptables: EPERM"), []event.Event{
			{Kind: event.KindObserve, Instr: &event.InstrumentObs{Name: datapath.InstrReadBack, Error: "iptables: EPERM"}},
			{Kind: event.KindObserve, Service: &event.ServiceObs{Name: "nfslab/nfs", VIP: "10.96.0.50", Ports: []string{"2049/tcp"}, Endpoints: []string{"10.0.0.11"}}},
			{Kind: event.KindObserve, Instr: &event.InstrumentObs{Name: datapath.InstrReadBack, Error: "iptables: EPERM"}},
			{Kind: event.KindObserve, Service: &event.ServiceObs{Name: "nfslab/nfs", VIP: "10.96.0.50", Ports: []string{"2049/tcp"}, Endpoints: []string{"10.0.0.12"}}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []event.Event
			dp := &lagging{readErr: tt.readErr}
			c, err := New(Config{Protocol: scenario.ProtocolNFS, NFS: "4.1", VIP: netip.MustParseAddr("10.96.0.50"), Port: 2049}, dp,
				func(e event.Event) event.Event { got = append(got, e); return e })
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []netip.Addr{a, b} {
				if err := c.Publish(t.Context(), pod{p}); err != nil {
					t.Fatalf("Publish(%v): %v", p, err)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("recorded %+v\nwant %+v", got, tt.want)
				for _, e := range got {
					t.Logf("%+v %+v", e.Service, e.Instr)
				}
			}
		})
	}
}
