package scenario

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestSelectCell(t *testing.T) {
	const file = "name: sel\nmatrix:\n  kernels: [debian-stock, vulnerable-6.1, /a/x/bzImage, /b/x/bzImage]\n" +
		"  datapaths: [kube-proxy, socket-lb]\n  nfs: [\"4.1\", \"3\", \"4.2\"]\n" +
		"expect: {rules: [{match: {kernel: vulnerable-6.1, datapath: socket-lb}, verdict: bug-reproduced}]}\n"
	load := func(t *testing.T) *Scenario {
		t.Helper()
		s, err := Parse("sel.yaml", []byte(file))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	all := load(t).Cells()
	if len(all) != 24 {
		t.Fatalf("%d cells, want 24", len(all))
	}
	// Every cell can be selected, and keeps the ID and expectation it has in the whole matrix,
	// including kernels whose label needs a parent directory to be told apart.
	for _, want := range all {
		t.Run(want.ID, func(t *testing.T) {
			s := load(t)
			if err := s.SelectCell(want.ID); err != nil {
				t.Fatal(err)
			}
			got := s.Cells()
			if len(got) != 1 {
				t.Fatalf("%d cells, want 1", len(got))
			}
			want.Index = 0
			if !reflect.DeepEqual(got[0], want) {
				t.Errorf("got %+v\nwant %+v", got[0], want)
			}
		})
	}

	tests := []struct {
		name      string
		datapaths []string // Filter before SelectCell
		id        string
		wantErr   []string // in the message; nil: the selection works
	}{
		{name: "after a filter", datapaths: []string{"socket-lb"}, id: "vulnerable-6.1/socket-lb/3/delete-pod"},
		{name: "filtered out", datapaths: []string{"socket-lb"}, id: "vulnerable-6.1/kube-proxy/3/delete-pod",
			wantErr: []string{`no cell "vulnerable-6.1/kube-proxy/3/delete-pod" in scenario sel`, "  debian-stock/socket-lb/4.1/delete-pod", "  a_x_bzImage/socket-lb/3/delete-pod"}},
		{name: "unknown", id: "debian-stock/ipvs/4.1/delete-pod",
			wantErr: []string{"debian-stock/ipvs/4.1/delete-pod", "  debian-stock/kube-proxy/4.1/delete-pod", "… and 4 more (nfslab matrix lists them all)"}},
		{name: "kernel label without its directory", id: "bzImage/kube-proxy/4.1/delete-pod", wantErr: []string{"  b_x_bzImage/kube-proxy/4.1/delete-pod"}},
		{name: "empty", id: "", wantErr: []string{`no cell ""`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := load(t)
			if tt.datapaths != nil {
				if err := s.Filter(Override{Datapaths: tt.datapaths}); err != nil {
					t.Fatal(err)
				}
			}
			before := s.Cells()
			err := s.SelectCell(tt.id)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if got := s.Cells(); len(got) != 1 || got[0].ID != tt.id {
					t.Errorf("cells %+v, want only %s", got, tt.id)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || len(e.Problems) != 1 || e.Problems[0].Field != "--cell" {
				t.Fatalf("error %v, want one *Error about --cell", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if !reflect.DeepEqual(s.Cells(), before) {
				t.Error("a failed SelectCell changed the scenario")
			}
		})
	}
}
