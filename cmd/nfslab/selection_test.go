package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/nfslab/nfslab/lab/scenario"
)

// TestSelectionClusters: --cluster replaces the scenario's clusters like --kernel and
// --datapath replace theirs, and is checked the same way.
func TestSelectionClusters(t *testing.T) {
	tests := []struct {
		name     string
		sel      selection
		ids      []string
		wantErr  []string
		errField string
	}{
		{name: "the file's clusters", sel: selection{ref: "kind", datapaths: []string{"kube-proxy", "socket-lb"}}, ids: []string{
			"debian-stock/kind/kube-proxy/4.1/delete-pod", "debian-stock/kind/socket-lb/4.1/delete-pod",
			"vulnerable-6.1/kind/kube-proxy/4.1/delete-pod", "vulnerable-6.1/kind/socket-lb/4.1/delete-pod"}},
		{name: "kind instead of netns", sel: selection{ref: "fidelity", clusters: []string{"kind"}, kernels: []string{"vulnerable-6.1"}}, ids: []string{
			"vulnerable-6.1/kind/kube-proxy/4.1/delete-pod", "vulnerable-6.1/kind/socket-lb/4.1/delete-pod"}},
		{name: "netns instead of kind", sel: selection{ref: "kind", clusters: []string{"netns"}, datapaths: []string{"socket-lb"}}, ids: []string{
			"debian-stock/socket-lb/4.1/delete-pod", "vulnerable-6.1/socket-lb/4.1/delete-pod"}},
		{name: "both, with a kind-only datapath", sel: selection{ref: "default", clusters: []string{"netns", "kind"}, datapaths: []string{"kube-proxy", "kube-proxy-ipvs"}}, ids: []string{
			"debian-stock/kube-proxy/4.1/delete-pod", "debian-stock/kind/kube-proxy/4.1/delete-pod", "debian-stock/kind/kube-proxy-ipvs/4.1/delete-pod"}},
		{name: "unknown cluster", sel: selection{ref: "default", clusters: []string{"kind", "k3s"}},
			errField: "--cluster[1]", wantErr: []string{`unknown cluster form "k3s"`, "netns or kind"}},
		{name: "kind-only datapath without kind", sel: selection{ref: "default", datapaths: []string{"kube-proxy-nftables"}},
			errField: "matrix.datapaths[0]", wantErr: []string{"runs only on a kind cluster", "add kind to matrix.clusters"}},
		{name: "nftables on kind with a 5.10 kernel", sel: selection{ref: "kind", kernels: []string{"vulnerable-5.10"}, datapaths: []string{"kube-proxy-nftables"}},
			errField: "matrix.kernels[0]", wantErr: []string{"Linux 5.10", "5.13"}},
		{name: "a window the kind cluster decides", sel: selection{ref: "no-endpoints", clusters: []string{"kind"}},
			errField: "failover.noEndpointWindow", wantErr: []string{"kind"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.sel.accel = "auto"
			sc, err := tt.sel.load()
			if tt.errField != "" {
				var e *scenario.Error
				if !errors.As(err, &e) || e.Problems[0].Field != tt.errField {
					t.Fatalf("error %v, want one about %s", err, tt.errField)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, c := range sc.Cells() {
				ids = append(ids, c.ID)
			}
			if !reflect.DeepEqual(ids, tt.ids) {
				t.Errorf("cells %q, want %q", ids, tt.ids)
			}
			// run --cell and demo --cell take every ID of the selection.
			for _, id := range ids {
				one, err := tt.sel.load()
				if err != nil {
					t.Fatal(err)
				}
				if err := one.SelectCell(id); err != nil || len(one.Cells()) != 1 {
					t.Errorf("SelectCell(%s): %v", id, err)
				}
			}
		})
	}
}

// TestClusterFlag: run and demo both take --cluster, and bad input through it exits 2 naming
// the flag or the cells it leaves.
func TestClusterFlag(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr []string
	}{
		{"run, unknown cluster", []string{"run", "--cluster", "k3s"}, []string{"--cluster[0]", `unknown cluster form "k3s"`}},
		{"demo, unknown cluster", []string{"demo", "--cluster", "netns,kind,kind"}, []string{"--cluster[2]", "listed twice"}},
		{"run, kind cell IDs listed", []string{"run", "--scenario", "kind", "--cell", "debian-stock/kind/ipvs/4.1/delete-pod"},
			[]string{"--cell", "debian-stock/kind/kube-proxy/4.1/delete-pod", "vulnerable-6.1/kind/socket-lb/4.1/delete-pod"}},
		{"demo, a netns ID after --cluster kind", []string{"demo", "--scenario", "fidelity", "--cluster", "kind", "--cell", "vulnerable-6.1/socket-lb/4.1/delete-pod"},
			[]string{"--cell", "vulnerable-6.1/kind/socket-lb/4.1/delete-pod"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tt.args, &stdout, &stderr); code != exitUsage {
				t.Errorf("exit %d, want %d; stderr: %s", code, exitUsage, stderr.String())
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q does not contain %q", stderr.String(), w)
				}
			}
		})
	}
}

// TestMatrixKind: nfslab matrix lists kind cells with their cluster and an artifact-safe slug.
func TestMatrixKind(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"matrix", "--scenario", "kind", "-o", "github"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var m struct {
		Include []matrixEntry `json:"include"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Include) != 8 {
		t.Fatalf("%d entries, want 8: %+v", len(m.Include), m.Include)
	}
	want := matrixEntry{ID: "vulnerable-6.1/kind/socket-lb/4.1/delete-pod", Slug: "vulnerable-6.1_kind_socket-lb_4.1_delete-pod", Scenario: "kind",
		Kernel: "vulnerable-6.1", Cluster: "kind", Datapath: "socket-lb", NFS: "4.1", Fault: "delete-pod", Expected: "bug-reproduced"}
	if got := m.Include[7]; got != want {
		t.Errorf("last entry %+v, want %+v", got, want)
	}
}
