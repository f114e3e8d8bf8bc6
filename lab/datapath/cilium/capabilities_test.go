package cilium

import (
	"reflect"
	"testing"
)

func TestWithBpftoolCapabilities(t *testing.T) {
	defaults := map[string]any{"securityContext": map[string]any{"capabilities": map[string]any{
		"ciliumAgent": []any{"NET_ADMIN", "SYS_ADMIN"}, "cleanCiliumState": []any{"NET_ADMIN"}}}}
	userList := func(caps ...any) map[string]any {
		return map[string]any{"securityContext": map[string]any{"capabilities": map[string]any{"ciliumAgent": caps}}}
	}
	tests := []struct {
		name     string
		version  string
		values   map[string]any
		defaults map[string]any
		want     []any // the agent's list in the result; nil: not set
		wantErr  bool
	}{
		{"newer agent probes in Go", "v1.19.7", map[string]any{"l7Proxy": false}, defaults, nil, false},
		{"v1.18.3 probes in Go", "v1.18.3", map[string]any{}, defaults, nil, false},
		{"chart default extended", "v1.15.19", map[string]any{"l7Proxy": false}, defaults,
			[]any{"NET_ADMIN", "SYS_ADMIN", "BPF", "PERFMON"}, false},
		{"v1.17.8 too", "v1.17.8", map[string]any{}, defaults, []any{"NET_ADMIN", "SYS_ADMIN", "BPF", "PERFMON"}, false},
		{"a user's list extended, not the chart's", "v1.15.19", userList("SYS_ADMIN", "BPF"), defaults,
			[]any{"SYS_ADMIN", "BPF", "PERFMON"}, false},
		{"nothing twice", "v1.15.19", userList("PERFMON", "BPF"), defaults, []any{"PERFMON", "BPF"}, false},
		{"chart without the key", "v1.15.19", map[string]any{}, map[string]any{}, nil, true},
		{"a list that is not one", "v1.15.19", map[string]any{"securityContext": map[string]any{
			"capabilities": map[string]any{"ciliumAgent": "SYS_ADMIN"}}}, defaults, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := Merge(nil, tt.values)
			got, err := WithBpftoolCapabilities(tt.version, tt.values, tt.defaults)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %t", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if tt.want == nil {
				if !reflect.DeepEqual(got, tt.values) {
					t.Errorf("values changed to %v, want them as they were", got)
				}
			} else if list, _ := get(got, AgentCapabilitiesKey); !reflect.DeepEqual(list, tt.want) {
				t.Errorf("%s = %v, want %v", AgentCapabilitiesKey, list, tt.want)
			}
			if !reflect.DeepEqual(tt.values, before) {
				t.Errorf("input changed: %v, was %v", tt.values, before)
			}
			if _, ok := get(got, "l7Proxy"); ok != lookup(tt.values, "l7Proxy") {
				t.Errorf("l7Proxy lost or added: %v", got)
			}
		})
	}
}
