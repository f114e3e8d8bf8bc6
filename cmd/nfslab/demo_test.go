package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemoBadInput: nfslab demo takes the selection flags of run and checks them the same way:
// exit 2 with what is wrong, before anything is created. (The demo itself boots a VM: see
// test/e2e/demo_test.go.)
func TestDemoBadInput(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr []string
	}{
		{"an argument", []string{"demo", "scenarios/fidelity.yaml"}, []string{"unknown command", "demo"}},
		{"unknown datapath", []string{"demo", "--datapath", "ipvs"}, []string{"--datapath", "ipvs"}},
		{"unknown kernel", []string{"demo", "--kernel", "vulnerable-9.9"}, []string{"vulnerable-9.9"}},
		{"unknown cell", []string{"demo", "--scenario", "fidelity", "--cell", "nope/socket-lb/4.1/delete-pod"}, []string{"--cell", "vulnerable-6.1/socket-lb/4.1/delete-pod"}},
		{"a cell the filter removed", []string{"demo", "--scenario", "fidelity", "--datapath", "kube-proxy", "--cell", "vulnerable-6.1/socket-lb/4.1/delete-pod"}, []string{"--cell", "vulnerable-6.1/kube-proxy/4.1/delete-pod"}},
		{"bad accelerator", []string{"demo", "--accel", "warp"}, []string{"--accel", "warp"}},
		{"unknown scenario", []string{"demo", "--scenario", "nope"}, []string{`"nope"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tt.args, &stdout, &stderr); code != exitUsage {
				t.Errorf("exit %d, want %d; stderr: %s", code, exitUsage, stderr.String())
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q does not contain %q", stderr.String(), w)
				}
			}
			if runs, _ := filepath.Glob(filepath.Join(os.Getenv("NFSLAB_RUN_DIR"), "*.json")); len(runs) > 0 {
				t.Errorf("bad input left run records %v", runs)
			}
			if work, _ := filepath.Glob(filepath.Join(os.TempDir(), "nfslab-run-*")); len(work) > 0 {
				t.Errorf("bad input left work directories %v", work)
			}
		})
	}
}

// TestDemoNextOutsideTheDemo: nfslab-next anywhere but in the demo's shell says where it works.
func TestDemoNextOutsideTheDemo(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"agent-demo-next"}, &stdout, &stderr); code == 0 {
		t.Fatalf("exit 0 outside a demo; stdout %q", stdout.String())
	}
	if !strings.Contains(stderr.String(), "nfslab-next works only in the shell of nfslab demo") {
		t.Errorf("stderr %q", stderr.String())
	}
}
