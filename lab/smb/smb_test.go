package smb

import (
	"net/netip"
	"strings"
	"testing"
)

func TestRenderConfig(t *testing.T) {
	conf, err := RenderConfig(ServerParams{
		BindAddr: netip.MustParseAddr("10.0.0.11"), ExportPath: "/srv/nfslab/c0/export",
		StateDir: "/run/nfslab/c0-pod-a/smb", PrivateDir: "/run/nfslab/c0-smb-private",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"interfaces = 10.0.0.11\n", "bind interfaces only = yes", "smb ports = 445", "server min protocol = SMB3_00",
		"private dir = /run/nfslab/c0-smb-private", "lock directory = /run/nfslab/c0-pod-a/smb/lock",
		"[export]\n", "path = /srv/nfslab/c0/export", "read only = no",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q:\n%s", want, conf)
		}
	}
}

func TestRenderConfigRejects(t *testing.T) {
	ok := ServerParams{BindAddr: netip.MustParseAddr("10.0.0.11"), ExportPath: "/e", StateDir: "/s", PrivateDir: "/p"}
	tests := []struct {
		name string
		edit func(*ServerParams)
		want string
	}{
		{"no address", func(p *ServerParams) { p.BindAddr = netip.Addr{} }, "bind address"},
		{"relative export", func(p *ServerParams) { p.ExportPath = "export" }, "export path"},
		{"newline smuggles a setting", func(p *ServerParams) { p.StateDir = "/s\n\tguest ok = yes" }, "state directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := ok
			tt.edit(&p)
			if _, err := RenderConfig(p); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one naming %q", err, tt.want)
			}
		})
	}
}

func TestMountOptions(t *testing.T) {
	tests := []struct {
		name   string
		server string
		extra  []string
		source string
		data   string
		err    string
	}{
		{"v4", "10.96.0.50", []string{"hard"}, "//10.96.0.50/export", "ip=10.96.0.50,port=445,vers=3.1.1,username=root,password=nfslab,hard", ""},
		{"v6", "fd00::50", nil, "//[fd00::50]/export", "ip=fd00::50,port=445,vers=3.1.1,username=root,password=nfslab", ""},
		{"override", "10.96.0.50", []string{"vers=2.1"}, "", "", "overrides"},
		{"comma smuggles an option", "10.96.0.50", []string{"hard,ip=1.2.3.4"}, "", "", "invalid"},
		{"white space", "10.96.0.50", []string{"hard soft"}, "", "", "invalid"},
		{"empty", "10.96.0.50", []string{""}, "", "", "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, fstype, data, err := MountOptions(netip.MustParseAddr(tt.server), tt.extra)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || src != tt.source || fstype != "cifs" || data != tt.data {
				t.Errorf("MountOptions = %q %q %q %v, want %q cifs %q", src, fstype, data, err, tt.source, tt.data)
			}
		})
	}
}

// FuzzMountOptions: the scenario's extra options are user input; whatever they are, the options
// MountOptions sets come first and no extra item adds another option.
func FuzzMountOptions(f *testing.F) {
	f.Add("hard")
	f.Add("echo_interval=1,ip=1.1.1.1")
	f.Fuzz(func(t *testing.T, opt string) {
		_, _, data, err := MountOptions(netip.MustParseAddr("10.96.0.50"), []string{opt})
		if err != nil {
			return
		}
		if !strings.HasPrefix(data, "ip=10.96.0.50,port=445,vers=3.1.1,") {
			t.Fatalf("data %q does not start with the set options", data)
		}
		if got := strings.Count(data, ","); got != 5 {
			t.Fatalf("extra %q added %d options: %q", opt, got-4, data)
		}
	})
}
