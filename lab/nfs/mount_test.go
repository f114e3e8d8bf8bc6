package nfs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMountOptions(t *testing.T) {
	vip := netip.MustParseAddr("10.96.0.50")
	node := netip.MustParseAddr("10.0.0.1")
	const v3tcp = "vers=3,addr=10.96.0.50,proto=tcp,port=2049,mountaddr=10.96.0.50,mountproto=tcp,mountport=20048,mountvers=3,nolock"
	tests := []struct {
		name       string
		version    string
		server     netip.Addr
		client     netip.Addr
		extra      []string
		wantFSType string
		wantData   string
		wantErr    string
	}{
		{
			name: "the lab's mount", version: "4.1", server: vip, client: node,
			extra:      []string{"proto=tcp", "hard", "timeo=10", "retrans=2"},
			wantFSType: "nfs4", wantData: "vers=4.1,addr=10.96.0.50,clientaddr=10.0.0.1,proto=tcp,hard,timeo=10,retrans=2",
		},
		{name: "4.2 no extra", version: "4.2", server: vip, client: node, wantFSType: "nfs4", wantData: "vers=4.2,addr=10.96.0.50,clientaddr=10.0.0.1"},
		{name: "4 means 4.0", version: "4", server: vip, client: node, wantFSType: "nfs4", wantData: "vers=4.0,addr=10.96.0.50,clientaddr=10.0.0.1"},
		{name: "4.0", version: "4.0", server: vip, client: node, wantFSType: "nfs4", wantData: "vers=4.0,addr=10.96.0.50,clientaddr=10.0.0.1"},
		{name: "4.1 port passes through", version: "4.1", server: vip, client: node, extra: []string{"port=12049"},
			wantFSType: "nfs4", wantData: "vers=4.1,addr=10.96.0.50,clientaddr=10.0.0.1,port=12049"},
		{
			name: "ipv6 and v4-mapped", version: "4.1",
			server: netip.MustParseAddr("fd00::50"), client: netip.MustParseAddr("::ffff:10.0.0.1"),
			wantFSType: "nfs4", wantData: "vers=4.1,addr=fd00::50,clientaddr=10.0.0.1",
		},
		{
			name: "v3 over tcp", version: "3", server: vip, client: node, extra: []string{"hard", "timeo=10", "retrans=2"},
			wantFSType: "nfs", wantData: v3tcp + ",hard,timeo=10,retrans=2",
		},
		{name: "v3 needs no client address", version: "3", server: netip.MustParseAddr("::ffff:10.96.0.50"), wantFSType: "nfs", wantData: v3tcp},
		{
			name: "v3 over udp", version: "3-udp", server: vip, client: node,
			wantFSType: "nfs", wantData: strings.ReplaceAll(v3tcp, "=tcp", "=udp"),
		},
		{
			name: "v3 ipv6 uses tcp6", version: "3", server: netip.MustParseAddr("fd00::50"),
			wantFSType: "nfs", wantData: "vers=3,addr=fd00::50,proto=tcp6,port=2049,mountaddr=fd00::50,mountproto=tcp6,mountport=20048,mountvers=3,nolock",
		},
		{
			name: "v3 ports replaced from extra", version: "3", server: vip, extra: []string{"port=12049", "mountport=12048", "soft"},
			wantFSType: "nfs", wantData: "vers=3,addr=10.96.0.50,proto=tcp,mountaddr=10.96.0.50,mountproto=tcp,mountvers=3,nolock,port=12049,mountport=12048,soft",
		},
		{name: "v3 port twice", version: "3", server: vip, extra: []string{"port=1", "port=2"}, wantErr: "twice"},
		{name: "v3 proto override", version: "3-udp", server: vip, extra: []string{"proto=tcp"}, wantErr: "overrides"},
		{name: "v3 mountproto override", version: "3", server: vip, extra: []string{"mountproto=udp"}, wantErr: "overrides"},
		{name: "v3 udp flag", version: "3", server: vip, extra: []string{"udp"}, wantErr: "overrides"},
		{name: "v3 lock", version: "3", server: vip, extra: []string{"lock"}, wantErr: "overrides"},
		{name: "v3 mountaddr", version: "3", server: vip, extra: []string{"mountaddr=10.0.0.11"}, wantErr: "overrides"},
		{name: "v3 upper-case key", version: "3", server: vip, extra: []string{"MountVers=1"}, wantErr: "overrides"},
		{name: "v3 no server", version: "3", wantErr: "server address"},
		{name: "3.0 refused", version: "3.0", server: vip, client: node, wantErr: "unsupported NFS version"},
		{name: "2 refused", version: "2", server: vip, client: node, wantErr: "unsupported NFS version"},
		{name: "4.3 refused", version: "4.3", server: vip, client: node, wantErr: "unsupported NFS version"},
		{name: "4-udp refused", version: "4-udp", server: vip, client: node, wantErr: "unsupported NFS version"},
		{name: "empty version", version: "", server: vip, client: node, wantErr: "unsupported NFS version"},
		{name: "no server", version: "4.1", client: node, wantErr: "server address"},
		{name: "no client", version: "4.1", server: vip, wantErr: "client address"},
		{name: "comma smuggling", version: "4.1", server: vip, client: node, extra: []string{"hard,addr=1.2.3.4"}, wantErr: "invalid extra"},
		{name: "tab smuggling", version: "3", server: vip, extra: []string{"hard\tlock"}, wantErr: "invalid extra"},
		{name: "empty extra", version: "4.1", server: vip, client: node, extra: []string{""}, wantErr: "invalid extra"},
		{name: "addr override", version: "4.1", server: vip, client: node, extra: []string{"addr=10.0.0.11"}, wantErr: "overrides"},
		{name: "vers override", version: "4.1", server: vip, client: node, extra: []string{"vers=4.2"}, wantErr: "overrides"},
		{name: "v3 vers override", version: "3", server: vip, extra: []string{"nfsvers=4"}, wantErr: "overrides"},
		{name: "version flag override", version: "3", server: vip, extra: []string{"v4.1"}, wantErr: "overrides"},
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
			if fstype != tt.wantFSType || data != tt.wantData {
				t.Fatalf("got %q %q, want %q %q", fstype, data, tt.wantFSType, tt.wantData)
			}
		})
	}
}

