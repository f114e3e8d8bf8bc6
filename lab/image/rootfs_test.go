package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/nfslab/nfslab/lab/hosttools"
)

func TestParsePackageList(t *testing.T) {
	tests := []struct {
		name, text string
		want       []string
		wantErr    string
	}{
		{"comments, blanks, duplicates, sorted", "# c\nb\n\n a # why\nb\n", []string{"a", "b"}, ""},
		{"two names on a line", "a b\n", nil, "line 1"},
		{"version pin", "a=1.0\n", nil, "invalid package name"},
		{"empty", "# nothing\n", nil, "no packages"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePackageList(tt.text)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestDefaultRootfsRecipe(t *testing.T) {
	r, err := defaultRootfsRecipe()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"nfs-ganesha", "nfs-ganesha-vfs", "nfs-common", "iproute2", "iptables", "kmod", "procps", "util-linux"} {
		if !slices.Contains(r.Packages, p) {
			t.Errorf("package %s missing from the embedded list", p)
		}
	}
	args := strings.Join(r.mmdebstrapArgs(), " ")
	for _, want := range []string{"--variant=minbase", "--format=tar", "--include=", "path-exclude=/usr/share/man/*", "bookworm -"} {
		if !strings.Contains(args, want) {
			t.Errorf("mmdebstrap args %q lack %q", args, want)
		}
	}
	// Any change to the recipe must change the cache key.
	k := r.inputs().Key()
	r2 := r
	r2.Packages = append(slices.Clone(r.Packages), "strace")
	r3 := r
	r3.Trim = append(slices.Clone(r.Trim), "usr/share/foo")
	r4 := r
	r4.Files = slices.Clone(r.Files)
	r4.Files[0].Linkname = "/proc/mounts"
	for i, other := range []rootfsRecipe{r2, r3, r4} {
		if other.inputs().Key() == k {
			t.Errorf("variant %d has the same key", i)
		}
	}
	if again, _ := defaultRootfsRecipe(); again.inputs().Key() != k {
		t.Error("the default recipe's key is not stable")
	}
}

func TestTrimmed(t *testing.T) {
	trim := []string{"usr/share/doc", "usr/lib/python3*", "var/cache/apt/*", "usr/lib/*-linux-gnu/perl"}
	tests := []struct {
		path string
		want bool
	}{
		{"usr/share/doc", true},
		{"usr/share/doc/bash/copyright", true},
		{"usr/share/docs", false},
		{"usr/lib/python3.11/os.py", true},
		{"usr/lib/python3", true},
		{"var/cache/apt", false},
		{"var/cache/apt/pkgcache.bin", true},
		{"usr/lib/x86_64-linux-gnu/perl/5.36/Config.pm", true},
		{"usr/lib/x86_64-linux-gnu/perl-base/strict.pm", false},
		{"usr/bin/ganesha.nfsd", false},
	}
	for _, tt := range tests {
		if got := trimmed(tt.path, trim); got != tt.want {
			t.Errorf("trimmed(%s) = %v, want %v", tt.path, got, tt.want)
		}
	}
}

type tarEntry struct {
	name     string
	typ      byte
	mode     int64
	data     string
	linkname string
	uid      int
}

func makeTar(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.data)), Linkname: e.linkname, Uid: e.uid}
		if e.typ == tar.TypeChar {
			h.Devmajor, h.Devminor = 5, 1
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.data))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestConvertTar(t *testing.T) {
	status := "Package: a\nStatus: install ok installed\nVersion: 1.0\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 2\n\nPackage: b\nStatus: install ok installed\nVersion: 3:4-5\n"
	in := makeTar(t, []tarEntry{
		{name: "./dev/", typ: tar.TypeDir, mode: 0o755},
		{name: "./dev/console", typ: tar.TypeChar, mode: 0o600},
		{name: "./", typ: tar.TypeDir, mode: 0o755},
		{name: "./etc/", typ: tar.TypeDir, mode: 0o755},
		{name: "./etc/hosts", typ: tar.TypeReg, mode: 0o644, data: "127.0.0.1 localhost\n"},
		{name: "./lib", typ: tar.TypeSymlink, mode: 0o777, linkname: "usr/lib"},
		{name: "./usr/", typ: tar.TypeDir, mode: 0o755},
		{name: "./usr/bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "./usr/bin/perl", typ: tar.TypeReg, mode: 0o755, data: "ELF"},
		{name: "./usr/bin/perl5.36.0", typ: tar.TypeLink, linkname: "./usr/bin/perl"},
		{name: "./usr/bin/python3.11", typ: tar.TypeReg, mode: 0o755, data: "big python"},
		{name: "./usr/bin/ganesha.nfsd", typ: tar.TypeReg, mode: 0o755, data: "ganesha"},
		{name: "./usr/share/", typ: tar.TypeDir, mode: 0o755},
		{name: "./usr/share/doc/", typ: tar.TypeDir, mode: 0o755},
		{name: "./usr/share/doc/x/copyright", typ: tar.TypeReg, mode: 0o644, data: "legal"},
		{name: "./var/", typ: tar.TypeDir, mode: 0o755},
		{name: "./var/lib/", typ: tar.TypeDir, mode: 0o755},
		{name: "./var/lib/dpkg/", typ: tar.TypeDir, mode: 0o755},
		{name: "./var/lib/dpkg/status", typ: tar.TypeReg, mode: 0o644, data: status},
		{name: "./var/mail/", typ: tar.TypeDir, mode: 0o2775, uid: 8},
	})
	r := rootfsRecipe{
		Trim: []string{"usr/share/doc", "usr/bin/python3*"},
		Files: []fixup{
			{Path: "etc/mtab", Mode: ModeSymlink | 0o777, Linkname: "/proc/self/mounts"},
			{Path: "etc/hosts", Mode: ModeRegular | 0o644, Data: "127.0.0.1\tlocalhost nfslab-node\n"},
			{Path: "etc", Mode: ModeDir | 0o700}, // exists: the packaged directory stays
			{Path: "var/lib/nfs/ganesha", Mode: ModeDir | 0o755},
		},
	}
	var out bytes.Buffer
	cw := NewCpioWriter(&out)
	var st rootfsStats
	if err := convertTar(bytes.NewReader(in), cw, r, &st); err != nil {
		t.Fatal(err)
	}
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	got := map[string]entry{}
	var order []string
	for _, e := range readArchive(t, &out) {
		if _, dup := got[e.h.Name]; dup {
			t.Errorf("%s archived twice", e.h.Name)
		}
		got[e.h.Name] = e
		order = append(order, e.h.Name)
	}
	for _, gone := range []string{"usr/share/doc", "usr/share/doc/x/copyright", "usr/bin/python3.11", "."} {
		if _, ok := got[gone]; ok {
			t.Errorf("%s should not be archived", gone)
		}
	}
	checks := []struct {
		name     string
		mode     uint32
		data     string
		linkname string
		uid      uint32
	}{
		{"dev/console", ModeChar | 0o600, "", "", 0},
		{"etc", ModeDir | 0o755, "", "", 0},
		{"etc/hosts", ModeRegular | 0o644, "127.0.0.1\tlocalhost nfslab-node\n", "", 0},
		{"etc/mtab", ModeSymlink | 0o777, "", "/proc/self/mounts", 0},
		{"lib", ModeSymlink | 0o777, "", "usr/lib", 0},
		{"usr/bin/perl5.36.0", ModeSymlink | 0o777, "", "/usr/bin/perl", 0},
		{"usr/bin/ganesha.nfsd", ModeRegular | 0o755, "ganesha", "", 0},
		{"var/lib/nfs", ModeDir | 0o755, "", "", 0},
		{"var/lib/nfs/ganesha", ModeDir | 0o755, "", "", 0},
		{"var/mail", ModeDir | 0o2775, "", "", 8},
	}
	for _, c := range checks {
		e, ok := got[c.name]
		if !ok {
			t.Errorf("%s missing", c.name)
			continue
		}
		if e.h.Mode != c.mode || e.data != c.data || e.h.Linkname != c.linkname || e.h.UID != c.uid || e.h.Mtime != 0 {
			t.Errorf("%s: mode %o data %q link %q uid %d mtime %d; want %o %q %q %d 0",
				c.name, e.h.Mode, e.data, e.h.Linkname, e.h.UID, e.h.Mtime, c.mode, c.data, c.linkname, c.uid)
		}
	}
	if i, j := slices.Index(order, "var/lib/nfs"), slices.Index(order, "var/lib/nfs/ganesha"); i < 0 || j < i {
		t.Errorf("parent directory not written before its child: %v", order)
	}
	if st.packages != "a 1.0\nb 3:4-5\n" {
		t.Errorf("packages = %q", st.packages)
	}
	if st.bytesIn <= st.bytesOut || st.entriesIn <= st.entriesOut-2 {
		t.Errorf("stats do not show the trimming: %+v", st)
	}
}

func TestCheckTools(t *testing.T) {
	tools := hostTools()
	have := map[string]bool{"qemu-system-x86_64": true, "dpkg-deb": true, "mmdebstrap": true, "zstd": true, "qemu-img": true}
	look := func(name string) error {
		if have[name] {
			return nil
		}
		return errors.New("not found")
	}
	noFiles := func(string) bool { return false }
	err := tools.CheckWith(look, noFiles)
	var m *hosttools.MissingError
	if !errors.As(err, &m) {
		t.Fatalf("err = %v, want *hosttools.MissingError", err)
	}
	if !slices.Equal(m.Missing, []string{"apt-get", "apt-cache", "depmod"}) {
		t.Errorf("Missing = %q", m.Missing)
	}
	if want := "apt-get install --no-install-recommends apt kmod"; m.InstallCommand() != want {
		t.Errorf("InstallCommand = %q, want %q", m.InstallCommand(), want)
	}
	if !strings.Contains(err.Error(), "apt-get install --no-install-recommends apt kmod") {
		t.Errorf("Error() = %q lacks the install line", err)
	}
	all := func(string) error { return nil }
	if err := tools.CheckWith(all, noFiles); err != nil {
		t.Errorf("all present: %v", err)
	}
}
