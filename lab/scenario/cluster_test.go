package scenario

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestCellsClusters: the cluster axis comes right after the kernel, netns cells keep the IDs
// they had before it existed, kind cells name their cluster, and combinations a form lacks are
// not cells.
func TestCellsClusters(t *testing.T) {
	tests := []struct {
		name   string
		matrix string
		ids    []string
	}{
		{"no clusters: netns", "{kernels: [debian-stock], datapaths: [kube-proxy, socket-lb]}",
			[]string{"debian-stock/kube-proxy/4.1/delete-pod", "debian-stock/socket-lb/4.1/delete-pod"}},
		{"kind only", "{kernels: [debian-stock], clusters: [kind], datapaths: [kube-proxy, socket-lb]}",
			[]string{"debian-stock/kind/kube-proxy/4.1/delete-pod", "debian-stock/kind/socket-lb/4.1/delete-pod"}},
		{"both forms: kernel, then cluster, then datapath", "{kernels: [debian-stock, vulnerable-6.1], clusters: [netns, kind], datapaths: [kube-proxy, kube-proxy-ipvs]}",
			[]string{
				"debian-stock/kube-proxy/4.1/delete-pod",
				"debian-stock/kind/kube-proxy/4.1/delete-pod",
				"debian-stock/kind/kube-proxy-ipvs/4.1/delete-pod",
				"vulnerable-6.1/kube-proxy/4.1/delete-pod",
				"vulnerable-6.1/kind/kube-proxy/4.1/delete-pod",
				"vulnerable-6.1/kind/kube-proxy-ipvs/4.1/delete-pod",
			}},
		{"the order of matrix.clusters is the cells' order", "{kernels: [debian-stock], clusters: [kind, netns], datapaths: [socket-lb]}",
			[]string{"debian-stock/kind/socket-lb/4.1/delete-pod", "debian-stock/socket-lb/4.1/delete-pod"}},
		{"NFSv3 and SMB are netns only", `{kernels: [debian-stock], clusters: [netns, kind], datapaths: [socket-lb], protocols: [nfs, smb], nfs: ["4.2", "3"]}`,
			[]string{
				"debian-stock/socket-lb/4.2/delete-pod",
				"debian-stock/socket-lb/3/delete-pod",
				"debian-stock/socket-lb/smb3/delete-pod",
				"debian-stock/kind/socket-lb/4.2/delete-pod",
			}},
		{"faults of each form", "{kernels: [debian-stock], clusters: [netns, kind], datapaths: [kube-proxy], faults: [delete-pod, node-crash, force-delete]}",
			[]string{
				"debian-stock/kube-proxy/4.1/delete-pod",
				"debian-stock/kube-proxy/4.1/node-crash",
				"debian-stock/kind/kube-proxy/4.1/delete-pod",
				"debian-stock/kind/kube-proxy/4.1/force-delete",
			}},
		{"every kube-proxy mode on kind", "{kernels: [debian-stock-6.12], clusters: [kind], datapaths: [kube-proxy, kube-proxy-ipvs, kube-proxy-nftables, socket-lb]}",
			[]string{
				"debian-stock-6.12/kind/kube-proxy/4.1/delete-pod",
				"debian-stock-6.12/kind/kube-proxy-ipvs/4.1/delete-pod",
				"debian-stock-6.12/kind/kube-proxy-nftables/4.1/delete-pod",
				"debian-stock-6.12/kind/socket-lb/4.1/delete-pod",
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse("c.yaml", []byte("name: c\nmatrix: "+tt.matrix+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for i, c := range s.Cells() {
				ids = append(ids, c.ID)
				if c.Index != i {
					t.Errorf("%s: index %d, want %d", c.ID, c.Index, i)
				}
				if want := map[bool]string{true: ClusterKind, false: ClusterNetns}[strings.Contains(c.ID, "/kind/")]; c.Cluster != want {
					t.Errorf("%s: cluster %q, want %q", c.ID, c.Cluster, want)
				}
			}
			if !reflect.DeepEqual(ids, tt.ids) {
				t.Errorf("cells\n got %q\nwant %q", ids, tt.ids)
			}
			if w := s.Warnings(); len(w) > 0 {
				t.Errorf("warnings %q", w)
			}
		})
	}
}

// TestParseClusters: every problem of the cluster axis names its field.
func TestParseClusters(t *testing.T) {
	tests := []struct {
		name   string
		file   string
		fields []string // the fields the problems are about, in order
		msg    string   // a piece of the first problem's message
	}{
		{"unknown cluster", "name: t\nmatrix: {kernels: [debian-stock], clusters: [netns, knd], datapaths: [socket-lb]}\n",
			[]string{"matrix.clusters[1]"}, `unknown cluster form "knd" (did you mean "kind"?) (want netns or kind)`},
		{"cluster twice", "name: t\nmatrix: {kernels: [debian-stock], clusters: [kind, kind], datapaths: [socket-lb]}\n",
			[]string{"matrix.clusters[1]"}, "listed twice"},
		{"clusters not a list", "name: t\nmatrix: {kernels: [debian-stock], clusters: kind, datapaths: [socket-lb]}\n",
			[]string{"matrix.clusters"}, "want a list"},
		{"kind-only datapath without kind", "name: t\nmatrix: {kernels: [debian-stock], datapaths: [kube-proxy, kube-proxy-ipvs]}\n",
			[]string{"matrix.datapaths[1]"}, `"kube-proxy-ipvs" runs only on a kind cluster (the netns form emulates kube-proxy's iptables mode only): add kind to matrix.clusters`},
		{"kind-only datapath with netns named", "name: t\nmatrix: {kernels: [debian-stock], clusters: [netns], datapaths: [kube-proxy-nftables]}\n",
			[]string{"matrix.datapaths[0]"}, "add kind to matrix.clusters"},
		{"netns-only fault on kind", "name: t\nmatrix: {kernels: [debian-stock], clusters: [kind], datapaths: [kube-proxy], faults: [delete-pod, node-crash]}\n",
			[]string{"matrix.faults[1]"}, `"node-crash" runs only in the netns form (the kind form's faults go through the Kubernetes API): add netns to matrix.clusters`},
		{"kind-only fault in netns", "name: t\nmatrix: {kernels: [debian-stock], datapaths: [kube-proxy], faults: [force-delete]}\n",
			[]string{"matrix.faults[0]"}, `"force-delete" runs only on a kind cluster`},
		{"smb on kind", "name: t\nmatrix: {kernels: [debian-stock], clusters: [kind], datapaths: [socket-lb], protocols: [smb]}\n",
			[]string{"matrix.protocols[0]"}, `"smb" runs only in the netns form (the kind form serves NFS only)`},
		{"NFSv3 on kind", "name: t\nmatrix: {kernels: [debian-stock], clusters: [kind], datapaths: [socket-lb], nfs: [\"4.1\", \"3\", 3-udp]}\n",
			[]string{"matrix.nfs[1]", "matrix.nfs[2]"}, `"3" runs only in the netns form (NFSv3 needs rpcbind, which the kind form does not run yet)`},
		{"no combination any form has", "name: t\nmatrix: {kernels: [debian-stock], clusters: [netns, kind], datapaths: [kube-proxy-ipvs], faults: [node-crash]}\n",
			[]string{"matrix"}, "expands to no cell: in the netns form none of matrix.datapaths runs (it has kube-proxy, socket-lb); on a kind cluster none of matrix.faults runs (it has delete-pod, force-delete, kill-container, restart-node)"},
		{"no NFS version any form has", "name: t\nmatrix: {kernels: [debian-stock], clusters: [netns, kind], datapaths: [kube-proxy-ipvs], nfs: [\"3\"]}\n",
			[]string{"matrix"}, "on a kind cluster none of matrix.nfs runs (it has 4.0, 4.1, 4.2)"},
		{"no-endpoint window on kind", "name: t\nmatrix: {kernels: [debian-stock], clusters: [netns, kind], datapaths: [socket-lb]}\nfailover: {noEndpointWindow: 5s}\n",
			[]string{"failover.noEndpointWindow"}, "5s: on a kind cluster Kubernetes decides how long the Service has no endpoint"},
		{"stale endpoint on kind", "name: t\nmatrix: {kernels: [debian-stock], clusters: [kind], datapaths: [socket-lb]}\nfailover: {staleEndpoint: 8s, noEndpointWindow: 1s}\n",
			[]string{"failover.noEndpointWindow", "failover.staleEndpoint"}, "remove kind from matrix.clusters"},
		{"nftables on kind with a 5.10 kernel", "name: t\nmatrix: {kernels: [debian-stock, vulnerable-5.10, control-5.10, debian-stock-5.10], clusters: [kind], datapaths: [socket-lb, kube-proxy-nftables]}\n",
			[]string{"matrix.kernels[1]", "matrix.kernels[2]", "matrix.kernels[3]"},
			`"vulnerable-5.10" is Linux 5.10, and kube-proxy-nftables (matrix.datapaths[1]) on a kind cluster needs Linux 5.13 or later`},
		{"restart-node on one node", "name: t\nmatrix: {kernels: [debian-stock], clusters: [kind], datapaths: [kube-proxy], faults: [delete-pod, restart-node]}\n",
			[]string{"matrix.faults"}, "restart-node restarts the NFS server's node, which must not be the node that mounts: set kind.nodes: 2"},
		{"three kind nodes", "name: t\nmatrix: {kernels: [debian-stock], clusters: [kind], datapaths: [kube-proxy]}\nkind: {nodes: 3}\n",
			[]string{"kind.nodes"}, "3: want 1 (the default) or 2"},
		{"negative kind nodes", "name: t\nmatrix: {kernels: [debian-stock], clusters: [kind], datapaths: [kube-proxy]}\nkind: {nodes: -1}\n",
			[]string{"kind.nodes"}, "-1: want 1"},
		{"kind nodes without kind", minimal + "kind: {nodes: 2}\n",
			[]string{"kind.nodes"}, "applies to kind clusters"},
		{"kind nodes not a number", "name: t\nmatrix: {kernels: [debian-stock], clusters: [kind], datapaths: [kube-proxy]}\nkind: {nodes: two}\n",
			[]string{"kind.nodes"}, ""},
		{"a rule's cluster", minimal + "expect: {rules: [{match: {cluster: kube}, verdict: failed}]}\n",
			[]string{"expect.rules[0].match.cluster"}, "unknown cluster form"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, fields := parseProblems(t, tt.file)
			if !reflect.DeepEqual(fields, tt.fields) {
				t.Errorf("fields %q, want %q\n%v", fields, tt.fields, e)
			}
			if !strings.Contains(e.Problems[0].Msg, tt.msg) {
				t.Errorf("first problem %q, want it to contain %q", e.Problems[0].Msg, tt.msg)
			}
		})
	}
}

// TestKindAllowed: what the checks above refuse is allowed where its form is listed.
func TestKindAllowed(t *testing.T) {
	for _, file := range []string{
		// nftables on kind with a kernel that has it, and a 5.10 kernel in the netns form only.
		"name: t\nmatrix: {kernels: [vulnerable-5.10, /k/bzImage], clusters: [netns], datapaths: [kube-proxy]}\n",
		"name: t\nmatrix: {kernels: [debian-stock, vulnerable-6.12, /k/bzImage], clusters: [kind], datapaths: [kube-proxy-nftables]}\n",
		// A 5.10 kernel on kind with the other kube-proxy modes.
		"name: t\nmatrix: {kernels: [vulnerable-5.10], clusters: [kind], datapaths: [kube-proxy, kube-proxy-ipvs]}\n",
		// failover windows in the netns form.
		"name: t\nmatrix: {kernels: [debian-stock], clusters: [netns], datapaths: [socket-lb]}\nfailover: {staleEndpoint: 8s}\n",
		// A rule about a form that is not in the matrix (it applies once --cluster brings it in).
		minimal + "expect: {rules: [{match: {cluster: kind}, verdict: failed}]}\n",
	} {
		if _, err := Parse("ok.yaml", []byte(file)); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
}

// TestSetupDefault: a kind cell's setup steps get DefaultKindSetup unless the file sets
// timeouts.setup, which then applies to every cell.
func TestSetupDefault(t *testing.T) {
	const m = "name: t\nmatrix: {kernels: [debian-stock], clusters: [netns, kind], datapaths: [socket-lb]}\n"
	tests := []struct {
		name        string
		file        string
		netns, kind time.Duration
	}{
		{"left out", m, DefaultSetup, DefaultKindSetup},
		{"set", m + "timeouts: {setup: 2m}\n", 2 * time.Minute, 2 * time.Minute},
		{"zero is the default", m + "timeouts: {setup: 0s}\n", DefaultSetup, DefaultKindSetup},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse("t.yaml", []byte(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			cells := s.Cells()
			if len(cells) != 2 || cells[0].Cluster != ClusterNetns || cells[1].Cluster != ClusterKind {
				t.Fatalf("cells %+v", cells)
			}
			if got := cells[0].Timeouts.Setup.Duration; got != tt.netns {
				t.Errorf("netns setup %s, want %s", got, tt.netns)
			}
			if got := cells[1].Timeouts.Setup.Duration; got != tt.kind {
				t.Errorf("kind setup %s, want %s", got, tt.kind)
			}
			for _, c := range cells {
				if c.Timeouts.Recovery.Duration != DefaultRecovery || c.Timeouts.Probe.Duration != DefaultProbe {
					t.Errorf("%s: timeouts %+v, want the recovery and probe defaults", c.ID, c.Timeouts)
				}
			}
		})
	}
}

// TestMatchCluster: a rule can single out a cluster form.
func TestMatchCluster(t *testing.T) {
	s, err := Parse("t.yaml", []byte(`name: t
matrix: {kernels: [vulnerable-6.1], clusters: [netns, kind], datapaths: [socket-lb]}
expect:
  default: bug-reproduced
  rules:
    - match: {cluster: kind}
      verdict: inconclusive
`))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range s.Cells() {
		got[c.ID] = c.Expected
	}
	want := map[string]string{
		"vulnerable-6.1/socket-lb/4.1/delete-pod":      "bug-reproduced",
		"vulnerable-6.1/kind/socket-lb/4.1/delete-pod": "inconclusive",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestFilterCluster: --cluster replaces matrix.clusters, is checked like it, and the scenario
// is validated again with it (a datapath the new forms lack is an error); a failed Filter
// leaves the scenario as it was.
func TestFilterCluster(t *testing.T) {
	const file = "name: f\nmatrix: {kernels: [debian-stock, vulnerable-6.1], datapaths: [kube-proxy, socket-lb]}\n" +
		"expect: {rules: [{match: {kernel: vulnerable-6.1, datapath: socket-lb}, verdict: bug-reproduced}]}\n"
	tests := []struct {
		name     string
		o        Override
		ids      []string
		errField string
		errMsg   string
	}{
		{name: "kind", o: Override{Clusters: []string{"kind"}}, ids: []string{
			"debian-stock/kind/kube-proxy/4.1/delete-pod", "debian-stock/kind/socket-lb/4.1/delete-pod",
			"vulnerable-6.1/kind/kube-proxy/4.1/delete-pod", "vulnerable-6.1/kind/socket-lb/4.1/delete-pod"}},
		{name: "both, with a kind-only datapath", o: Override{Kernels: []string{"vulnerable-6.1"}, Clusters: []string{"netns", "kind"}, Datapaths: []string{"socket-lb", "kube-proxy-ipvs"}}, ids: []string{
			"vulnerable-6.1/socket-lb/4.1/delete-pod", "vulnerable-6.1/kind/socket-lb/4.1/delete-pod", "vulnerable-6.1/kind/kube-proxy-ipvs/4.1/delete-pod"}},
		{name: "unknown", o: Override{Clusters: []string{"kind", "k3s"}}, errField: "--cluster[1]", errMsg: "unknown cluster form"},
		{name: "twice", o: Override{Clusters: []string{"kind", "kind"}}, errField: "--cluster[1]", errMsg: "listed twice"},
		{name: "a datapath the forms lack", o: Override{Clusters: []string{"netns"}, Datapaths: []string{"kube-proxy-ipvs"}}, errField: "matrix.datapaths[0]", errMsg: "add kind to matrix.clusters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse("f.yaml", []byte(file))
			if err != nil {
				t.Fatal(err)
			}
			before := s.Cells()
			err = s.Filter(tt.o)
			if tt.errField != "" {
				var e *Error
				if !errors.As(err, &e) || e.Problems[0].Field != tt.errField || !strings.Contains(e.Problems[0].Msg, tt.errMsg) {
					t.Fatalf("error %v, want one about %s saying %q", err, tt.errField, tt.errMsg)
				}
				if !reflect.DeepEqual(s.Cells(), before) {
					t.Error("scenario changed by a failed Filter")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, c := range s.Cells() {
				ids = append(ids, c.ID)
				if c.Kernel == "vulnerable-6.1" && c.Datapath == "socket-lb" && c.Expected != "bug-reproduced" {
					t.Errorf("%s lost its rule", c.ID)
				}
			}
			if !reflect.DeepEqual(ids, tt.ids) {
				t.Errorf("cells %q, want %q", ids, tt.ids)
			}
			// Every cell of the narrowed matrix can be selected by its ID.
			for _, id := range ids {
				sel := *s
				if err := sel.SelectCell(id); err != nil || len(sel.Cells()) != 1 || sel.Cells()[0].ID != id {
					t.Errorf("SelectCell(%s): %v", id, err)
				}
			}
		})
	}
}

func TestKernelLine(t *testing.T) {
	tests := []struct {
		kernel, line string
		ok           bool
	}{
		{"vulnerable-5.10", "5.10", true},
		{"control-5.10", "5.10", true},
		{"debian-stock-5.10", "5.10", true},
		{"debian-stock-6.12", "6.12", true},
		{"vulnerable-6.1", "6.1", true},
		{"debian-stock", "", false},       // Debian 12's default names no line
		{"/k/linux-5.10", "", false},      // a path: its line is not known here
		{"vulnerable-9.9", "", false},     // not a kernel the lab knows
		{"/k/vulnerable-5.10", "", false}, // a path, even with a known name
		{"vmlinuz-5.4.0-1-amd64", "", false},
	}
	for _, tt := range tests {
		line, ok := kernelLine(tt.kernel)
		if line != tt.line || ok != tt.ok {
			t.Errorf("kernelLine(%q) = %q, %v; want %q, %v", tt.kernel, line, ok, tt.line, tt.ok)
		}
	}
	for _, tt := range []struct {
		a, b   string
		before bool
	}{{"5.10", "5.13", true}, {"5.13", "5.13", false}, {"6.1", "5.13", false}, {"4.19", "5.13", true}, {"5.9", "5.10", true}} {
		if got := lineBefore(tt.a, tt.b); got != tt.before {
			t.Errorf("lineBefore(%s, %s) = %v", tt.a, tt.b, got)
		}
	}
}

// TestKindNodesCells: kind.nodes reaches every kind cell (1 unless set), not the netns cells,
// and two nodes allow restart-node.
func TestKindNodesCells(t *testing.T) {
	for _, tt := range []struct {
		file      string
		kind, net int
	}{
		{"name: t\nmatrix: {kernels: [debian-stock], clusters: [netns, kind], datapaths: [kube-proxy]}\n", 1, 0},
		{"name: t\nmatrix: {kernels: [debian-stock], clusters: [netns, kind], datapaths: [kube-proxy], faults: [delete-pod, restart-node]}\nkind: {nodes: 2}\n", 2, 0},
	} {
		s, err := Parse("my.yaml", []byte(tt.file))
		if err != nil {
			t.Fatalf("%s: %v", tt.file, err)
		}
		for _, c := range s.Cells() {
			want := tt.net
			if c.Cluster == ClusterKind {
				want = tt.kind
			}
			if c.Nodes != want {
				t.Errorf("%s: cell %s has %d nodes, want %d", tt.file, c.ID, c.Nodes, want)
			}
		}
	}
}