func TestVersionsAllMount(t *testing.T) {
	for _, v := range Versions() {
		if _, _, err := MountOptions(v, netip.MustParseAddr("10.96.0.50"), netip.MustParseAddr("10.0.0.1"), nil); err != nil {
			t.Errorf("MountOptions(%q) = %v", v, err)
		}
		if _, err := ServicePorts(v, 0); err != nil {
			t.Errorf("ServicePorts(%q) = %v", v, err)
		}
		if _, _, err := ServerProtocols(v); err != nil {
			t.Errorf("ServerProtocols(%q) = %v", v, err)
		}
	}
}

func TestServicePorts(t *testing.T) {
	nfs := func(port uint16, proto string) PortProto { return PortProto{Name: "nfs", Port: port, Protocol: proto} }
	tests := []struct {
		version   string
		nfsPort   uint16
		want      []PortProto
		wantProto string
		wantUDP   bool
		wantErr   bool
	}{
		{version: "4.0", want: []PortProto{nfs(2049, "tcp")}, wantProto: "4"},
		{version: "4", want: []PortProto{nfs(2049, "tcp")}, wantProto: "4"},
		{version: "4.1", nfsPort: 12049, want: []PortProto{nfs(12049, "tcp")}, wantProto: "4"},
		{version: "4.2", nfsPort: 2049, want: []PortProto{nfs(2049, "tcp")}, wantProto: "4"},
		{version: "3", want: []PortProto{nfs(2049, "tcp"), {Name: "mountd", Port: 20048, Protocol: "tcp"}}, wantProto: "3, 4"},
		{
			version: "3-udp", want: []PortProto{{Name: "nfs-udp", Port: 2049, Protocol: "udp"}, {Name: "mountd-udp", Port: 20048, Protocol: "udp"}},
			wantProto: "3, 4", wantUDP: true,
		},
		{version: "3-tcp", wantErr: true},
		{version: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			got, err := ServicePorts(tt.version, tt.nfsPort)
			protos, udp, perr := ServerProtocols(tt.version)
			if tt.wantErr {
				if err == nil || perr == nil || !strings.Contains(err.Error(), "unsupported NFS version") {
					t.Fatalf("errors = %v, %v; want unsupported NFS version", err, perr)
				}
				return
			}
			if err != nil || perr != nil {
				t.Fatal(err, perr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ServicePorts = %+v, want %+v", got, tt.want)
			}
			if protos != tt.wantProto || udp != tt.wantUDP {
				t.Errorf("ServerProtocols = %q %v, want %q %v", protos, udp, tt.wantProto, tt.wantUDP)
			}
		})
	}
}

