package cilium

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func testSetup() Setup {
	return Setup{Cluster: "nfslab", PodCIDR: "10.244.0.0/16", AgentImage: "localhost/nfslab/cilium:v1.19.7",
		OperatorImage: "localhost/nfslab/cilium-operator-generic:v1.19.7", CgroupRoot: "/run/nfslab/vm-cgroup"}
}

// TestRequiredGolden pins the values each datapath gets: a change to them is a change to what
// the cells measure, and shows in the diff of testdata/required-*.json.
func TestRequiredGolden(t *testing.T) {
	for _, d := range Datapaths() {
		t.Run(d, func(t *testing.T) {
			v, err := Required(d, testSetup())
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", "required-"+d+".json")
			if *update {
				if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -update writes it)", err)
			}
			if string(want) != string(got)+"\n" {
				t.Errorf("Required(%s) =\n%s\nwant (%s)\n%s", d, got, golden, want)
			}
		})
	}
}

// TestRequiredPerDatapath states what tells the four datapaths apart, beside the golden files.
func TestRequiredPerDatapath(t *testing.T) {
	tests := []struct {
		datapath              string
		kpr                   string
		socketLB, hostnsOnly  any
		autoMount, cgroupRoot any
	}{
		{VMRootSocketLB, "true", true, nil, false, "/run/nfslab/vm-cgroup"},
		{KindCgroup, "true", true, nil, nil, nil},
		// Cilium's kube-proxy replacement turns socket-LB on whatever socketLB.enabled says.
		{NoSocketLB, "false", false, nil, false, "/run/nfslab/vm-cgroup"},
		{HostNSOnly, "true", true, true, false, "/run/nfslab/vm-cgroup"},
	}
	for _, tt := range tests {
		v, err := Required(tt.datapath, testSetup())
		if err != nil {
			t.Fatal(err)
		}
		get := func(key string) any {
			var x any = v
			for _, k := range strings.Split(key, ".") {
				m, ok := x.(map[string]any)
				if !ok {
					return nil
				}
				x = m[k]
			}
			return x
		}
		for key, want := range map[string]any{
			"kubeProxyReplacement": tt.kpr, "socketLB.enabled": tt.socketLB, "socketLB.hostNamespaceOnly": tt.hostnsOnly,
			"cgroup.autoMount.enabled": tt.autoMount, "cgroup.hostRoot": tt.cgroupRoot,
			"image.pullPolicy": "Never", "operator.image.override": "localhost/nfslab/cilium-operator-generic:v1.19.7",
			"k8sServiceHost": "nfslab-control-plane",
		} {
			if got := get(key); got != want {
				t.Errorf("%s: %s = %v, want %v", tt.datapath, key, got, want)
			}
		}
	}
	if _, err := Required("socket-lb", testSetup()); err == nil {
		t.Error("Required(socket-lb) succeeded; it is not a Cilium datapath")
	}
}

func TestOwned(t *testing.T) {
	owned := Owned()
	for _, k := range []string{"kubeProxyReplacement", "socketLB.enabled", "socketLB.hostNamespaceOnly", "cgroup.hostRoot",
		"cgroup.autoMount.enabled", "image.override", "operator.image.pullPolicy", "k8sServicePort", "hubble.enabled"} {
		if !slices.Contains(owned, k) {
			t.Errorf("Owned() lacks %s", k)
		}
	}
	if !slices.IsSorted(owned) || len(slices.Compact(slices.Clone(owned))) != len(owned) {
		t.Errorf("Owned() = %v: want sorted, without duplicates", owned)
	}
}

func TestCheckVersion(t *testing.T) {
	if err := CheckVersion(DefaultVersion()); err != nil {
		t.Errorf("CheckVersion(%s) = %v", DefaultVersion(), err)
	}
	for v, want := range map[string]string{
		"v1.20.2": `"v1.20.2" is not a Cilium version nfslab can build: want v1.19.7, v1.18.3, v1.17.8 or v1.15.19`,
		"1.19.7":  `(did you mean "v1.19.7"?)`,
		"v1.18.4": "v1.18.3",
	} {
		err := CheckVersion(v)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckVersion(%q) = %v, want it to contain %q", v, err, want)
		}
	}
}

func TestRootCgroup(t *testing.T) {
	var vmRoot, shares []string
	for _, d := range append(Datapaths(), "socket-lb", "kube-proxy") {
		if VMRoot(d) {
			vmRoot = append(vmRoot, d)
		}
		if SharesRootCgroup(d) {
			shares = append(shares, d)
		}
	}
	if want := []string{VMRootSocketLB, NoSocketLB, HostNSOnly}; !slices.Equal(vmRoot, want) {
		t.Errorf("datapaths given the VM's cgroup root: %v, want %v", vmRoot, want)
	}
	if want := []string{VMRootSocketLB, HostNSOnly}; !slices.Equal(shares, want) {
		t.Errorf("datapaths sharing the root cgroup: %v, want %v", shares, want)
	}
}

// TestCheckRootPrograms: Cilium's socket-LB at the VM's root cgroup is required where the datapath
// attaches it there and refused elsewhere; nobody else's program is ever accepted there.
func TestCheckRootPrograms(t *testing.T) {
	cil := []string{"cil_sock4_conne", "cil_sock4_sendm", "cil_sock4_recvm"}
	tests := []struct {
		datapath string
		names    []string
		err      string // "" for none
	}{
		{VMRootSocketLB, cil, ""},
		{HostNSOnly, cil, ""},
		{VMRootSocketLB, nil, "no program of Cilium's is in effect there"},
		{NoSocketLB, nil, ""},
		{KindCgroup, nil, ""},
		{NoSocketLB, cil[:1], "must leave the VM's root cgroup alone, and Cilium's cil_sock4_conne are in effect there"},
		{KindCgroup, cil, "must leave the VM's root cgroup alone"},
		{VMRootSocketLB, append([]string{"nfslab_connect4"}, cil...), "programs other than Cilium's are in effect at the VM's root cgroup: nfslab_connect4"},
		{NoSocketLB, []string{""}, "programs other than Cilium's"},
	}
	for _, tt := range tests {
		err := CheckRootPrograms(tt.datapath, tt.names)
		if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("CheckRootPrograms(%s, %q) = %v, want %q", tt.datapath, tt.names, err, tt.err)
		}
	}
}
