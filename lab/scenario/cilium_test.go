package scenario

import (
	"reflect"
	"strings"
	"testing"
)

// TestParseCilium: a Cilium datapath is checked as it will run — in the kind form only, the
// VM-root socket-LB ones on one node, a version nfslab can build.
func TestParseCilium(t *testing.T) {
	const kind = "name: t\nmatrix: {kernels: [debian-stock], clusters: [kind], datapaths: "
	tests := []struct {
		name   string
		file   string
		fields []string // the fields the problems are about, in order
		msgs   []string // a piece of each problem's message, in order
	}{
		{"in the netns form", "name: t\nmatrix: {kernels: [debian-stock], datapaths: [cilium]}\n",
			[]string{"matrix.datapaths[0]"}, []string{`"cilium" runs only on a kind cluster`}},
		{"the VM-root socket-LB on two nodes", kind + "[cilium, cilium-hostns-only, cilium-no-socket-lb, cilium-kind-cgroup]}\nkind: {nodes: 2}\n",
			[]string{"kind.nodes", "kind.nodes"},
			[]string{"2: matrix.datapaths[0] \"cilium\" attaches Cilium's socket-LB at the VM's root cgroup, which every node shares: two agents there would stack their programs",
				`"cilium-hostns-only" attaches`}},
		{"a version nfslab cannot build", kind + "[cilium]}\ncilium: {version: v1.20.2}\n",
			[]string{"cilium.version"},
			[]string{`"v1.20.2" is not a Cilium version nfslab can build: want v1.19.7, v1.18.3, v1.17.8 or v1.15.19`}},
		{"a version without a Cilium datapath", kind + "[socket-lb]}\ncilium: {version: v1.19.7}\n",
			[]string{"cilium.version"}, []string{"applies to Cilium datapaths, and matrix.datapaths is [socket-lb]"}},
		{"an unknown field of cilium", kind + "[socket-lb]}\ncilium: {versions: [v1.19.7]}\n",
			[]string{"cilium.versions"}, []string{"unknown field"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, fields := parseProblems(t, tt.file)
			if !reflect.DeepEqual(fields, tt.fields) {
				t.Fatalf("fields %q, want %q\n%v", fields, tt.fields, e)
			}
			for i, m := range tt.msgs {
				if !strings.Contains(e.Problems[i].Msg, m) {
					t.Errorf("problem %d %q, want it to contain %q", i, e.Problems[i].Msg, m)
				}
			}
		})
	}
}

// TestCiliumCells: every Cilium datapath runs on kind, and its cells carry the Cilium version
// they install; the other datapaths' cells carry none.
func TestCiliumCells(t *testing.T) {
	s, err := Parse("t.yaml", []byte("name: t\nmatrix: {kernels: [debian-stock], clusters: [kind], datapaths: [kube-proxy, cilium, cilium-kind-cgroup, cilium-no-socket-lb, cilium-hostns-only]}\ncilium: {version: v1.15.19}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range s.AllCells() {
		want := "v1.15.19"
		if c.Datapath == "kube-proxy" {
			want = ""
		}
		if c.Cilium != want {
			t.Errorf("cell %s: Cilium %q, want %q", c.ID, c.Cilium, want)
		}
	}
}

// TestCiliumVersionDefault: without cilium.version, the newest buildable version applies.
func TestCiliumVersionDefault(t *testing.T) {
	var s Scenario
	if got := s.CiliumVersion(); got != "v1.19.7" {
		t.Errorf("CiliumVersion() = %q, want v1.19.7", got)
	}
	s.Cilium.Version = "v1.17.8"
	if got := s.CiliumVersion(); got != "v1.17.8" {
		t.Errorf("CiliumVersion() = %q, want v1.17.8", got)
	}
}
