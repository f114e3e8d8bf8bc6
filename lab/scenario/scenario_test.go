package scenario

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/nfslab/nfslab/lab/verdict"
)

const goodFile = `
name: my-failover
description: A test scenario.
matrix:
  kernels: [debian-stock, vulnerable-6.1, /build/ctrl/arch/x86/boot/bzImage]
  datapaths: [kube-proxy, socket-lb]
  nfs: ["4.1", 4.2]
  faults: [delete-pod]
expect:
  default: recovered
  rules:
    - match: {kernel: vulnerable-6.1, datapath: socket-lb}
      verdict: bug-reproduced
    - match: {kernel: bzImage, nfs: "4.2"}
      verdict: inconclusive
mount:
  options: [hard, timeo=10, retrans=2]
service:
  vip: 10.96.0.60
  port: 2050
topology:
  nodeCIDR: 192.168.5.1/24
  backendA: 192.168.5.20
  backendB: 192.168.5.21
timeouts:
  recovery: 1m30s
  probe: 4s
  setup: 45s
`

// minimal is the smallest valid file; cases append to it or replace it.
const minimal = "name: t\nmatrix: {kernels: [debian-stock], datapaths: [socket-lb]}\n"

func d(s string) Duration {
	v, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return Duration{v}
}

func TestParseGood(t *testing.T) {
	s, err := Parse("good.yaml", []byte(goodFile))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Scenario{
		Name:        "my-failover",
		Description: "A test scenario.",
		Matrix: Matrix{
			Kernels:   []string{"debian-stock", "vulnerable-6.1", "/build/ctrl/arch/x86/boot/bzImage"},
			Clusters:  []string{"netns"},
			Datapaths: []string{"kube-proxy", "socket-lb"},
			Protocols: []string{"nfs"},
			NFS:       []string{"4.1", "4.2"},
			Faults:    []string{"delete-pod"},
		},
		Expect: Expect{Default: "recovered", Rules: []Rule{
			{Match: Match{Kernel: "vulnerable-6.1", Datapath: "socket-lb"}, Verdict: "bug-reproduced"},
			{Match: Match{Kernel: "bzImage", NFS: "4.2"}, Verdict: "inconclusive"},
		}},
		Mount:    Mount{Options: []string{"hard", "timeo=10", "retrans=2"}},
		Service:  Service{VIP: "10.96.0.60", Port: 2050},
		Topology: Topology{NodeCIDR: "192.168.5.1/24", BackendA: "192.168.5.20", BackendB: "192.168.5.21"},
		Timeouts: Timeouts{Recovery: d("90s"), Probe: d("4s"), Setup: d("45s")},
		Failover: Failover{SocketLBNoBackend: NoBackendRefuse},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("got  %+v\nwant %+v", s, want)
	}
}

func TestParseDefaults(t *testing.T) {
	s, err := Parse("min.yaml", []byte(minimal))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Scenario{
		Name:     "t",
		Matrix:   Matrix{Kernels: []string{"debian-stock"}, Clusters: []string{"netns"}, Datapaths: []string{"socket-lb"}, Protocols: []string{"nfs"}, NFS: []string{"4.1"}, Faults: []string{"delete-pod"}},
		Expect:   Expect{Default: "recovered"},
		Service:  Service{VIP: "10.96.0.50", Port: 2049},
		Topology: Topology{NodeCIDR: "10.0.0.1/24", BackendA: "10.0.0.11", BackendB: "10.0.0.12"},
		Timeouts: Timeouts{Recovery: d("60s"), Probe: d("5s")}, // setup: each cell's form's default
		Failover: Failover{SocketLBNoBackend: NoBackendRefuse},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("got  %+v\nwant %+v", s, want)
	}
	if c := s.Cells(); len(c) != 1 || c[0].Timeouts.Setup.Duration != DefaultSetup || c[0].Cluster != ClusterNetns {
		t.Errorf("cells %+v, want one netns cell with the %s setup default", c, DefaultSetup)
	}
}

