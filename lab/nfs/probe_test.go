package nfs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestProbe(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		seq     int
		wantErr string
	}{
		{name: "no baseline", setup: func(*testing.T, string) {}, seq: 1},
		{name: "with baseline", setup: func(t *testing.T, dir string) {
			if err := WriteBaseline(dir); err != nil {
				t.Fatal(err)
			}
		}, seq: 2},
		{name: "same seq twice overwrites", setup: func(t *testing.T, dir string) {
			if err := Probe(dir, 3); err != nil {
				t.Fatal(err)
			}
		}, seq: 3},
		{name: "stale longer probe file is truncated", setup: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, ProbeName(4)), make([]byte, 3*probeSize), 0o644); err != nil {
				t.Fatal(err)
			}
		}, seq: 4},
		{name: "changed baseline", setup: func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, BaselineName), []byte("other"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, seq: 5, wantErr: "baseline has changed"},
		{name: "baseline unreadable", setup: func(t *testing.T, dir string) {
			if err := os.Mkdir(filepath.Join(dir, BaselineName), 0o755); err != nil {
				t.Fatal(err)
			}
		}, seq: 6, wantErr: "read baseline"},
		{name: "directory missing", setup: func(t *testing.T, dir string) {
			if err := os.Remove(dir); err != nil {
				t.Fatal(err)
			}
		}, seq: 7, wantErr: "write"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "mnt")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			tt.setup(t, dir)
			err := Probe(dir, tt.seq)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(dir, ProbeName(tt.seq)))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != probeSize || !strings.HasPrefix(string(got), "nfslab probe ") {
				t.Fatalf("probe file: %d bytes, starts %q", len(got), got[:min(len(got), 20)])
			}
		})
	}
}

func TestProbePayloadsDiffer(t *testing.T) {
	seen := map[string]int{string(baselinePayload()): -1}
	for seq := range 60 {
		p := string(probePayload(seq))
		if len(p) != probeSize {
			t.Fatalf("payload %d has %d bytes", seq, len(p))
		}
		if prev, dup := seen[p]; dup {
			t.Fatalf("payloads %d and %d are equal", prev, seq)
		}
		seen[p] = seq
	}
}
