package nfs

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"
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
			name:    "v3 and v4 keeps NLM and UDP at their defaults",
			mod:     func(p *GaneshaParams) { p.Protocols = "nfs4, 3" },
			want:    []string{"Protocols = 3, 4;"},
			notWant: []string{"Enable_NLM", "Enable_UDP", "Enable_RQUOTA"},
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

func TestWaitListening(t *testing.T) {
	// Reserve a port, close it, and start listening on it only after a while.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(l.Addr().String())
	l.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	err = WaitListening(ctx, addr)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitListening on a closed port = %v, want deadline exceeded", err)
	}

	listening := make(chan net.Listener, 1)
	go func() {
		time.Sleep(150 * time.Millisecond)
		l2, err := net.Listen("tcp", addr.String())
		if err != nil {
			l2 = nil // port taken meanwhile: the test below fails with a deadline, visibly
		}
		listening <- l2
	}()
	defer func() {
		if l2 := <-listening; l2 != nil {
			l2.Close()
		}
	}()
	ctx, cancel = context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := WaitListening(ctx, addr); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("returned after %v, before the listener existed", d)
	}
}
