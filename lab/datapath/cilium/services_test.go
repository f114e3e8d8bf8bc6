package cilium

import (
	"net/netip"
	"testing"
)

// serviceList is `cilium-dbg service list -o json`'s shape (v1.19): the API server's service,
// and the NFS service mid-failover (the old backend terminating, its spec already updated).
const serviceList = `[
 {"spec": {"frontend-address": {"ip": "10.96.0.1", "port": 443, "protocol": "TCP", "scope": "external"},
   "backend-addresses": [{"ip": "172.18.0.2", "port": 6443, "state": "active"}], "id": 1},
  "status": {"realized": {"frontend-address": {"ip": "10.96.0.1", "port": 443},
   "backend-addresses": [{"ip": "172.18.0.2", "port": 6443, "state": "active"}], "id": 1}}},
 {"spec": {"frontend-address": {"ip": "10.96.12.34", "port": 2049, "protocol": "TCP"},
   "backend-addresses": [{"ip": "10.244.0.9", "port": 2049, "state": "active"}], "id": 7},
  "status": {"realized": {"frontend-address": {"ip": "10.96.12.34", "port": 2049},
   "backend-addresses": [{"ip": "10.244.0.5", "port": 2049, "state": "terminating"}, {"ip": "10.244.0.9", "port": 2049, "state": "active"}], "id": 7}}},
 {"spec": {"frontend-address": {"ip": "10.96.99.1", "port": 2049}, "backend-addresses": [], "id": 8}}
]`

func TestParseServiceBackends(t *testing.T) {
	tests := []struct {
		name     string
		frontend string
		want     string
		ok       bool
	}{
		{"realized wins over spec", "10.96.12.34:2049", "10.244.0.5:2049 (terminating), 10.244.0.9:2049 (active)", true},
		{"no backends (spec only)", "10.96.99.1:2049", "none", true},
		{"another port of the same address", "10.96.12.34:111", "", false},
		{"not in the table", "10.96.0.77:2049", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs, ok, err := ParseServiceBackends([]byte(serviceList), netip.MustParseAddrPort(tt.frontend))
			if err != nil || ok != tt.ok {
				t.Fatalf("ParseServiceBackends = %v, %v, %v", bs, ok, err)
			}
			if ok && FormatBackends(bs) != tt.want {
				t.Errorf("backends %s, want %s", FormatBackends(bs), tt.want)
			}
		})
	}
	if _, _, err := ParseServiceBackends([]byte("ID   Frontend"), netip.MustParseAddrPort("10.96.0.1:443")); err == nil {
		t.Error("the text table parsed as JSON")
	}
}

// FuzzParseServiceBackends: whatever the agent prints, the parser returns or errs, never panics.
func FuzzParseServiceBackends(f *testing.F) {
	f.Add([]byte(serviceList))
	f.Add([]byte(`[{"spec": null}, {"status": {"realized": null}}, {"spec": {"backend-addresses": [{"ip": null}]}}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = ParseServiceBackends(b, netip.MustParseAddrPort("10.96.12.34:2049"))
	})
}
