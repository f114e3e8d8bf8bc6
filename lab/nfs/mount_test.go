package nfs

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMountOptions(t *testing.T) {
	vip := netip.MustParseAddr("10.96.0.50")
	node := netip.MustParseAddr("10.0.0.1")
	tests := []struct {
		name     string
		version  string
		server   netip.Addr
		client   netip.Addr
		extra    []string
		wantData string
		wantErr  string
	}{
		{
			name: "the lab's mount", version: "4.1", server: vip, client: node,
			extra:    []string{"proto=tcp", "hard", "timeo=10", "retrans=2"},
			wantData: "vers=4.1,addr=10.96.0.50,clientaddr=10.0.0.1,proto=tcp,hard,timeo=10,retrans=2",
		},
		{name: "4.2 no extra", version: "4.2", server: vip, client: node, wantData: "vers=4.2,addr=10.96.0.50,clientaddr=10.0.0.1"},
		{name: "4 means 4.0", version: "4", server: vip, client: node, wantData: "vers=4.0,addr=10.96.0.50,clientaddr=10.0.0.1"},
		{name: "4.0", version: "4.0", server: vip, client: node, wantData: "vers=4.0,addr=10.96.0.50,clientaddr=10.0.0.1"},
		{
			name: "ipv6 and v4-mapped", version: "4.1",
			server: netip.MustParseAddr("fd00::50"), client: netip.MustParseAddr("::ffff:10.0.0.1"),
			wantData: "vers=4.1,addr=fd00::50,clientaddr=10.0.0.1",
		},
		{name: "v3 refused", version: "3", server: vip, client: node, wantErr: "unsupported NFS version"},
		{name: "4.3 refused", version: "4.3", server: vip, client: node, wantErr: "unsupported NFS version"},
		{name: "empty version", version: "", server: vip, client: node, wantErr: "unsupported NFS version"},
		{name: "no server", version: "4.1", client: node, wantErr: "server address"},
		{name: "no client", version: "4.1", server: vip, wantErr: "client address"},
		{name: "comma smuggling", version: "4.1", server: vip, client: node, extra: []string{"hard,addr=1.2.3.4"}, wantErr: "invalid extra"},
		{name: "empty extra", version: "4.1", server: vip, client: node, extra: []string{""}, wantErr: "invalid extra"},
		{name: "addr override", version: "4.1", server: vip, client: node, extra: []string{"addr=10.0.0.11"}, wantErr: "overrides"},
		{name: "vers override", version: "4.1", server: vip, client: node, extra: []string{"vers=4.2"}, wantErr: "overrides"},
		{name: "minorversion override", version: "4.1", server: vip, client: node, extra: []string{"minorversion=2"}, wantErr: "overrides"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fstype, data, err := MountOptions(tt.version, tt.server, tt.client, tt.extra)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fstype != "nfs4" || data != tt.wantData {
				t.Fatalf("got %q %q, want nfs4 %q", fstype, data, tt.wantData)
			}
		})
	}
}

func TestMountSource(t *testing.T) {
	tests := []struct {
		server, path, want string
	}{
		{"10.96.0.50", "/export", "10.96.0.50:/export"},
		{"::ffff:10.96.0.50", "/", "10.96.0.50:/"},
		{"fd00::50", "/export", "[fd00::50]:/export"},
	}
	for _, tt := range tests {
		if got := MountSource(netip.MustParseAddr(tt.server), tt.path); got != tt.want {
			t.Errorf("MountSource(%s, %s) = %q, want %q", tt.server, tt.path, got, tt.want)
		}
	}
}

func TestMountCanceledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	target := filepath.Join(t.TempDir(), "m")
	if err := Mount(ctx, "tmpfs", target, "tmpfs", ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("Mount = %v, want context.Canceled", err)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Fatalf("target created despite canceled context: %v", err)
	}
	if err := Unmount(ctx, target); !errors.Is(err, context.Canceled) {
		t.Fatalf("Unmount = %v, want context.Canceled", err)
	}
}

func TestUnmountNotMounted(t *testing.T) {
	dir := t.TempDir()
	for _, target := range []string{dir, filepath.Join(dir, "missing")} {
		if err := Unmount(t.Context(), target); err != nil {
			t.Errorf("Unmount(%s) = %v, want nil for something not mounted", target, err)
		}
	}
}

// TestMountTmpfsInPrivateNamespace mounts a tmpfs with Mount, finds it in /proc/self/mounts,
// probes it and unmounts it, inside a private mount namespace (the test re-executes itself under
// unshare -m) so that nothing can leak into the host's mount table. Needs root and unshare.
func TestMountTmpfsInPrivateNamespace(t *testing.T) {
	if os.Getenv("NFSLAB_TEST_IN_MNTNS") == "" {
		if os.Geteuid() != 0 {
			t.Skip("needs root")
		}
		unshare, err := exec.LookPath("unshare")
		if err != nil {
			t.Skip("needs unshare(1)")
		}
		cmd := exec.CommandContext(t.Context(), unshare, "-m", "--propagation", "private",
			os.Args[0], "-test.run=^TestMountTmpfsInPrivateNamespace$", "-test.v")
		cmd.Env = append(os.Environ(), "NFSLAB_TEST_IN_MNTNS=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "--- PASS: TestMountTmpfsInPrivateNamespace") {
			t.Fatalf("child did not pass:\n%s", out)
		}
		return
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	target := filepath.Join(t.TempDir(), "a b") // a space, to exercise the \040 escape
	if err := Mount(ctx, "nfslab-test", target, "tmpfs", "size=1m,mode=0755"); err != nil {
		t.Fatal(err)
	}
	readMount := func() (MountEntry, bool) {
		f, err := os.Open("/proc/self/mounts")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		entries, err := ParseMounts(f)
		if err != nil {
			t.Fatal(err)
		}
		return FindMount(entries, target)
	}
	e, ok := readMount()
	if !ok || e.Source != "nfslab-test" || e.FSType != "tmpfs" {
		t.Fatalf("mount not found in /proc/self/mounts: %+v %v", e, ok)
	}
	if size, _ := e.Option("size"); size != "1024k" {
		t.Errorf("size option = %q", size)
	}
	if err := WriteBaseline(target); err != nil {
		t.Fatal(err)
	}
	if err := Probe(target, 1); err != nil {
		t.Fatal(err)
	}
	// A process with its working directory inside makes MNT_FORCE fail with EBUSY; the
	// MNT_DETACH fallback must still take the mount away.
	busy := exec.Command("sleep", "30")
	busy.Dir = target
	if err := busy.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = busy.Process.Kill(); _ = busy.Wait() }()
	if err := Unmount(ctx, target); err != nil {
		t.Fatal(err)
	}
	if e, ok := readMount(); ok {
		t.Fatalf("still mounted after Unmount: %+v", e)
	}
	if err := Unmount(ctx, target); err != nil {
		t.Fatalf("second Unmount = %v, want nil", err)
	}
}
