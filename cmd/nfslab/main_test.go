package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExitCodes checks the CLI's contract for input that never reaches a VM: the exit code and
// a message that says what is wrong, never a panic or a stack trace.
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: bad\nmatrix:\n  kernels: [debian-stock]\n  datapaths: [ipvs]\n  colour: blue\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "broken.yaml")
	if err := os.WriteFile(broken, []byte("name: [unclosed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notKernel := filepath.Join(dir, "bzImage")
	if err := os.WriteFile(notKernel, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	// A kernel image with a config beside it that lacks the NFS client and cgroup BPF.
	noNFS := filepath.Join(dir, "nonfs", "vmlinuz")
	if err := os.MkdirAll(filepath.Dir(noNFS), 0o755); err != nil {
		t.Fatal(err)
	}
	img := make([]byte, 0x3000)
	copy(img[0x202:], "HdrS")
	img[0x20e], img[0x20f] = 0x00, 0x20 // version string at 0x2200
	copy(img[0x2200:], "6.1.0-nonfs (test) #1\x00")
	if err := os.WriteFile(noNFS, img, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nonfs", ".config"), []byte("CONFIG_BLK_DEV_INITRD=y\n# CONFIG_NFS_FS is not set\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		code    int
		wantOut string // in stdout
		wantErr []string
	}{
		{name: "list scenarios", args: []string{"scenarios"}, code: 0, wantOut: "fidelity"},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, wantErr: []string{"unknown command"}},
		{name: "unknown flag", args: []string{"run", "--bogus"}, code: 2, wantErr: []string{"unknown flag"}},
		{name: "unknown built-in", args: []string{"run", "--scenario", "nope"}, code: 2, wantErr: []string{`"nope"`, "default, failover, fidelity"}},
		{name: "unknown datapath", args: []string{"run", "--datapath", "ipvs"}, code: 2, wantErr: []string{"ipvs", "kube-proxy-nftables or socket-lb"}},
		{name: "unknown kernel recipe", args: []string{"run", "--kernel", "vulnerable-9.9"}, code: 2, wantErr: []string{"vulnerable-9.9"}},
		{name: "negative parallelism", args: []string{"run", "--parallel", "-1"}, code: 2, wantErr: []string{"--parallel -1"}},
		{name: "bad accelerator", args: []string{"run", "--accel", "warp"}, code: 2, wantErr: []string{"--accel", "warp"}},
		{name: "invalid scenario file", args: []string{"run", "--scenario", bad}, code: 2, wantErr: []string{bad, "matrix.datapaths[0]", "ipvs", "matrix.colour"}},
		{name: "malformed scenario file", args: []string{"run", "--scenario", broken}, code: 2, wantErr: []string{broken, "line"}},
		{name: "kernel image that is not a kernel", args: []string{"run", "--kernel", notKernel, "--report-dir", filepath.Join(dir, "r")}, code: 2, wantErr: []string{notKernel, "not an x86 bzImage"}},
		{name: "kernel without NFS or cgroup BPF", args: []string{"run", "--kernel", noNFS, "--report-dir", filepath.Join(dir, "r")}, code: 2, wantErr: []string{"lacks", "NFS client (CONFIG_NFS_FS)", "cgroup BPF (socket-LB) (CONFIG_CGROUP_BPF)"}},
		{name: "unknown recipe for kernel build", args: []string{"kernel", "build", "vulnerable-9.9"}, code: 2, wantErr: []string{"vulnerable-9.9", "vulnerable-6.1"}},
		{name: "agent outside the VM", args: []string{"agent"}, code: 2, wantErr: []string{"PID 1"}},
		{name: "check-kind, an image after a bare --node-image", args: []string{"kernel", "check-kind", "debian-stock", "--node-image", "kindest/node:v1"},
			code: 2, wantErr: []string{"takes one kernel", "--node-image=IMAGE"}},
		{name: "check-kind, a node image file that does not exist", args: []string{"kernel", "check-kind", "debian-stock", "--node-image=" + filepath.Join(dir, "nope.tar")},
			code: 2, wantErr: []string{`--node-image "` + filepath.Join(dir, "nope.tar") + `": no such file`}},
		{name: "check-kind, a Cilium version nfslab cannot build", args: []string{"kernel", "check-kind", "debian-stock", "--cluster", "cilium", "--cilium-version", "v1.20.2"},
			code: 2, wantErr: []string{`"v1.20.2" is not a Cilium version`, "v1.19.7"}},
		{name: "check-kind, a Cilium version without Cilium", args: []string{"kernel", "check-kind", "debian-stock", "--cluster", "iptables", "--cilium-version", "v1.19.7"},
			code: 2, wantErr: []string{"without a Cilium datapath"}},
		{name: "check-kind, Cilium on a node image of the user's", args: []string{"kernel", "check-kind", "debian-stock", "--cluster", "cilium-no-socket-lb", "--node-image=kindest/node:v1"},
			code: 2, wantErr: []string{"nfslab's own node image"}},
		{name: "check-kind, Cilium's images without Cilium", args: []string{"kernel", "check-kind", "debian-stock", "--cluster", "iptables", "--cilium-image", "quay.io/cilium/cilium:v1.15.19"},
			code: 2, wantErr: []string{`--cilium-image "quay.io/cilium/cilium:v1.15.19" without a Cilium datapath`}},
		{name: "check-kind, Cilium's images of another version", args: []string{"kernel", "check-kind", "debian-stock", "--cluster", "cilium", "--cilium-version", "v1.19.7", "--cilium-image", "quay.io/cilium/cilium:v1.15.19"},
			code: 2, wantErr: []string{"its agent is v1.15.19 and the Cilium to install is v1.19.7"}},
		{name: "check-kind, an unknown cluster mode", args: []string{"kernel", "check-kind", "debian-stock", "--cluster", "calico"},
			code: 2, wantErr: []string{`"calico"`, "iptables", "cilium-hostns-only"}},
		{
			name: "missing host tools", args: []string{"run", "--report-dir", filepath.Join(dir, "r")},
			env: map[string]string{"PATH": dir}, code: 3, wantErr: []string{"apt-get install", "qemu-system-x86"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.wantOut) {
				t.Errorf("stdout %q does not contain %q", stdout.String(), tt.wantOut)
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