func TestParseBad(t *testing.T) {
	tests := []struct {
		name   string
		file   string
		fields []string // the fields the problems are about, in order
		msg    string   // a piece of the message of the first problem
	}{
		{"empty file", "", []string{"name", "matrix.kernels", "matrix.datapaths"}, "missing"},
		{"not a mapping", "- a\n- b\n", []string{""}, "want a mapping"},
		{"syntax error", "name: t\nmatrix:\n  kernels: [debian-stock\n", []string{""}, "line 3:"},
		{"tab indentation", "name: t\n\tmatrix: {}\n", []string{""}, "line 2:"},
		{"duplicate key", minimal + "name: u\n", []string{""}, `line 3: key "name" already set`},
		{"unknown field", minimal + "timeout: {probe: 5s}\n", []string{"timeout"}, `did you mean "timeouts"`},
		{"unknown nested field", minimal + "mount: {option: [hard]}\n", []string{"mount.option"}, `did you mean "options"`},
		{"key in wrong case", minimal + "Service: {vip: 10.96.0.1}\n", []string{"Service"}, `did you mean "service"`},
		{"bad duration", minimal + "timeouts: {recovery: 6o s}\n", []string{"timeouts.recovery"}, `"6o s" is not a duration`},
		{"duration without unit", minimal + "timeouts: {probe: 5}\n", []string{"timeouts.probe"}, "want a duration"},
		{"list given a string", "name: t\nmatrix: {kernels: debian-stock, datapaths: [socket-lb]}\n", []string{"matrix.kernels"}, "want a list"},
		{"port as text", minimal + "service: {port: \"2049\"}\n", []string{"service.port"}, "whole number"},
		{"port fraction", minimal + "service: {port: 20.5}\n", []string{"service.port"}, "whole number"},
		{"shape and validation together", minimal + "foo: 1\nservice: {port: 70000}\n", []string{"foo", "service.port"}, "unknown field"},
		{"name", "name: My Test\nmatrix: {kernels: [debian-stock], datapaths: [socket-lb]}\n", []string{"name"}, "not a simple name"},
		{"unknown kernel", "name: t\nmatrix: {kernels: [debian-stock, debain-stock], datapaths: [socket-lb]}\n", []string{"matrix.kernels[1]"}, `did you mean "debian-stock"`},
		{"duplicate kernel path", "name: t\nmatrix: {kernels: [/k/bzImage, /k/./bzImage], datapaths: [socket-lb]}\n", []string{"matrix.kernels[1]"}, "listed twice"},
		{"kernels cannot be told apart", "name: t\nmatrix: {kernels: [/k/debian-stock, debian-stock, k/debian-stock], datapaths: [socket-lb]}\n", []string{"matrix.kernels[2]"}, "told apart"},
		{"unknown datapath", "name: t\nmatrix: {kernels: [debian-stock], datapaths: [kube-proxy, ipvs]}\n", []string{"matrix.datapaths[1]"}, `unknown datapath "ipvs" (want kube-proxy, kube-proxy-ipvs, kube-proxy-nftables or socket-lb)`},
		{"duplicate datapath", "name: t\nmatrix: {kernels: [debian-stock], datapaths: [socket-lb, socket-lb]}\n", []string{"matrix.datapaths[1]"}, "listed twice"},
		{"nfs 3", minimal + "matrix: {kernels: [debian-stock], datapaths: [socket-lb], nfs: [3]}\n", []string{""}, "already set"},
		{"nfs v2", "name: t\nmatrix: {kernels: [debian-stock], datapaths: [socket-lb], nfs: [\"4.1\", 2]}\n", []string{"matrix.nfs[1]"}, "not supported yet"},
		{"nfs unquoted 4.0", "name: t\nmatrix: {kernels: [debian-stock], datapaths: [socket-lb], nfs: [4.0]}\n", []string{"matrix.nfs[0]"}, "quotes"},
		{"nfs unknown", "name: t\nmatrix: {kernels: [debian-stock], datapaths: [socket-lb], nfs: [\"5\"]}\n", []string{"matrix.nfs[0]"}, "unknown NFS version"},
		{"fault", "name: t\nmatrix: {kernels: [debian-stock], datapaths: [socket-lb], faults: [delete-pd]}\n", []string{"matrix.faults[0]"}, `did you mean "delete-pod"`},
		{"default verdict", minimal + "expect: {default: ok}\n", []string{"expect.default"}, "unknown verdict"},
		{"rule verdict", minimal + "expect: {rules: [{match: {datapath: socket-lb}, verdict: bug}]}\n", []string{"expect.rules[0].verdict"}, "unknown verdict"},
		{"rule without verdict", minimal + "expect: {rules: [{match: {datapath: socket-lb}}]}\n", []string{"expect.rules[0].verdict"}, "missing"},
		{"rule reason of another verdict", minimal + "expect: {rules: [{match: {datapath: socket-lb}, verdict: recovered, reason: io-stuck}]}\n", []string{"expect.rules[0].reason"}, "not a reason of verdict recovered"},
		{"rule reason a lab failure", minimal + "expect: {rules: [{match: {datapath: socket-lb}, verdict: failed, reason: \"setup-error: mounted\"}]}\n", []string{"expect.rules[0].reason"}, "the lab's own failure"},
		{"rule reason errno", minimal + "expect: {rules: [{match: {datapath: socket-lb}, verdict: failed, reason: \"mount-refused: invalid\"}]}\n", []string{"expect.rules[0].reason"}, "errno name"},
		{"rule typo", minimal + "expect: {rules: [{match: {kernel: vulnerable-61, datapath: sockt-lb, nfs: \"4.9\", fault: kill}, verdict: failed}]}\n",
			[]string{"expect.rules[0].match.kernel", "expect.rules[0].match.datapath", "expect.rules[0].match.nfs", "expect.rules[0].match.fault"}, "unknown kernel"},
		{"vip not IPv4", minimal + "service: {vip: 'fd00::1'}\n", []string{"service.vip"}, "not an IPv4 address"},
		{"vip loopback", minimal + "service: {vip: 127.0.0.1}\n", []string{"service.vip"}, "not a unicast"},
		{"vip in node network", minimal + "service: {vip: 10.0.0.50}\n", []string{"service.vip"}, "inside topology.nodeCIDR"},
		{"port", minimal + "service: {port: 70000}\n", []string{"service.port"}, "not a TCP port"},
		{"negative port", minimal + "service: {port: -1}\n", []string{"service.port"}, "not a TCP port"},
		{"node cidr", minimal + "topology: {nodeCIDR: 10.0.0.1}\n", []string{"topology.nodeCIDR"}, "prefix length"},
		{"node cidr network address", minimal + "topology: {nodeCIDR: 10.0.0.0/24}\n", []string{"topology.nodeCIDR"}, "not a host address"},
		{"node cidr too small", minimal + "topology: {nodeCIDR: 10.0.0.1/30}\n", []string{"topology.nodeCIDR"}, "no room"},
		{"backend outside", minimal + "topology: {backendA: 10.0.1.11}\n", []string{"topology.backendA"}, "not inside"},
		{"backend is node", minimal + "topology: {backendB: 10.0.0.1}\n", []string{"topology.backendB"}, "node's own address"},
		{"backend broadcast", minimal + "topology: {backendB: 10.0.0.255}\n", []string{"topology.backendB"}, "broadcast"},
		{"backends equal", minimal + "topology: {backendA: 10.0.0.5, backendB: 10.0.0.5}\n", []string{"topology.backendB"}, "also backendA"},
		{"backend not an address", minimal + "topology: {backendA: pod-a}\n", []string{"topology.backendA"}, "not an IPv4 address"},
		{"mount option with comma", minimal + "mount: {options: [\"hard,timeo=10\"]}\n", []string{"mount.options[0]"}, "one option per list item"},
		{"mount option with space", minimal + "mount: {options: [\"hard timeo=10\"]}\n", []string{"mount.options[0]"}, "one option per list item"},
		{"mount option empty", minimal + "mount: {options: [hard, \"\"]}\n", []string{"mount.options[1]"}, "empty"},
		{"mount option vers", minimal + "mount: {options: [vers=4.1, NFSVERS=4, v4.2, minorversion=1]}\n",
			[]string{"mount.options[0]", "mount.options[1]", "mount.options[2]", "mount.options[3]"}, "matrix.nfs"},
		{"mount option addr", minimal + "mount: {options: [addr=10.0.0.11]}\n", []string{"mount.options[0]"}, "service.vip"},
		{"negative timeout", minimal + "timeouts: {setup: -5s}\n", []string{"timeouts.setup"}, "positive"},
		{"negative no-endpoint window", minimal + "failover: {noEndpointWindow: -1s}\n", []string{"failover.noEndpointWindow"}, "from 0s"},
		{"smb with an NFS version", "name: t\nmatrix: {kernels: [debian-stock], datapaths: [socket-lb], protocols: [smb], nfs: [\"4.1\"]}\n", []string{"matrix.nfs"}, "NFS versions apply to NFS cells"},
		{"unknown protocol", "name: t\nmatrix: {kernels: [debian-stock], datapaths: [socket-lb], protocols: [nfs, cifs]}\n", []string{"matrix.protocols[1]"}, "unknown protocol"},
		{"smb options override the lab's", "name: t\nmatrix: {kernels: [debian-stock], datapaths: [socket-lb], protocols: [smb]}\nmount: {smbOptions: [vers=1.0]}\n", []string{"mount.smbOptions[0]"}, "overrides"},
		{"stale endpoint too long", minimal + "failover: {staleEndpoint: 11m}\n", []string{"failover.staleEndpoint"}, "from 0s to 10m0s"},
		{"unknown socket-LB no-backend mode", minimal + "failover: {socketLBNoBackend: drop}\n", []string{"failover.socketLBNoBackend"}, "refuse or pass"},
		{"probe not shorter", minimal + "timeouts: {recovery: 10s, probe: 10s}\n", []string{"timeouts.probe"}, "not shorter"},
		{"bad duration hides follow-on", minimal + "timeouts: {recovery: 5x, probe: 2m}\n", []string{"timeouts.recovery", "timeouts.probe"}, "not a duration"},
		{"bad type hides follow-on", "name: t\nmatrix: {kernels: 5, datapaths: [socket-lb]}\n", []string{"matrix.kernels"}, "want a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, fields := parseProblems(t, tt.file)
			if e.File != "my.yaml" {
				t.Errorf("File %q", e.File)
			}
			if !reflect.DeepEqual(fields, tt.fields) {
				t.Errorf("fields %q, want %q\n%v", fields, tt.fields, e)
			}
			if !strings.Contains(e.Problems[0].Msg, tt.msg) {
				t.Errorf("first problem %q, want it to contain %q", e.Problems[0].Msg, tt.msg)
			}
			for _, line := range strings.Split(e.Error(), "\n") {
				if !strings.HasPrefix(line, "my.yaml: ") {
					t.Errorf("line %q does not name the file", line)
				}
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	e := &Error{File: "my.yaml", Problems: []Problem{
		{Field: "matrix.datapaths[1]", Msg: `unknown datapath "ipvs"`},
		{Msg: "line 3: bad"},
	}}
	want := "my.yaml: matrix.datapaths[1]: unknown datapath \"ipvs\"\nmy.yaml: line 3: bad"
	if got := e.Error(); got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if got := (&Error{}).Error(); got != "invalid scenario" {
		t.Errorf("empty error: %q", got)
	}
}

func TestDurationJSON(t *testing.T) {
	b, err := json.Marshal(Timeouts{Recovery: d("90s"), Probe: d("5s"), Setup: d("500ms")})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"recovery":"1m30s","probe":"5s","setup":"500ms"}`; string(b) != want {
		t.Errorf("marshal %s, want %s", b, want)
	}
	var got Timeouts
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Recovery.Duration != 90*time.Second || got.Setup.Duration != 500*time.Millisecond {
		t.Errorf("round trip %+v", got)
	}
	for _, bad := range []string{`{"probe":5}`, `{"probe":"5"}`, `{"probe":"soon"}`} {
		if err := json.Unmarshal([]byte(bad), &got); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
	if err := json.Unmarshal([]byte(`{"probe":null}`), &got); err != nil {
		t.Errorf("null: %v", err)
	}
}

func TestCells(t *testing.T) {
	s, err := Parse("good.yaml", []byte(goodFile))
	if err != nil {
		t.Fatal(err)
	}
	cells := s.Cells()
	want := []struct{ id, expected string }{
		{"debian-stock/kube-proxy/4.1/delete-pod", "recovered"},
		{"debian-stock/kube-proxy/4.2/delete-pod", "recovered"},
		{"debian-stock/socket-lb/4.1/delete-pod", "recovered"},
		{"debian-stock/socket-lb/4.2/delete-pod", "recovered"},
		{"vulnerable-6.1/kube-proxy/4.1/delete-pod", "recovered"},
		{"vulnerable-6.1/kube-proxy/4.2/delete-pod", "recovered"},
		{"vulnerable-6.1/socket-lb/4.1/delete-pod", "bug-reproduced"},
		{"vulnerable-6.1/socket-lb/4.2/delete-pod", "bug-reproduced"},
		{"bzImage/kube-proxy/4.1/delete-pod", "recovered"},
		{"bzImage/kube-proxy/4.2/delete-pod", "inconclusive"},
		{"bzImage/socket-lb/4.1/delete-pod", "recovered"},
		{"bzImage/socket-lb/4.2/delete-pod", "inconclusive"},
	}
	if len(cells) != len(want) {
		t.Fatalf("%d cells, want %d", len(cells), len(want))
	}
	for i, w := range want {
		c := cells[i]
		if c.Index != i || c.ID != w.id || c.Expected != w.expected {
			t.Errorf("cell %d: %d %s %s, want %d %s %s", i, c.Index, c.ID, c.Expected, i, w.id, w.expected)
		}
	}
	c := cells[8]
	want8 := Cell{
		Index: 8, ID: "bzImage/kube-proxy/4.1/delete-pod", Kernel: "/build/ctrl/arch/x86/boot/bzImage",
		Cluster: "netns", Datapath: "kube-proxy", Protocol: "nfs", NFS: "4.1", Fault: "delete-pod", Expected: "recovered",
		MountOptions: []string{"hard", "timeo=10", "retrans=2"}, VIP: "10.96.0.60", Port: 2050,
		NodeCIDR: "192.168.5.1/24", BackendA: "192.168.5.20", BackendB: "192.168.5.21",
		Timeouts:          Timeouts{Recovery: d("90s"), Probe: d("4s"), Setup: d("45s")},
		SocketLBNoBackend: NoBackendRefuse,
	}
	if !reflect.DeepEqual(c, want8) {
		t.Errorf("cell 8\ngot  %+v\nwant %+v", c, want8)
	}
	cells[0].MountOptions[0] = "soft"
	if s.Mount.Options[0] != "hard" || cells[1].MountOptions[0] != "hard" {
		t.Error("cells share the scenario's mount options")
	}
}

func TestKernelLabels(t *testing.T) {
	tests := []struct {
		kernels, labels []string
		ok              bool
	}{
		{[]string{"debian-stock", "vulnerable-6.1"}, []string{"debian-stock", "vulnerable-6.1"}, true},
		{[]string{"/boot/vmlinuz-6.1.0-56-amd64", "bzImage"}, []string{"vmlinuz-6.1.0-56-amd64", "bzImage"}, true},
		{[]string{"/src/vuln/arch/x86/boot/bzImage", "/src/ctrl/arch/x86/boot/bzImage", "/k/other"},
			[]string{"vuln_arch_x86_boot_bzImage", "ctrl_arch_x86_boot_bzImage", "other"}, true},
		{[]string{"debian-stock", "./k/debian-stock"}, []string{"debian-stock", "k_debian-stock"}, true},
		{[]string{"/a/b", "a/b"}, []string{"a_b", "a_b"}, false},
	}
	for _, tt := range tests {
		labels, ok := kernelLabels(tt.kernels)
		if ok != tt.ok || !reflect.DeepEqual(labels, tt.labels) {
			t.Errorf("kernelLabels(%q) = %q, %v; want %q, %v", tt.kernels, labels, ok, tt.labels, tt.ok)
		}
	}
}

func TestExpectationRules(t *testing.T) {
	base := "name: t\nmatrix: {kernels: [debian-stock, vulnerable-6.1], datapaths: [kube-proxy, socket-lb]}\n"
	tests := []struct {
		name   string
		expect string
		want   map[string]string // cell ID prefix (kernel/datapath) → expected
	}{
		{"default only", "expect: {default: failed}", map[string]string{
			"debian-stock/kube-proxy": "failed", "debian-stock/socket-lb": "failed",
			"vulnerable-6.1/kube-proxy": "failed", "vulnerable-6.1/socket-lb": "failed"}},
		{"one rule", "expect: {rules: [{match: {kernel: vulnerable-6.1, datapath: socket-lb}, verdict: bug-reproduced}]}", map[string]string{
			"debian-stock/kube-proxy": "recovered", "debian-stock/socket-lb": "recovered",
			"vulnerable-6.1/kube-proxy": "recovered", "vulnerable-6.1/socket-lb": "bug-reproduced"}},
		{"first match wins", "expect: {rules: [{match: {datapath: socket-lb}, verdict: inconclusive}, {match: {kernel: vulnerable-6.1}, verdict: bug-reproduced}]}", map[string]string{
			"debian-stock/kube-proxy": "recovered", "debian-stock/socket-lb": "inconclusive",
			"vulnerable-6.1/kube-proxy": "bug-reproduced", "vulnerable-6.1/socket-lb": "inconclusive"}},
		{"empty match matches all", "expect: {default: recovered, rules: [{match: {}, verdict: failed}]}", map[string]string{
			"debian-stock/kube-proxy": "failed", "debian-stock/socket-lb": "failed",
			"vulnerable-6.1/kube-proxy": "failed", "vulnerable-6.1/socket-lb": "failed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse("t.yaml", []byte(base+tt.expect+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range s.Cells() {
				key := c.Kernel + "/" + c.Datapath
				if c.Expected != tt.want[key] {
					t.Errorf("%s: %s, want %s", c.ID, c.Expected, tt.want[key])
				}
			}
		})
	}
}

// TestExpectedReason: a rule's reason reaches the cells it decides, and AllCells lists them
// all with it even after SelectCell.
func TestExpectedReason(t *testing.T) {
	s, err := Parse("t.yaml", []byte("name: t\nmatrix: {kernels: [debian-stock], datapaths: [kube-proxy, socket-lb]}\n"+
		"expect: {rules: [{match: {datapath: socket-lb}, verdict: failed, reason: \"mount-refused: EINVAL\"}]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	hash := s.Hash()
	if err := s.SelectCell("debian-stock/kube-proxy/4.1/delete-pod"); err != nil {
		t.Fatal(err)
	}
	all := s.AllCells()
	if len(all) != 2 || len(s.Cells()) != 1 || s.Hash() != hash || !strings.HasPrefix(hash, "sha256:") {
		t.Fatalf("%d cells in all, %d selected, hash %s then %s", len(all), len(s.Cells()), hash, s.Hash())
	}
	if all[0].Expected != "recovered" || all[0].ExpectedReason != "" || all[1].Expected != "failed" || all[1].ExpectedReason != "mount-refused: EINVAL" {
		t.Errorf("cells expect %s %q and %s %q", all[0].Expected, all[0].ExpectedReason, all[1].Expected, all[1].ExpectedReason)
	}
}

// TestHash: the hash changes with the scenario's contents and with the axes --kernel,
// --cluster and --datapath replace.
func TestHash(t *testing.T) {
	parse := func(data string) *Scenario {
		t.Helper()
		s, err := Parse("t.yaml", []byte(data))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a := parse(minimal)
	if a.Hash() != parse(minimal).Hash() {
		t.Error("one file, two hashes")
	}
	if a.Hash() == parse(minimal+"timeouts: {probe: 7s}\n").Hash() {
		t.Error("a changed timeout kept the hash")
	}
	if a.Hash() == parse(minimal+"expect: {default: failed}\n").Hash() {
		t.Error("a changed expectation kept the hash")
	}
	b := parse("name: t\nmatrix: {kernels: [debian-stock], datapaths: [socket-lb, kube-proxy]}\n")
	if err := b.Filter(Override{Datapaths: []string{"socket-lb"}}); err != nil {
		t.Fatal(err)
	}
	if b.Hash() != a.Hash() {
		t.Error("the same matrix after --datapath has another hash")
	}
}

func TestWarnings(t *testing.T) {
	s, err := Parse("t.yaml", []byte(minimal+`expect: {rules: [
  {match: {kernel: vulnerable-6.1}, verdict: bug-reproduced},
  {match: {datapath: socket-lb}, verdict: failed},
  {match: {nfs: "4.1"}, verdict: inconclusive}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"expect.rules[0] matches no cell of this matrix",
		"expect.rules[2] only matches cells that earlier rules already decide",
	}
	if got := s.Warnings(); !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestFilter(t *testing.T) {
	load := func() *Scenario {
		s, err := Parse("f.yaml", []byte("name: f\nmatrix: {kernels: [debian-stock, vulnerable-6.1], datapaths: [kube-proxy, socket-lb]}\n"+
			"expect: {rules: [{match: {kernel: vulnerable-6.1, datapath: socket-lb}, verdict: bug-reproduced}]}\n"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tests := []struct {
		name               string
		kernels, datapaths []string
		ids                []string
		errField           string
	}{
		{"nothing", nil, nil, []string{"debian-stock/kube-proxy/4.1/delete-pod", "debian-stock/socket-lb/4.1/delete-pod",
			"vulnerable-6.1/kube-proxy/4.1/delete-pod", "vulnerable-6.1/socket-lb/4.1/delete-pod"}, ""},
		{"kernel", []string{"vulnerable-6.1"}, nil, []string{"vulnerable-6.1/kube-proxy/4.1/delete-pod", "vulnerable-6.1/socket-lb/4.1/delete-pod"}, ""},
		{"datapath", nil, []string{"socket-lb"}, []string{"debian-stock/socket-lb/4.1/delete-pod", "vulnerable-6.1/socket-lb/4.1/delete-pod"}, ""},
		{"kernel path", []string{"/tmp/bzImage"}, []string{"kube-proxy"}, []string{"bzImage/kube-proxy/4.1/delete-pod"}, ""},
		{"unknown datapath", nil, []string{"socket-lb", "ipvs"}, nil, "--datapath[1]"},
		{"unknown kernel", []string{"stock"}, nil, nil, "--kernel[0]"},
		{"duplicate", []string{"debian-stock", "debian-stock"}, nil, nil, "--kernel[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := load()
			before := s.Cells()
			err := s.Filter(Override{Kernels: tt.kernels, Datapaths: tt.datapaths})
			if tt.errField != "" {
				var e *Error
				if !errors.As(err, &e) || e.Problems[0].Field != tt.errField {
					t.Fatalf("error %v, want one about %s", err, tt.errField)
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
		})
	}
}

func TestLoad(t *testing.T) {
	fsys := fstest.MapFS{
		"default.yaml": {Data: []byte("name: default\ndescription: The default.\n" + minimal[len("name: t\n"):])},
		"other.yaml":   {Data: []byte("name: other\ndescription: Another.\n" + minimal[len("name: t\n"):])},
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "mine.yaml")
	if err := os.WriteFile(path, []byte(strings.Replace(minimal, "name: t", "name: mine", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: bad\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ref, name, errText string
	}{
		{"default", "default", ""},
		{"other.yaml", "other", ""},
		{path, "mine", ""},
		{bad, "", bad + ": matrix.kernels: missing"},
		{"nope", "", "no such built-in (default, other)"},
		{filepath.Join(dir, "nope.yaml"), "", "no such file"},
		{"", "", "no scenario given"},
	}
	for _, tt := range tests {
		s, err := Load(tt.ref, fsys)
		if tt.errText != "" {
			if err == nil || !strings.Contains(err.Error(), tt.errText) {
				t.Errorf("Load(%q): error %v, want %q", tt.ref, err, tt.errText)
			}
			continue
		}
		if err != nil {
			t.Errorf("Load(%q): %v", tt.ref, err)
			continue
		}
		if s.Name != tt.name {
			t.Errorf("Load(%q): name %q, want %q", tt.ref, s.Name, tt.name)
		}
	}
	if s, err := Load(path, nil); err != nil || s.Name != "mine" {
		t.Errorf("Load without built-ins: %v", err)
	}
}

func TestBuiltins(t *testing.T) {
	fsys := fstest.MapFS{
		"b.yaml":    {Data: []byte("name: b\ndescription: Bee.\n" + minimal[len("name: t\n"):])},
		"a.yaml":    {Data: []byte("name: a\ndescription: Ay.\n" + minimal[len("name: t\n"):])},
		"notes.txt": {Data: []byte("not a scenario")},
	}
	got, err := Builtins(fsys)
	if err != nil {
		t.Fatal(err)
	}
	want := []Summary{{"a", "Ay."}, {"b", "Bee."}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	fsys["c.yaml"] = &fstest.MapFile{Data: []byte("name: [")}
	if _, err := Builtins(fsys); err == nil || !strings.Contains(err.Error(), "c.yaml") {
		t.Errorf("broken built-in: %v", err)
	}
}

// FuzzParse checks that Parse never panics, that its errors are *Error with at least one
// problem, and that whatever it accepts re-validates, expands to at least one cell with valid
// verdicts, unique IDs, a setup timeout and only values its cluster form has, and survives a
// JSON round trip.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("../../scenarios/*.yaml")
	for _, p := range files {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	for _, s := range []string{
		goodFile, minimal, "", "- a", "name: [", "name: t\nname: u\n", "\tname: t",
		minimal + "timeouts: {probe: 5}\n", minimal + "timeouts: {recovery: -1s}\n",
		minimal + "expect: {rules: [{match: {kernel: x}, verdict: y}]}\n",
		minimal + "mount: {options: [\"a,b\", \"\"]}\n", minimal + "topology: {nodeCIDR: 10.0.0.1/31}\n",
		"name: t\nmatrix: {kernels: [/a/b, a/b], datapaths: [socket-lb], nfs: [4.0, 3]}\n",
		"a: &a [*a]\n", "? [a]\n: b\n", "name: !!binary aGVsbG8=\n",
		"name: t\nmatrix: {kernels: [vulnerable-5.10, debian-stock], clusters: [kind, netns], datapaths: [kube-proxy-nftables, socket-lb], nfs: [\"3\", \"4.2\"], faults: [force-delete, node-crash]}\n",
		"name: t\nmatrix: {kernels: [debian-stock], clusters: [kind], datapaths: [kube-proxy-ipvs], protocols: [smb]}\nfailover: {noEndpointWindow: 5s}\n",
		"name: t\nmatrix: {kernels: [debian-stock], clusters: [netns, kind], datapaths: [kube-proxy-ipvs], faults: [node-crash]}\n",
		"name: t\nmatrix: {kernels: [debian-stock], clusters: [kind], datapaths: [socket-lb]}\nexpect: {rules: [{match: {cluster: kind}, verdict: failed}]}\ntimeouts: {setup: 0s}\n",
		minimal + "expect: {rules: [{match: {datapath: socket-lb}, verdict: failed, reason: \"mount-refused: EINVAL\"}]}\n",
		"name: t\nmatrix: {kernels: [debian-stock], clusters: [kind], datapaths: [cilium, cilium-kind-cgroup]}\nkind: {nodes: 2}\ncilium: {versions: [v1.19.7, v1.15.19]}\n",
		minimal + "cilium: {versions: [v1.20.2]}\nexpect: {rules: [{match: {datapath: cilium-hostns-only}, verdict: failed}]}\n",
		minimal + "expect: {rules: [{match: {}, verdict: failed, reason: \"setup-error: x\"}, {match: {}, verdict: bug-reproduced, reason: [a]}]}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("fuzz.yaml", data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || len(e.Problems) == 0 || e.Error() == "" {
				t.Fatalf("error %T %q is not an *Error with problems", err, err)
			}
			if s != nil {
				t.Fatal("scenario returned with an error")
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("parsed scenario does not re-validate: %v", err)
		}
		cells := s.Cells()
		if len(cells) == 0 {
			t.Fatal("no cells")
		}
		ids := map[string]bool{}
		for i, c := range cells {
			if c.Index != i {
				t.Fatalf("cell %d has index %d", i, c.Index)
			}
			if ids[c.ID] {
				t.Fatalf("duplicate cell ID %q", c.ID)
			}
			ids[c.ID] = true
			if !verdict.Verdict(c.Expected).Valid() {
				t.Fatalf("cell %s expects %q", c.ID, c.Expected)
			}
			if c.ExpectedReason != "" && verdict.ReasonProblem(verdict.Verdict(c.Expected), verdict.Code(c.ExpectedReason)) != "" {
				t.Fatalf("cell %s expects %s for a reason it cannot come with: %q", c.ID, c.Expected, c.ExpectedReason)
			}
			if c.Timeouts.Setup.Duration <= 0 {
				t.Fatalf("cell %s has setup timeout %s", c.ID, c.Timeouts.Setup)
			}
			f := formOf(c.Cluster)
			if !contains(s.Matrix.Clusters, c.Cluster) || !contains(f.datapaths, c.Datapath) || !contains(f.protocols, c.Protocol) || !contains(f.faults, c.Fault) ||
				(c.Protocol == ProtocolNFS && !contains(f.versions, c.NFS)) {
				t.Fatalf("cell %s is not one its cluster form %q has", c.ID, c.Cluster)
			}
		}
		js, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		s2, err := Parse("roundtrip.json", js)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", js, err)
		}
		if !reflect.DeepEqual(s, s2) {
			t.Fatalf("round trip changed the scenario:\n%+v\n%+v", s, s2)
		}
	})
}

func TestCellsProtocols(t *testing.T) {
	s, err := Parse("smb.yaml", []byte(`name: t
matrix: {kernels: [debian-stock], datapaths: [socket-lb], protocols: [nfs, smb], nfs: ["4.1", "4.2"]}
mount: {options: [hard, timeo=10], smbOptions: [hard]}
expect:
  default: recovered
  rules:
    - match: {protocol: smb}
      verdict: bug-reproduced
`))
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		ID, Protocol, Version, Expected string
		Port                            int
		Options                         string
	}
	var cells []got
	for _, c := range s.Cells() {
		cells = append(cells, got{c.ID, c.Protocol, c.NFS, c.Expected, c.Port, strings.Join(c.MountOptions, ",")})
	}
	want := []got{
		{"debian-stock/socket-lb/4.1/delete-pod", "nfs", "4.1", "recovered", 2049, "hard,timeo=10"},
		{"debian-stock/socket-lb/4.2/delete-pod", "nfs", "4.2", "recovered", 2049, "hard,timeo=10"},
		{"debian-stock/socket-lb/smb3/delete-pod", "smb", "smb3", "bug-reproduced", 445, "hard"},
	}
	if !reflect.DeepEqual(cells, want) {
		t.Errorf("cells\n got %+v\nwant %+v", cells, want)
	}
	// An SMB-only scenario gets no NFS default.
	s, err = Parse("smb.yaml", []byte("name: t\nmatrix: {kernels: [debian-stock], datapaths: [socket-lb], protocols: [smb]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c := s.Cells(); len(c) != 1 || c[0].NFS != "smb3" {
		t.Errorf("SMB-only cells %+v", c)
	}
}

// parseProblems parses file as my.yaml, which must fail with an *Error, and returns it with
// the fields of its problems in order.
func parseProblems(t *testing.T, file string) (*Error, []string) {
	t.Helper()
	_, err := Parse("my.yaml", []byte(file))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %v, want *Error", err, err)
	}
	var fields []string
	for _, p := range e.Problems {
		fields = append(fields, p.Field)
	}
	return e, fields
}
