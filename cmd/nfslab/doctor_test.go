package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDoctorExitCodes checks doctor's contract: 0 nothing at risk, 1 at risk or unknown where
// it matters, 2 bad input — with a message that names what is wrong.
func TestDoctorExitCodes(t *testing.T) {
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.kubeconfig")
	if err := os.WriteFile(broken, []byte("apiVersion: v1\nclusters: [unclosed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// An API server address on loopback where nothing listens: the cluster cannot be asked.
	unreachable := filepath.Join(dir, "unreachable.kubeconfig")
	if err := os.WriteFile(unreachable, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		code    int
		wantOut []string
		wantErr []string
	}{
		{name: "fixed Debian kernel", args: []string{"doctor", "--kernel-release", "6.1.0-56-amd64"}, code: 0, wantOut: []string{"fixed", "not-affected", "debian-bookworm"}},
		{name: "Debian kernel without the follow-up", args: []string{"doctor", "--kernel-release", "6.1.0-17-amd64"}, code: 1, wantOut: []string{"not-fixed", "msg_namelen", "affected"}},
		{name: "vulnerable stable kernel", args: []string{"doctor", "--kernel-release", "6.1.52"}, code: 1, wantOut: []string{"lacks kernel_connect"}},
		{name: "RHEL 9.4 with the fix", args: []string{"doctor", "--kernel-release", "5.14.0-427.31.1.el9_4.x86_64"}, code: 0, wantOut: []string{"fixed"}},
		{name: "kernel the table cannot place", args: []string{"doctor", "--kernel-release", "5.15.0-1063-aws"}, code: 1, wantOut: []string{"unknown"}},
		{name: "garbage release", args: []string{"doctor", "--kernel-release", "garbage"}, code: 2, wantErr: []string{"--kernel-release", `"garbage"`, "not a Linux kernel release"}},
		{name: "empty release", args: []string{"doctor", "--kernel-release", ""}, code: 2, wantErr: []string{"--kernel-release"}},
		{name: "bad output format", args: []string{"doctor", "-o", "yaml", "--kernel-release", "6.6.30"}, code: 2, wantErr: []string{"-o", "yaml", "table or json"}},
		{name: "both release and cluster", args: []string{"doctor", "--kernel-release", "6.6.30", "--kubeconfig", unreachable}, code: 2, wantErr: []string{"give one of them"}},
		{name: "missing kubeconfig", args: []string{"doctor", "--kubeconfig", filepath.Join(dir, "nope")}, code: 2, wantErr: []string{"--kubeconfig", filepath.Join(dir, "nope")}},
		{name: "malformed kubeconfig", args: []string{"doctor", "--kubeconfig", broken}, code: 2, wantErr: []string{"--kubeconfig", broken}},
		{name: "unreachable API server", args: []string{"doctor", "--kubeconfig", unreachable}, code: 1, wantOut: []string{"unknown", "cannot ask the API server", "127.0.0.1:1"}},
		{name: "stray argument", args: []string{"doctor", "6.6.30"}, code: 2, wantErr: []string{"unknown command"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout.String(), stderr.String())
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout %q does not contain %q", stdout.String(), w)
				}
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q does not contain %q", stderr.String(), w)
				}
			}
			if strings.Contains(stderr.String(), "goroutine ") || strings.Contains(stderr.String(), "panic") {
				t.Errorf("stderr has a stack trace: %s", stderr.String())
			}
		})
	}
}

// TestDoctorJSON: -o json prints one document whose outcome agrees with the exit code, for a
// kernel given by hand and for this machine (real probes: uname, cgroup2, qemu, docker).
func TestDoctorJSON(t *testing.T) {
	for _, args := range [][]string{
		{"doctor", "-o", "json", "--kernel-release", "6.1.0-17-amd64"},
		{"doctor", "-o", "json"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(args, &stdout, &stderr)
			var doc struct {
				Format  string          `json:"format"`
				Outcome string          `json:"outcome"`
				Reason  string          `json:"reason"`
				Kernel  json.RawMessage `json:"kernel"`
				Host    *struct {
					Kernel struct {
						Release string `json:"release"`
						Verdict string `json:"verdict"`
					} `json:"kernel"`
					Checks []struct{ Name string } `json:"checks"`
				} `json:"host"`
			}
			if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
				t.Fatalf("stdout is not one JSON document: %v\n%s\nstderr: %s", err, stdout.String(), stderr.String())
			}
			if doc.Format != "nfslab-doctor/v1" || doc.Reason == "" {
				t.Errorf("format %q, reason %q", doc.Format, doc.Reason)
			}
			if want := map[bool]int{true: 0, false: 1}[doc.Outcome == "not-affected"]; code != want {
				t.Errorf("exit code %d for outcome %q, want %d", code, doc.Outcome, want)
			}
			if len(args) == 3 {
				if doc.Host == nil || doc.Host.Kernel.Release == "" || len(doc.Host.Checks) < 4 {
					t.Errorf("host report incomplete: %+v", doc.Host)
				}
			} else if len(doc.Kernel) == 0 || doc.Outcome != "affected" {
				t.Errorf("kernel report: outcome %q, kernel %s", doc.Outcome, doc.Kernel)
			}
		})
	}
}
