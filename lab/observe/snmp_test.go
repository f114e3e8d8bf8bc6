package observe

import (
	"strings"
	"testing"
)

func TestParseTCPActiveOpens(t *testing.T) {
	const real = "Ip: Forwarding DefaultTTL InReceives\nIp: 1 64 1234\n" +
		"Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails\n" +
		"Tcp: 1 200 120000 -1 57 3 12\n" +
		"Udp: InDatagrams NoPorts\nUdp: 5 0\n"
	tests := []struct {
		name    string
		in      string
		want    uint64
		wantErr string
	}{
		{"real", real, 57, ""},
		{"no tcp", "Ip: Forwarding\nIp: 1\n", 0, "no Tcp"},
		{"header only", "Tcp: ActiveOpens\n", 0, "no Tcp"},
		{"no such column", "Tcp: RtoMin\nTcp: 200\n", 0, "no ActiveOpens"},
		{"not a number", "Tcp: ActiveOpens\nTcp: x\n", 0, "ActiveOpens \"x\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTCPActiveOpens(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("= %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}
