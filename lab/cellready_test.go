package lab

import (
	"testing"

	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/lab/snapshot"
)

// TestCellSpec: a cell's snapshot is keyed by its VM's and by every cell the VM ran up to and
// including it, so that a cell is never started from a state another history left.
func TestCellSpec(t *testing.T) {
	vmSpec := snapshot.Spec{Point: snapshot.ClusterReady, Inputs: image.Inputs{"kernel": "k", "prepare": "iptables"}, QEMU: "7.2.22"}
	iptables := scenario.Cell{Index: 0, ID: "k/kind/kube-proxy/4.1/delete-pod", Datapath: "kube-proxy"}
	ipvs := scenario.Cell{Index: 1, ID: "k/kind/kube-proxy-ipvs/4.1/delete-pod", Datapath: "kube-proxy-ipvs"}
	key := func(v snapshot.Spec, ran ...scenario.Cell) string {
		t.Helper()
		s, err := cellSpec(v, ran)
		if err != nil {
			t.Fatal(err)
		}
		if s.Point != snapshot.CellReady || s.QEMU != v.QEMU {
			t.Fatalf("cellSpec = %+v; want the cell-ready point of qemu %s", s, v.QEMU)
		}
		return s.Key()
	}
	otherVM := snapshot.Spec{Point: snapshot.ClusterReady, Inputs: image.Inputs{"kernel": "k", "prepare": "ipvs"}, QEMU: "7.2.22"}
	expectChanged := ipvs
	expectChanged.Expected = "bug-reproduced"
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{"the same history", key(vmSpec, iptables, ipvs), key(vmSpec, iptables, ipvs), true},
		{"the cell alone against after another", key(vmSpec, ipvs), key(vmSpec, iptables, ipvs), false},
		{"another VM", key(vmSpec, ipvs), key(otherVM, ipvs), false},
		{"another expectation", key(vmSpec, ipvs), key(vmSpec, expectChanged), false},
		{"the VM's own snapshot", key(vmSpec, ipvs), vmSpec.Key(), false},
	}
	for _, tt := range tests {
		if (tt.a == tt.b) != tt.same {
			t.Errorf("%s: keys %s and %s, want same=%v", tt.name, tt.a[:12], tt.b[:12], tt.same)
		}
	}
	if _, ok := vmSpec.Inputs["cells"]; ok {
		t.Error("cellSpec changed the VM's own inputs")
	}
}
