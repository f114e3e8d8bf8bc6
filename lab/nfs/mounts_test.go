package nfs

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

const nfsLine = `10.96.0.50:/export /mnt/nfs nfs4 rw,relatime,vers=4.1,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=10,retrans=2,sec=sys,clientaddr=10.0.0.1,local_lock=none,addr=10.96.0.50 0 0`

func TestParseMounts(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []MountEntry
		wantErr string
	}{
		{
			name: "nfs4 mount among others",
			in: "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n" +
				"tmpfs /export tmpfs rw,relatime,size=65536k 0 0\n" +
				nfsLine + "\n",
			want: []MountEntry{
				{Source: "proc", Target: "/proc", FSType: "proc", Options: "rw,nosuid,nodev,noexec,relatime"},
				{Source: "tmpfs", Target: "/export", FSType: "tmpfs", Options: "rw,relatime,size=65536k"},
				{Source: "10.96.0.50:/export", Target: "/mnt/nfs", FSType: "nfs4", Options: strings.Fields(nfsLine)[3]},
			},
		},
		{
			name: "octal escapes decoded",
			in:   `/dev/sda1 /mnt/my\040disk\011x ext4 rw 0 0` + "\n" + `srv:/a\134b /mnt/back\134slash nfs4 rw 0 0`,
			want: []MountEntry{
				{Source: "/dev/sda1", Target: "/mnt/my disk\tx", FSType: "ext4", Options: "rw"},
				{Source: `srv:/a\b`, Target: `/mnt/back\slash`, FSType: "nfs4", Options: "rw"},
			},
		},
		{
			name: "incomplete or out-of-range escapes kept",
			in:   `a /m\04 t o` + "\n" + `a /n\400x t o` + "\n" + `a /p\ t o`,
			want: []MountEntry{
				{Source: "a", Target: `/m\04`, FSType: "t", Options: "o"},
				{Source: "a", Target: `/n\400x`, FSType: "t", Options: "o"},
				{Source: "a", Target: `/p\`, FSType: "t", Options: "o"},
			},
		},
		{
			name: "blank lines, tabs, no trailing newline, no dump/pass",
			in:   "\n  \nnone\t/sys\tsysfs  rw\n",
			want: []MountEntry{{Source: "none", Target: "/sys", FSType: "sysfs", Options: "rw"}},
		},
		{name: "empty", in: "", want: nil},
		{name: "too few fields", in: "proc /proc proc 0 0\nbad line\n", wantErr: "line 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMounts(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestOptionAndAddrOf(t *testing.T) {
	entries, err := ParseMounts(strings.NewReader(nfsLine + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := entries[0]
	tests := []struct {
		key, want string
		ok        bool
	}{
		{"vers", "4.1", true},
		{"addr", "10.96.0.50", true},
		{"clientaddr", "10.0.0.1", true},
		{"hard", "", true},
		{"timeo", "10", true},
		{"soft", "", false},
		{"add", "", false},
	}
	for _, tt := range tests {
		got, ok := e.Option(tt.key)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Option(%q) = %q, %v; want %q, %v", tt.key, got, ok, tt.want, tt.ok)
		}
	}
	if got := AddrOf(e); got != "10.96.0.50" {
		t.Errorf("AddrOf = %q", got)
	}
	if got := AddrOf(MountEntry{Options: "rw,relatime"}); got != "" {
		t.Errorf("AddrOf without addr = %q", got)
	}
	if got, _ := (MountEntry{Options: "addr=1.1.1.1,addr=2.2.2.2"}).Option("addr"); got != "2.2.2.2" {
		t.Errorf("last occurrence should win, got %q", got)
	}
}

func TestFindMount(t *testing.T) {
	entries := []MountEntry{
		{Source: "tmpfs", Target: "/mnt/nfs", FSType: "tmpfs"},
		{Source: "10.96.0.50:/export", Target: "/mnt/nfs", FSType: "nfs4"},
		{Source: "proc", Target: "/proc", FSType: "proc"},
	}
	tests := []struct {
		target, wantFS string
		ok             bool
	}{
		{"/mnt/nfs", "nfs4", true}, // the top of the stack
		{"/proc", "proc", true},
		{"/mnt", "", false},
	}
	for _, tt := range tests {
		got, ok := FindMount(entries, tt.target)
		if ok != tt.ok || got.FSType != tt.wantFS {
			t.Errorf("FindMount(%q) = %+v, %v; want fstype %q, %v", tt.target, got, ok, tt.wantFS, tt.ok)
		}
	}
}

// escapeOctal escapes what the kernel escapes in /proc/mounts (and \r, which line readers eat).
func escapeOctal(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\r', '\\':
			fmt.Fprintf(&b, `\%03o`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func FuzzParseMounts(f *testing.F) {
	f.Add(nfsLine + "\n")
	f.Add("proc /proc proc rw 0 0\n\n/dev/sda1 /mnt/my\\040disk ext4 rw 0 0\n")
	f.Add("a b c\n")
	f.Add(`x /\134\1 t o,\0777`)
	f.Fuzz(func(t *testing.T, in string) {
		entries, err := ParseMounts(strings.NewReader(in))
		if err != nil {
			return
		}
		// Formatting the entries the way the kernel does must give back the same entries.
		var b strings.Builder
		for _, e := range entries {
			for _, field := range []string{e.Source, e.Target, e.FSType, e.Options} {
				if field == "" {
					t.Fatalf("empty field in %#v", e)
				}
			}
			fmt.Fprintf(&b, "%s %s %s %s 0 0\n", escapeOctal(e.Source), escapeOctal(e.Target), escapeOctal(e.FSType), escapeOctal(e.Options))
			_ = AddrOf(e)
		}
		again, err := ParseMounts(strings.NewReader(b.String()))
		if err != nil {
			t.Fatalf("re-parse of %q: %v", b.String(), err)
		}
		if !reflect.DeepEqual(entries, again) {
			t.Fatalf("round trip changed entries:\n%#v\n%#v", entries, again)
		}
	})
}
