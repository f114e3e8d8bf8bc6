package scenarios_test

import (
	"io/fs"
	"strings"
	"testing"

	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/scenarios"
)

func TestBuiltinsParse(t *testing.T) {
	files, err := fs.Glob(scenarios.FS, "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("want at least 3 built-in scenarios, have %v", files)
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			data, err := fs.ReadFile(scenarios.FS, f)
			if err != nil {
				t.Fatal(err)
			}
			s, err := scenario.Parse(f, data)
			if err != nil {
				t.Fatalf("parse:\n%v", err)
			}
			if want := strings.TrimSuffix(f, ".yaml"); s.Name != want {
				t.Errorf("name %q, want the file's name %q", s.Name, want)
			}
			if s.Description == "" {
				t.Error("no description")
			}
			if len(s.Cells()) == 0 {
				t.Error("no cells")
			}
		})
	}
}

func TestBuiltinsExpectations(t *testing.T) {
	want := map[string]map[string]string{
		"default": {
			"debian-stock/kube-proxy/4.1/delete-pod": "recovered",
			"debian-stock/socket-lb/4.1/delete-pod":  "recovered",
		},
		"namelen": {
			"namelen-6.1/socket-lb/4.1/delete-pod":      "recovered",
			"namelen-6.1/socket-lb/3-udp/delete-pod":    "recovered",
			"vulnerable-6.1/socket-lb/4.1/delete-pod":   "bug-reproduced",
			"vulnerable-6.1/socket-lb/3-udp/delete-pod": "bug-reproduced",
		},
		"failover": {
			"debian-stock/socket-lb/4.1/delete-pod": "recovered",
		},
		"fidelity": {
			"debian-stock/kube-proxy/4.1/delete-pod":   "recovered",
			"debian-stock/socket-lb/4.1/delete-pod":    "recovered",
			"vulnerable-6.1/kube-proxy/4.1/delete-pod": "recovered",
			"vulnerable-6.1/socket-lb/4.1/delete-pod":  "bug-reproduced",
		},
		"kind": {
			"debian-stock/kind/kube-proxy/4.1/delete-pod":            "recovered",
			"debian-stock/kind/kube-proxy-ipvs/4.1/delete-pod":       "recovered",
			"debian-stock/kind/kube-proxy-nftables/4.1/delete-pod":   "recovered",
			"debian-stock/kind/socket-lb/4.1/delete-pod":             "recovered",
			"vulnerable-6.1/kind/kube-proxy/4.1/delete-pod":          "recovered",
			"vulnerable-6.1/kind/kube-proxy-ipvs/4.1/delete-pod":     "recovered",
			"vulnerable-6.1/kind/kube-proxy-nftables/4.1/delete-pod": "recovered",
			"vulnerable-6.1/kind/socket-lb/4.1/delete-pod":           "bug-reproduced",
		},
		"kernels": {
			"debian-stock/kube-proxy/4.1/delete-pod":      "recovered",
			"debian-stock/socket-lb/4.1/delete-pod":       "recovered",
			"vulnerable-6.1/kube-proxy/4.1/delete-pod":    "recovered",
			"vulnerable-6.1/socket-lb/4.1/delete-pod":     "bug-reproduced",
			"debian-stock-6.12/kube-proxy/4.1/delete-pod": "recovered",
			"debian-stock-6.12/socket-lb/4.1/delete-pod":  "recovered",
			"vulnerable-6.12/kube-proxy/4.1/delete-pod":   "recovered",
			"vulnerable-6.12/socket-lb/4.1/delete-pod":    "bug-reproduced",
			"debian-stock-5.10/kube-proxy/4.1/delete-pod": "recovered",
			"debian-stock-5.10/socket-lb/4.1/delete-pod":  "recovered",
			"vulnerable-5.10/kube-proxy/4.1/delete-pod":   "recovered",
			"vulnerable-5.10/socket-lb/4.1/delete-pod":    "bug-reproduced",
		},
		"stale-endpoint": {
			"debian-stock/kube-proxy/4.1/delete-pod":   "recovered",
			"debian-stock/socket-lb/4.1/delete-pod":    "recovered",
			"vulnerable-6.1/kube-proxy/4.1/delete-pod": "recovered",
			"vulnerable-6.1/socket-lb/4.1/delete-pod":  "bug-reproduced",
		},
	}
	for name, cells := range want {
		s, err := scenario.Load(name, scenarios.FS)
		if err != nil {
			t.Fatalf("load %s: %v", name, err)
		}
		got := map[string]string{}
		for _, c := range s.Cells() {
			got[c.ID] = c.Expected
		}
		if len(got) != len(cells) {
			t.Errorf("%s: cells %v, want %v", name, got, cells)
		}
		for id, v := range cells {
			if got[id] != v {
				t.Errorf("%s: cell %s expects %q, want %q", name, id, got[id], v)
			}
		}
	}
	// The default scenario's rule applies when the vulnerable kernel is brought in.
	s, err := scenario.Load("default", scenarios.FS)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Filter(scenario.Override{Kernels: []string{"vulnerable-6.1"}, Datapaths: []string{"socket-lb"}}); err != nil {
		t.Fatal(err)
	}
	if c := s.Cells(); len(c) != 1 || c[0].Expected != "bug-reproduced" {
		t.Errorf("default --kernel vulnerable-6.1 --datapath socket-lb: %+v", c)
	}
	// The kind scenario's cells are all kind cells, and their setup steps get the kind default.
	s, err = scenario.Load("kind", scenarios.FS)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range s.Cells() {
		if c.Cluster != scenario.ClusterKind || c.Timeouts.Setup.Duration != scenario.DefaultKindSetup {
			t.Errorf("kind: cell %s on %q with setup %s, want kind and %s", c.ID, c.Cluster, c.Timeouts.Setup, scenario.DefaultKindSetup)
		}
	}
}

func TestBuiltinsList(t *testing.T) {
	sums, err := scenario.Builtins(scenarios.FS)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range sums {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "cilium,control,default,failover,fidelity,kernels,kind,kind-faults,kind-restart-node,longhorn,namelen,nconnect,nfs-versions,no-endpoints,node-crash,smb,stale-endpoint" {
		t.Errorf("builtins %s", got)
	}
}
