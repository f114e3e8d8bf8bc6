package nfs

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func baseParams() GaneshaParams {
	return GaneshaParams{
		BindAddr:     netip.MustParseAddr("10.0.0.11"),
		ExportPath:   "/export",
		RecoveryRoot: "/run/nfslab/podA/recovery",
		LogPath:      "/run/nfslab/podA/ganesha.log",
	}
}

func TestRenderGaneshaConfig(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*GaneshaParams)
		want    []string // lines (trimmed) that must appear
		notWant []string // substrings that must not appear
	}{
		{
			name: "defaults",
			mod:  func(*GaneshaParams) {},
			want: []string{
				"Protocols = 4;", "NFS_Port = 2049;", "Bind_addr = 10.0.0.11;",
				"Enable_NLM = false;", "Enable_RQUOTA = false;", "Enable_UDP = false;",
				"Graceless = true;", "Lease_Lifetime = 10;", `RecoveryRoot = "/run/nfslab/podA/recovery";`,
				"Only_Numeric_Owners = true;",
				"Export_Id = 1;", `Path = "/export";`, `Pseudo = "/export";`, "Access_Type = RW;",
				"Squash = No_Root_Squash;", "Transports = TCP;", "SecType = sys;", "Name = VFS;",
				"Default_Log_Level = EVENT;", "name = FILE;", `destination = "/run/nfslab/podA/ganesha.log";`,
				"enable = active;",
			},
			notWant: []string{"Grace_Period", "<no value>"},
		},
		{
			name: "knobs",
			mod: func(p *GaneshaParams) {
				p.BindAddr = netip.MustParseAddr("10.0.0.12")
				p.Port = 12049
				p.PseudoPath = "/"
				p.LeaseSeconds = 30
				p.GracePeriodSeconds = 45
				p.EnableGrace = true
				p.LogLevel = "DEBUG"
			},
			want: []string{
				"Bind_addr = 10.0.0.12;", "NFS_Port = 12049;", `Pseudo = "/";`, `Path = "/export";`,
				"Lease_Lifetime = 30;", "Grace_Period = 45;", "Graceless = false;", "Default_Log_Level = DEBUG;",
			},
		},
		{
			name:    "v4 only: no mountd",
			mod:     func(*GaneshaParams) {},
			want:    []string{"Protocols = 4;", "Enable_UDP = false;", "Transports = TCP;"},
			notWant: []string{"MNT_Port", "Mount_Path_Pseudo", "Protocols = 3"},
		},
		{
			name: "v3 over tcp: mountd on 20048, MOUNT by pseudo path, no NLM",
			mod:  func(p *GaneshaParams) { p.Protocols = "nfs4, 3" },
			want: []string{
				"Protocols = 3, 4;", "MNT_Port = 20048;", "Mount_Path_Pseudo = true;",
				"Enable_NLM = false;", "Enable_RQUOTA = false;", "Enable_UDP = false;", "Transports = TCP;",
			},
			notWant: []string{"UDP;"},
		},
		{
			name: "v3 over udp",
			mod: func(p *GaneshaParams) {
				p.Protocols, p.EnableUDP = "3, 4", true
			},
			want: []string{"Protocols = 3, 4;", "MNT_Port = 20048;", "Enable_UDP = true;", "Transports = TCP, UDP;", "Enable_NLM = false;"},
		},
		{
			name: "v3 alone, other mountd port",
			mod: func(p *GaneshaParams) {
				p.Protocols, p.MountdPort = "v3", 12048
			},
			want: []string{"Protocols = 3;", "MNT_Port = 12048;"},
		},
		{
			name:    "no log path: no facility",
			mod:     func(p *GaneshaParams) { p.LogPath = "" },
			want:    []string{"Default_Log_Level = EVENT;"},
			notWant: []string{"Facility", "destination"},
		},
		{
			name: "v4-mapped bind address is unmapped",
			mod:  func(p *GaneshaParams) { p.BindAddr = netip.MustParseAddr("::ffff:10.0.0.11") },
			want: []string{"Bind_addr = 10.0.0.11;"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := baseParams()
			tt.mod(&p)
			conf, err := RenderGaneshaConfig(p)
			if err != nil {
				t.Fatal(err)
			}
			lines := map[string]bool{}
			for l := range strings.SplitSeq(conf, "\n") {
				lines[strings.TrimSpace(l)] = true
			}
			for _, w := range tt.want {
				if !lines[w] {
					t.Errorf("missing line %q in\n%s", w, conf)
				}
			}
			for _, nw := range tt.notWant {
				if strings.Contains(conf, nw) {
					t.Errorf("unexpected %q in\n%s", nw, conf)
				}
			}
			if strings.Count(conf, "{") != strings.Count(conf, "}") {
				t.Errorf("unbalanced braces in\n%s", conf)
			}
		})
	}
}

func TestRenderGaneshaConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*GaneshaParams)
		wantErr string
	}{
		{"no bind addr", func(p *GaneshaParams) { p.BindAddr = netip.Addr{} }, "BindAddr"},
		{"relative export", func(p *GaneshaParams) { p.ExportPath = "export" }, "ExportPath"},
		{"no export", func(p *GaneshaParams) { p.ExportPath = "" }, "ExportPath"},
		{"quote in pseudo", func(p *GaneshaParams) { p.PseudoPath = `/a"b` }, "PseudoPath"},
		{"newline in recovery", func(p *GaneshaParams) { p.RecoveryRoot = "/a\nb" }, "RecoveryRoot"},
		{"no recovery root", func(p *GaneshaParams) { p.RecoveryRoot = "" }, "RecoveryRoot"},
		{"backslash in log path", func(p *GaneshaParams) { p.LogPath = `/a\b` }, "LogPath"},
		{"port too big", func(p *GaneshaParams) { p.Port = 65536 }, "Port"},
		{"port negative", func(p *GaneshaParams) { p.Port = -1 }, "Port"},
		{"lease too long", func(p *GaneshaParams) { p.LeaseSeconds = 181 }, "LeaseSeconds"},
		{"lease negative", func(p *GaneshaParams) { p.LeaseSeconds = -1 }, "LeaseSeconds"},
		{"grace too long", func(p *GaneshaParams) { p.GracePeriodSeconds = 271 }, "GracePeriodSeconds"},
		{"bad protocol", func(p *GaneshaParams) { p.Protocols = "4, 9P" }, "unsupported protocol"},
		{"bad log level", func(p *GaneshaParams) { p.LogLevel = "LOUD" }, "LogLevel"},
		{"udp without v3", func(p *GaneshaParams) { p.EnableUDP = true }, "EnableUDP needs NFSv3"},
		{"udp with v4 named", func(p *GaneshaParams) { p.Protocols, p.EnableUDP = "nfs4", true }, "EnableUDP needs NFSv3"},
		{"mountd port too big", func(p *GaneshaParams) { p.MountdPort = 70000 }, "MountdPort"},
		{"mountd port negative", func(p *GaneshaParams) { p.MountdPort = -2 }, "MountdPort"},
		{"mountd port is the nfs port", func(p *GaneshaParams) { p.Protocols, p.MountdPort = "3", 2049 }, "MountdPort and Port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := baseParams()
			tt.mod(&p)
			if _, err := RenderGaneshaConfig(p); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestProcessKill(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("needs sh")
	}
	p, err := startProcess(t.Context(), "sh", "-c", "echo started; exec sleep 60")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
		t.Fatal("exited early")
	case <-time.After(100 * time.Millisecond):
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := p.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	var exitErr *exec.ExitError
	if !errors.As(p.ExitErr(), &exitErr) || exitErr.String() != "signal: killed" {
		t.Errorf("ExitErr = %v, want signal: killed", p.ExitErr())
	}
	if err := p.Kill(ctx); err != nil {
		t.Errorf("second Kill = %v, want nil", err)
	}
	if !strings.Contains(p.Output(), "started") {
		t.Errorf("Output = %q", p.Output())
	}
}

func TestStartGaneshaCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := StartGanesha(ctx, "nope", nil, "/c", "/l", "/p"); !errors.Is(err, context.Canceled) {
		t.Fatalf("StartGanesha with canceled ctx = %v", err)
	}
}