func TestExplainMountError(t *testing.T) {
	mountErr := func(errno error) error {
		return fmt.Errorf("mount 10.96.0.50:/export on /mnt (nfs, %q): %w", "vers=3", errno)
	}
	tests := []struct {
		name    string
		version string
		err     error
		config  map[string]string // nil: the kernel config cannot be read
		want    string            // substring of the explained error; "" means unchanged
	}{
		{name: "nil stays nil", version: "3-udp"},
		{name: "udp EINVAL, config unknown", version: "3-udp", err: mountErr(unix.EINVAL),
			want: "NFS over UDP may be compiled out of this kernel (CONFIG_NFS_DISABLE_UDP_SUPPORT=y"},
		{name: "udp EINVAL, compiled out", version: "3-udp", err: mountErr(unix.EINVAL),
			config: map[string]string{UDPDisabledOption: "y"}, want: "NFS over UDP is compiled out of this kernel (CONFIG_NFS_DISABLE_UDP_SUPPORT=y)"},
		{name: "udp EINVAL, not compiled out", version: "3-udp", err: mountErr(unix.EINVAL),
			config: map[string]string{}, want: "CONFIG_NFS_DISABLE_UDP_SUPPORT is not set"},
		{name: "tcp EINVAL unchanged", version: "3", err: mountErr(unix.EINVAL), config: map[string]string{UDPDisabledOption: "y"}},
		{name: "v4 EINVAL unchanged", version: "4.1", err: mountErr(unix.EINVAL)},
		{name: "v3 not built", version: "3", err: mountErr(unix.EPROTONOSUPPORT), want: "NFS version 3 is not available in this kernel (CONFIG_NFS_V3"},
		{name: "v4.2 not built", version: "4.2", err: mountErr(unix.EPROTONOSUPPORT), want: "NFS version 4.2 is not available"},
		{name: "v3 mountd refused", version: "3", err: mountErr(unix.ECONNREFUSED), want: "mountd at port 20048/tcp"},
		{name: "v3 udp mountd timeout", version: "3-udp", err: mountErr(unix.ETIMEDOUT), want: "mountd at port 20048/udp"},
		{name: "v4 refused unchanged", version: "4.1", err: mountErr(unix.ECONNREFUSED)},
		{name: "context unchanged", version: "3", err: context.DeadlineExceeded},
		{name: "unknown version unchanged", version: "9", err: mountErr(unix.EINVAL)},
	}
	defer func(orig func(string) (string, bool)) { kernelConfig = orig }(kernelConfig)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kernelConfig = func(name string) (string, bool) {
				if tt.config == nil {
					return "", false
				}
				return tt.config[name], true
			}
			got := ExplainMountError(tt.version, tt.err)
			switch {
			case tt.err == nil:
				if got != nil {
					t.Fatalf("got %v, want nil", got)
				}
			case tt.want == "":
				if got != tt.err {
					t.Fatalf("got %v, want the error unchanged", got)
				}
			default:
				if !strings.Contains(got.Error(), tt.want) || !strings.HasPrefix(got.Error(), tt.err.Error()) {
					t.Fatalf("got %q, want the original error followed by %q", got, tt.want)
				}
				if !errors.Is(got, tt.err) {
					t.Fatal("the explained error does not wrap the original")
				}
			}
		})
	}
}

func TestConfigValue(t *testing.T) {
	config := "CONFIG_NFS_FS=m\n# CONFIG_NFS_V2 is not set\nCONFIG_NFS_DISABLE_UDP_SUPPORT=y\nCONFIG_LOCALVERSION=\"-lab\"\n"
	tests := []struct {
		name, want string
		known      bool
	}{
		{"CONFIG_NFS_DISABLE_UDP_SUPPORT", "y", true},
		{"CONFIG_NFS_FS", "m", true},
		{"CONFIG_NFS_V2", "", true},
		{"CONFIG_LOCALVERSION", "-lab", true},
		{"CONFIG_NFS", "", true}, // a prefix of other options is not one of them
	}
	for _, tt := range tests {
		if v, known := configValue(strings.NewReader(config), tt.name); v != tt.want || known != tt.known {
			t.Errorf("configValue(%s) = %q %v, want %q %v", tt.name, v, known, tt.want, tt.known)
		}
	}
	// The real kernel's config, when there is one, must at least parse.
	if v, known := readKernelConfig("CONFIG_NFS_FS"); known {
		t.Logf("this kernel: CONFIG_NFS_FS=%q", v)
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
		out := inPrivateMountNS(t, "TestMountTmpfsInPrivateNamespace", "NFSLAB_TEST_IN_MNTNS=1")
		if !strings.Contains(out, "--- PASS: TestMountTmpfsInPrivateNamespace") {
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
