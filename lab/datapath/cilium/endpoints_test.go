package cilium

import "testing"

func TestParseHostEndpoint(t *testing.T) {
	tests := []struct {
		name string
		out  string
		want HostEndpoint
		ok   bool
		err  bool
	}{
		{"host regenerating", `[{"id":12,"status":{"state":"ready","identity":{"id":4,"labels":["reserved:health"]}}},
			{"id":55,"status":{"state":"regenerating","identity":{"id":1,"labels":["reserved:host","reserved:kube-apiserver"]}}}]`, HostEndpoint{State: "regenerating"}, true, false},
		{"host ready", `[{"id":55,"status":{"state":"ready","identity":{"id":1,"labels":["reserved:host"]}}}]`, HostEndpoint{State: "ready"}, true, false},
		{"the newest log entry, whatever the order", `[{"id":55,"status":{"state":"waiting-to-regenerate","identity":{"id":1,"labels":["reserved:host"]},"log":[
			{"code":"OK","message":"Regenerating endpoint: datapath ipcache","state":"regenerating","timestamp":"2026-12-06T18:52:01Z"},
			{"code":"Failure","message":"Error regenerating endpoint: context deadline exceeded","state":"waiting-to-regenerate","timestamp":"2026-12-06T18:58:03Z"},
			{"code":"OK","message":"Endpoint creation","state":"waiting-for-identity","timestamp":"2026-12-06T18:51:40Z"}]}}]`,
			HostEndpoint{State: "waiting-to-regenerate", Last: "waiting-to-regenerate: Error regenerating endpoint: context deadline exceeded"}, true, false},
		{"no host endpoint", `[{"id":12,"status":{"state":"ready"}}]`, HostEndpoint{}, false, false},
		{"empty", `[]`, HostEndpoint{}, false, false},
		{"not JSON", `Error: cannot connect`, HostEndpoint{}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := ParseHostEndpoint([]byte(tt.out))
			if got != tt.want || ok != tt.ok || (err != nil) != tt.err {
				t.Errorf("= %+v, %v, %v; want %+v, %v, error %v", got, ok, err, tt.want, tt.ok, tt.err)
			}
		})
	}
}
