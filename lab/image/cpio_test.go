package image

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

type entry struct {
	h    CpioHeader
	data string
}

// sampleEntries covers every entry type, names and data of every length modulo 4, special
// permission bits and non-root owners.
func sampleEntries() []entry {
	return []entry{
		{h: CpioHeader{Name: "etc", Mode: ModeDir | 0o755}},
		{h: CpioHeader{Name: "etc/a", Mode: ModeRegular | 0o644}, data: ""},
		{h: CpioHeader{Name: "etc/bb", Mode: ModeRegular | 0o600, UID: 1000, GID: 100}, data: "x"},
		{h: CpioHeader{Name: "etc/ccc", Mode: ModeRegular | 0o640}, data: "xy"},
		{h: CpioHeader{Name: "etc/dddd", Mode: ModeRegular | 0o644}, data: "xyz"},
		{h: CpioHeader{Name: "etc/eeeee", Mode: ModeRegular | 0o644}, data: "wxyz"},
		{h: CpioHeader{Name: "./usr/bin/", Mode: ModeDir | 0o755}},
		{h: CpioHeader{Name: "/usr/bin/su", Mode: ModeRegular | 0o4755}, data: strings.Repeat("s", 4097)},
		{h: CpioHeader{Name: "tmp", Mode: ModeDir | 0o1777}},
		{h: CpioHeader{Name: "etc/mtab", Mode: ModeSymlink | 0o777, Linkname: "/proc/self/mounts"}},
		{h: CpioHeader{Name: "dev", Mode: ModeDir | 0o755}},
		{h: CpioHeader{Name: "dev/null", Mode: ModeChar | 0o666, RdevMajor: 1, RdevMinor: 3}},
		{h: CpioHeader{Name: "dev/loop0", Mode: ModeBlock | 0o660, RdevMajor: 7, GID: 6}},
		{h: CpioHeader{Name: "dev/initctl", Mode: ModeFIFO | 0o600}},
	}
}

