package cilium

import "testing"

func TestParseHostEndpointState(t *testing.T) {
	tests := []struct {
		name  string
		out   string
		state string
		ok    bool
		err   bool
	}{
		{"host regenerating", `[{"id":12,"status":{"state":"ready","identity":{"id":4,"labels":["reserved:health"]}}},
			{"id":55,"status":{"state":"regenerating","identity":{"id":1,"labels":["reserved:host","reserved:kube-apiserver"]}}}]`, "regenerating", true, false},
		{"host ready", `[{"id":55,"status":{"state":"ready","identity":{"id":1,"labels":["reserved:host"]}}}]`, "ready", true, false},
		{"no host endpoint", `[{"id":12,"status":{"state":"ready"}}]`, "", false, false},
		{"empty", `[]`, "", false, false},
		{"not JSON", `Error: cannot connect`, "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, ok, err := ParseHostEndpointState([]byte(tt.out))
			if state != tt.state || ok != tt.ok || (err != nil) != tt.err {
				t.Errorf("= %q, %v, %v; want %q, %v, error %v", state, ok, err, tt.state, tt.ok, tt.err)
			}
		})
	}
}