func TestCappedBuffer(t *testing.T) {
	b := &cappedBuffer{max: 5}
	for _, s := range []string{"abc", "defg", "h"} {
		if n, err := b.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if b.String() != "abcde" {
		t.Fatalf("got %q", b.String())
	}
}

// TestStartRPCBind runs StartRPCBind in a private mount namespace with its own /run (the test
// re-executes itself under unshare -m, so the host's /run is never touched), against a fake
// rpcbind (this test binary, listening on RPCBindSocket) or, with NFSLAB_RPCBIND set, the
// program named there (e.g. a wrapper that chroots into a Debian rootfs). Needs root.
func TestStartRPCBind(t *testing.T) {
	switch os.Getenv("NFSLAB_TEST_RPCBIND") {
	case "fake":
		fakeRPCBind(t)
		return
	case "child":
		startRPCBindInPrivateRun(t)
		return
	}
	if out := inPrivateMountNS(t, "TestStartRPCBind", "NFSLAB_TEST_RPCBIND=child"); !strings.Contains(out, "--- PASS: TestStartRPCBind") {
		t.Fatalf("child did not pass:\n%s", out)
	}
}

// inPrivateMountNS re-runs the test called name under `unshare -m --propagation private`, with
// env (KEY=value) set so the child knows it is the child, and returns the child's output. It
// skips without root or unshare(1), and fails when the child fails.
func inPrivateMountNS(t *testing.T, name, env string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("needs unshare(1)")
	}
	cmd := exec.CommandContext(t.Context(), unshare, "-m", "--propagation", "private",
		os.Args[0], "-test.run=^"+name+"$", "-test.v")
	cmd.Env = append(os.Environ(), env)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	return string(out)
}

func startRPCBindInPrivateRun(t *testing.T) {
	if err := unix.Mount("nfslab-test-run", "/run", "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	prog := os.Getenv("NFSLAB_RPCBIND")
	if prog == "" {
		// A stand-in named rpcbind: this test binary in fake mode. It refuses to run without -f,
		// to check the flag.
		script := "#!/bin/sh\n[ \"$1\" = -f ] || exit 3\nNFSLAB_TEST_RPCBIND=fake exec " + os.Args[0] + " -test.run='^TestStartRPCBind$'\n"
		if err := os.WriteFile(filepath.Join(bin, RPCBindBinary), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	} else if err := os.Symlink(prog, filepath.Join(bin, RPCBindBinary)); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if rpcbindAnswers() {
		t.Fatal("an rpcbind answers in a fresh /run")
	}
	p, err := StartRPCBind(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p == nil || !rpcbindAnswers() {
		t.Fatalf("StartRPCBind = %v, answers %v", p, rpcbindAnswers())
	}
	// A second call finds it running and starts nothing.
	if q, err := StartRPCBind(ctx); q != nil || err != nil {
		t.Fatalf("second StartRPCBind = %v, %v; want nil, nil", q, err)
	}
	if err := p.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if rpcbindAnswers() {
		t.Fatal("the socket still answers after Kill")
	}
	// The dead one's socket file is left behind; a new start must not be fooled by it.
	p, err = StartRPCBind(ctx)
	if err != nil || p == nil {
		t.Fatalf("restart: %v, %v", p, err)
	}
	if err := p.Kill(ctx); err != nil {
		t.Fatal(err)
	}

	// A program that exits at once is reported with its output.
	if err := os.Remove(filepath.Join(bin, RPCBindBinary)); err != nil {
		t.Fatal(err)
	}
	failing := "#!/bin/sh\necho 'rpcbind: another rpcbind is already running. Aborting'\nexit 1\n"
	if err := os.WriteFile(filepath.Join(bin, RPCBindBinary), []byte(failing), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := StartRPCBind(ctx); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("StartRPCBind with a failing rpcbind = %v", err)
	}
}

// fakeRPCBind listens on RPCBindSocket until killed (it is started by StartRPCBind in the
// child's private /run).
func fakeRPCBind(t *testing.T) {
	if mounts, err := os.ReadFile("/proc/self/mounts"); err != nil || !strings.Contains(string(mounts), "nfslab-test-run /run tmpfs") {
		t.Fatalf("/run is not the test's private tmpfs (%v): refusing to touch it", err)
	}
	_ = os.Remove(RPCBindSocket) // what rpcbind does with a stale socket
	l, err := net.Listen("unix", RPCBindSocket)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false) // SIGKILL leaves the file, as with rpcbind
	for {
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}