func writeArchive(t *testing.T, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	cw := NewCpioWriter(&buf)
	for _, e := range entries {
		h := e.h
		h.Size = int64(len(e.data))
		if err := cw.WriteHeader(&h); err != nil {
			t.Fatalf("WriteHeader(%s): %v", e.h.Name, err)
		}
		if e.h.Mode&ModeTypeMask == ModeRegular {
			if _, err := io.WriteString(cw, e.data); err != nil {
				t.Fatalf("Write(%s): %v", e.h.Name, err)
			}
		}
	}
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readArchive(t *testing.T, r io.Reader) []entry {
	t.Helper()
	var got []entry
	err := WalkCpio(r, func(h *CpioHeader, data io.Reader) error {
		b, err := io.ReadAll(data)
		if err != nil {
			return err
		}
		got = append(got, entry{h: *h, data: string(b)})
		return nil
	})
	if err != nil {
		t.Fatalf("WalkCpio: %v", err)
	}
	return got
}

func TestCpioRoundTrip(t *testing.T) {
	in := sampleEntries()
	b := writeArchive(t, in)
	if len(b)%512 != 0 {
		t.Errorf("archive is %d bytes, not padded to 512", len(b))
	}
	if !bytes.Contains(b, []byte("TRAILER!!!\x00")) {
		t.Error("no trailer")
	}
	got := readArchive(t, bytes.NewReader(b))
	if len(got) != len(in) {
		t.Fatalf("read %d entries, wrote %d", len(got), len(in))
	}
	for i, e := range in {
		want := e.h
		want.Name, _ = cleanName(want.Name)
		if want.Mode&ModeTypeMask == ModeSymlink {
			want.Size = int64(len(want.Linkname))
		} else {
			want.Size = int64(len(e.data))
		}
		if got[i].h != want {
			t.Errorf("entry %d: got %+v, want %+v", i, got[i].h, want)
		}
		if got[i].data != e.data {
			t.Errorf("entry %d (%s): data %q, want %q", i, want.Name, got[i].data, e.data)
		}
	}
}

func TestCpioHeaderLayout(t *testing.T) {
	b := writeArchive(t, []entry{{h: CpioHeader{Name: "ab", Mode: ModeRegular | 0o644}, data: "hello"}})
	// 110-byte header, "ab\0" padded to 4 with the header (113 -> 116), 5 data bytes padded to 8.
	want := "070701" + "00000001" + "000081a4" + "00000000" + "00000000" + "00000001" + "00000000" +
		"00000005" + "00000000" + "00000000" + "00000000" + "00000000" + "00000003" + "00000000" +
		"ab\x00\x00\x00\x00" + "hello\x00\x00\x00" + "070701" + "00000000"
	if got := string(b[:len(want)]); got != want {
		t.Errorf("header:\n got %q\nwant %q", got, want)
	}
}

func TestCpioWriterErrors(t *testing.T) {
	tests := []struct {
		name string
		do   func(cw *CpioWriter) error
	}{
		{"short data", func(cw *CpioWriter) error {
			if err := cw.WriteHeader(&CpioHeader{Name: "f", Mode: ModeRegular | 0o644, Size: 3}); err != nil {
				return nil
			}
			cw.Write([]byte("a"))
			return cw.Close()
		}},
		{"too much data", func(cw *CpioWriter) error {
			if err := cw.WriteHeader(&CpioHeader{Name: "f", Mode: ModeRegular | 0o644, Size: 1}); err != nil {
				return nil
			}
			_, err := cw.Write([]byte("ab"))
			return err
		}},
		{"empty name", func(cw *CpioWriter) error { return cw.Dir("", 0o755) }},
		{"dot name", func(cw *CpioWriter) error { return cw.Dir("./", 0o755) }},
		{"escaping name", func(cw *CpioWriter) error { return cw.Dir("../x", 0o755) }},
		{"symlink without target", func(cw *CpioWriter) error { return cw.Symlink("l", "") }},
		{"dir with size", func(cw *CpioWriter) error {
			return cw.WriteHeader(&CpioHeader{Name: "d", Mode: ModeDir | 0o755, Size: 1})
		}},
		{"no file type", func(cw *CpioWriter) error {
			return cw.WriteHeader(&CpioHeader{Name: "x", Mode: 0o644})
		}},
		{"too large", func(cw *CpioWriter) error {
			return cw.WriteHeader(&CpioHeader{Name: "x", Mode: ModeRegular | 0o644, Size: 1 << 32})
		}},
		{"write after close", func(cw *CpioWriter) error {
			if err := cw.Close(); err != nil {
				return nil
			}
			return cw.Dir("d", 0o755)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(NewCpioWriter(io.Discard)); err == nil {
				t.Error("no error")
			}
		})
	}
}

func TestWalkCpioConcatenated(t *testing.T) {
	a := writeArchive(t, []entry{{h: CpioHeader{Name: "a", Mode: ModeRegular | 0o644}, data: "1"}})
	b := writeArchive(t, []entry{{h: CpioHeader{Name: "b", Mode: ModeRegular | 0o644}, data: "22"}})
	got := readArchive(t, io.MultiReader(bytes.NewReader(a), bytes.NewReader(b)))
	if len(got) != 2 || got[0].h.Name != "a" || got[1].h.Name != "b" || got[1].data != "22" {
		t.Errorf("got %+v", got)
	}
}

// TestCpioSystemTool checks the archive against GNU cpio: the listing, and an extraction
// compared file by file.
func TestCpioSystemTool(t *testing.T) {
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("no cpio on PATH")
	}
	root := os.Geteuid() == 0
	var in []entry
	for _, e := range sampleEntries() {
		if !root && (e.h.Mode&ModeTypeMask == ModeChar || e.h.Mode&ModeTypeMask == ModeBlock) {
			continue // mknod needs root
		}
		in = append(in, e)
	}
	b := writeArchive(t, in)

	cmd := exec.Command(cpio, "-t", "--quiet")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -t: %v", err)
	}
	var want []string
	for _, e := range in {
		n, _ := cleanName(e.h.Name)
		want = append(want, n)
	}
	if got := strings.Fields(string(out)); !slices.Equal(got, want) {
		t.Errorf("cpio -t:\n got %q\nwant %q", got, want)
	}

	dir := t.TempDir()
	cmd = exec.Command(cpio, "-i", "-d", "--quiet", "--no-absolute-filenames", "--preserve-modification-time")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(b)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, out)
	}
	for _, e := range in {
		n, _ := cleanName(e.h.Name)
		p := filepath.Join(dir, n)
		fi, err := os.Lstat(p)
		if err != nil {
			t.Errorf("%s not extracted: %v", n, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if st.Mode != e.h.Mode {
			t.Errorf("%s: mode %o, want %o", n, st.Mode, e.h.Mode)
		}
		if root && (st.Uid != e.h.UID || st.Gid != e.h.GID) {
			t.Errorf("%s: owner %d:%d, want %d:%d", n, st.Uid, st.Gid, e.h.UID, e.h.GID)
		}
		switch e.h.Mode & ModeTypeMask {
		case ModeRegular:
			if b, _ := os.ReadFile(p); string(b) != e.data {
				t.Errorf("%s: content %q, want %q", n, b, e.data)
			}
		case ModeSymlink:
			if l, _ := os.Readlink(p); l != e.h.Linkname {
				t.Errorf("%s: target %q, want %q", n, l, e.h.Linkname)
			}
		case ModeChar, ModeBlock:
			if devMajor(st.Rdev) != e.h.RdevMajor || devMinor(st.Rdev) != e.h.RdevMinor {
				t.Errorf("%s: device %d,%d, want %d,%d", n, devMajor(st.Rdev), devMinor(st.Rdev), e.h.RdevMajor, e.h.RdevMinor)
			}
		}
	}
}

func TestAddTreeDeterministic(t *testing.T) {
	src := t.TempDir()
	for _, d := range []string{"b/c", "a"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(src, "b/c/x.ko"), []byte("module"), 0o644)
	os.WriteFile(filepath.Join(src, "a/run"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink("../a/run", filepath.Join(src, "b/link"))

	archive := func() []byte {
		var buf bytes.Buffer
		cw := NewCpioWriter(&buf)
		if err := cw.AddTree(src, TreeOptions{Prefix: "usr/lib", RootOwned: true}); err != nil {
			t.Fatal(err)
		}
		if err := cw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	first := archive()
	if !bytes.Equal(first, archive()) {
		t.Error("two archives of the same tree differ")
	}
	var names []string
	for _, e := range readArchive(t, bytes.NewReader(first)) {
		names = append(names, e.h.Name)
		if e.h.UID != 0 || e.h.GID != 0 || e.h.Mtime != 0 {
			t.Errorf("%s: owner %d:%d mtime %d, want 0:0 and 0", e.h.Name, e.h.UID, e.h.GID, e.h.Mtime)
		}
		if e.h.Name == "usr/lib/a/run" && (e.h.Mode != ModeRegular|0o755 || e.data != "#!/bin/sh\n") {
			t.Errorf("usr/lib/a/run: mode %o data %q", e.h.Mode, e.data)
		}
		if e.h.Name == "usr/lib/b/link" && e.h.Linkname != "../a/run" {
			t.Errorf("link target %q", e.h.Linkname)
		}
	}
	want := []string{"usr/lib/a", "usr/lib/a/run", "usr/lib/b", "usr/lib/b/c", "usr/lib/b/c/x.ko", "usr/lib/b/link"}
	if !slices.Equal(names, want) {
		t.Errorf("names %q, want %q", names, want)
	}
}
