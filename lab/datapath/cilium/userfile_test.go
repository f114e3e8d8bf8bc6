package cilium

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseValues(t *testing.T) {
	tests := []struct {
		name, data string
		datapaths  []string
		want       map[string]any
		wantErr    string
	}{
		{"empty file", "", []string{VMRootSocketLB}, map[string]any{}, ""},
		{"values nfslab leaves alone", "bpf:\n  masquerade: false\nk8sClientRateLimit: {qps: 10}\nloadBalancer: {algorithm: maglev}\n",
			[]string{VMRootSocketLB}, map[string]any{"bpf": map[string]any{"masquerade": false},
				"k8sClientRateLimit": map[string]any{"qps": int64(10)}, "loadBalancer": map[string]any{"algorithm": "maglev"}}, ""},
		{"an owned key", "kubeProxyReplacement: false\n", []string{VMRootSocketLB}, nil,
			"values.yaml: kubeProxyReplacement: set by nfslab for datapath cilium; remove it"},
		{"a nested owned key", "socketLB:\n  enabled: false\n", []string{KindCgroup}, nil,
			"values.yaml: socketLB.enabled: set by nfslab for datapath cilium-kind-cgroup; remove it"},
		{"a key nfslab keeps at the default for this datapath", "cgroup: {hostRoot: /sys/fs/cgroup}\n", []string{KindCgroup}, nil,
			"values.yaml: cgroup.hostRoot: left at Cilium's default by nfslab for datapath cilium-kind-cgroup"},
		{"the datapath that sets it is named", "socketLB: {hostNamespaceOnly: false}\n", []string{VMRootSocketLB, HostNSOnly}, nil,
			"values.yaml: socketLB.hostNamespaceOnly: set by nfslab for datapath cilium-hostns-only; remove it"},
		{"an owned key's parent that is not a mapping", "image: quay.io/cilium/cilium:v1.19.7\n", []string{VMRootSocketLB}, nil,
			"values.yaml: image: nfslab sets image.override below it, so it must be a mapping"},
		{"every problem", "hubble: {enabled: true}\nl7Proxy: true\n", []string{VMRootSocketLB}, nil,
			"values.yaml: hubble.enabled: set by nfslab for datapath cilium; remove it\nvalues.yaml: l7Proxy: set by nfslab for datapath cilium; remove it"},
		{"not YAML", "a: [b\n", []string{VMRootSocketLB}, nil, "values.yaml: not YAML: "},
		{"a duplicate key", "a: 1\na: 2\n", []string{VMRootSocketLB}, nil, `values.yaml: not YAML: `},
		{"a list", "- a\n", []string{VMRootSocketLB}, nil, "values.yaml: want a mapping of Helm values (key: value), got a list"},
		{"a scalar", "hello\n", []string{VMRootSocketLB}, nil, "values.yaml: want a mapping of Helm values (key: value), got a text"},
		{"too big", "a: " + strings.Repeat("x", MaxValuesFileSize) + "\n", []string{VMRootSocketLB}, nil, "more than the 1048576 a values file may have"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseValues("values.yaml", []byte(tt.data), tt.datapaths)
			if tt.wantErr != "" {
				var ve *ValuesError
				if !errors.As(err, &ve) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseValues error = %v, want a *ValuesError containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseValues = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestMerge(t *testing.T) {
	user := map[string]any{"bpf": map[string]any{"masquerade": false}, "image": map[string]any{"repository": "x"}, "socketLB": "odd"}
	nfslab := map[string]any{"image": map[string]any{"override": "local"}, "socketLB": map[string]any{"enabled": true}}
	got := Merge(user, nfslab)
	want := map[string]any{"bpf": map[string]any{"masquerade": false}, "image": map[string]any{"repository": "x", "override": "local"},
		"socketLB": map[string]any{"enabled": true}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Merge = %#v, want %#v", got, want)
	}
	got["socketLB"].(map[string]any)["enabled"] = false
	if nfslab["socketLB"].(map[string]any)["enabled"] != true || len(user["image"].(map[string]any)) != 1 {
		t.Error("Merge's result aliases its inputs")
	}
}

// FuzzParseValues: whatever the file, ParseValues does not panic, and a file it accepts sets no
// key nfslab owns, so that merging nfslab's values on top keeps every one of them.
func FuzzParseValues(f *testing.F) {
	for _, s := range []string{"", "a: 1\n", "kubeProxyReplacement: false\n", "image: x\n", "cgroup: {autoMount: {enabled: true}}\n",
		"socketLB: [1, 2]\n", "a: &x {b: *x}\n", "- 1\n", "{a: 1e400}\n", "~\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		vals, err := ParseValues("f.yaml", data, Datapaths())
		if err != nil {
			var ve *ValuesError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 || !strings.HasPrefix(err.Error(), "f.yaml: ") {
				t.Fatalf("error %v: want a *ValuesError naming the file", err)
			}
			return
		}
		for _, k := range Owned() {
			if lookup(vals, k) {
				t.Fatalf("accepted a file that sets %s", k)
			}
		}
		req, err := Required(HostNSOnly, testSetup())
		if err != nil {
			t.Fatal(err)
		}
		merged := Merge(vals, req)
		for _, k := range leaves(req, "") {
			if !lookup(merged, k) {
				t.Fatalf("merged values lost %s", k)
			}
		}
	})
}
