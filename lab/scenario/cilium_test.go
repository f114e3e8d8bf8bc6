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
		{"a version nfslab cannot build", kind + "[cilium]}\ncilium: {versions: [v1.19.7, v1.20.2]}\n",
			[]string{"cilium.versions[1]"},
			[]string{`"v1.20.2" is not a Cilium version nfslab can build: want v1.19.7, v1.18.3, v1.17.8 or v1.15.19`}},
		{"a version listed twice", kind + "[cilium]}\ncilium: {versions: [v1.15.19, v1.15.19]}\n",
			[]string{"cilium.versions[1]"}, []string{`"v1.15.19" is listed twice (also cilium.versions[0])`}},
		{"versions without a Cilium datapath", kind + "[socket-lb]}\ncilium: {versions: [v1.19.7]}\n",
			[]string{"cilium.versions"}, []string{"apply to Cilium datapaths, and matrix.datapaths is [socket-lb]"}},
		{"a rule for a version nfslab cannot build", kind + "[cilium]}\nexpect: {rules: [{match: {cilium: 1.19.7}, verdict: recovered}]}\n",
			[]string{"expect.rules[0].match.cilium"}, []string{`(did you mean "v1.19.7"?)`}},
		{"the one-version key of old", kind + "[cilium]}\ncilium: {version: v1.19.7}\n",
			[]string{"cilium.version"}, []string{"unknown field"}},
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

// TestCiliumCells: the Cilium versions are an axis of the Cilium datapaths alone: each Cilium
// datapath has a cell per version, with the version in its ID, and a rule can match a version;
// the other datapaths' cells carry none.
func TestCiliumCells(t *testing.T) {
	s, err := Parse("t.yaml", []byte(`name: t
matrix: {kernels: [debian-stock], clusters: [kind], datapaths: [kube-proxy, cilium, cilium-no-socket-lb]}
cilium: {versions: [v1.19.7, v1.15.19]}
expect:
  default: recovered
  rules: [{match: {datapath: cilium, cilium: v1.15.19}, verdict: bug-reproduced}]
`))
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ id, cilium, expected string }
	want := []row{
		{"debian-stock/kind/kube-proxy/4.1/delete-pod", "", "recovered"},
		{"debian-stock/kind/cilium@v1.19.7/4.1/delete-pod", "v1.19.7", "recovered"},
		{"debian-stock/kind/cilium@v1.15.19/4.1/delete-pod", "v1.15.19", "bug-reproduced"},
		{"debian-stock/kind/cilium-no-socket-lb@v1.19.7/4.1/delete-pod", "v1.19.7", "recovered"},
		{"debian-stock/kind/cilium-no-socket-lb@v1.15.19/4.1/delete-pod", "v1.15.19", "recovered"},
	}
	var got []row
	for _, c := range s.AllCells() {
		got = append(got, row{c.ID, c.Cilium, c.Expected})
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("cells\n%v\nwant\n%v", got, want)
	}
}

// TestCiliumVersionsDefault: without cilium.versions, the newest buildable version applies.
func TestCiliumVersionsDefault(t *testing.T) {
	var s Scenario
	if got := s.CiliumVersions(); !reflect.DeepEqual(got, []string{"v1.19.7"}) {
		t.Errorf("CiliumVersions() = %q, want [v1.19.7]", got)
	}
	s.Cilium.Versions = []string{"v1.17.8", "v1.15.19"}
	if got := s.CiliumVersions(); !reflect.DeepEqual(got, s.Cilium.Versions) {
		t.Errorf("CiliumVersions() = %q, want %q", got, s.Cilium.Versions)
	}
}
