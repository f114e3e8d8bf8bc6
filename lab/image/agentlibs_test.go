package image

import (
	"debug/elf"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestArchiveTreeResolve(t *testing.T) {
	tree := archiveTree{
		links: map[string]string{
			"lib":                              "usr/lib",
			"lib64":                            "usr/lib64",
			"usr/lib64/ld-linux-x86-64.so.2":   "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
			"usr/lib/x86_64-linux-gnu/libc.so": "libc.so.6",
			"loop/a":                           "b", "loop/b": "a",
			"escape": "../../../usr/lib/x86_64-linux-gnu/libc.so.6",
		},
		files: map[string]bool{
			"usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2": true,
			"usr/lib/x86_64-linux-gnu/libc.so.6":            true,
		},
	}
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"/lib64/ld-linux-x86-64.so.2", "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", true},
		{"lib/x86_64-linux-gnu/libc.so", "usr/lib/x86_64-linux-gnu/libc.so.6", true},
		{"/usr/lib/x86_64-linux-gnu/libc.so.6", "usr/lib/x86_64-linux-gnu/libc.so.6", true},
		{"/escape", "usr/lib/x86_64-linux-gnu/libc.so.6", true}, // ".." stops at the root
		{"/loop/a", "", false},
		{"/lib/x86_64-linux-gnu/libm.so.6", "usr/lib/x86_64-linux-gnu/libm.so.6", false},
		{"/lib", "usr/lib", false}, // a directory, not a file
	}
	for _, tt := range tests {
		got, ok := tree.resolve(tt.in)
		if ok != tt.ok || tt.ok && got != tt.want {
			t.Errorf("resolve(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
	if p, ok := tree.find("libc.so.6"); !ok || p != "usr/lib/x86_64-linux-gnu/libc.so.6" {
		t.Errorf("find(libc.so.6) = %q, %v", p, ok)
	}
}

// hostDynamic returns a dynamically linked executable of this host and the host's files of its
// interpreter and libc, or skips.
func hostDynamic(t *testing.T) (bin, interp, libc string) {
	t.Helper()
	bin = "/bin/true"
	f, err := elf.Open(bin)
	if err != nil {
		t.Skipf("no %s: %v", bin, err)
	}
	defer f.Close()
	in, err := interpreter(f)
	if err != nil || in == "" || f.Machine != elf.EM_X86_64 {
		t.Skipf("%s is not a dynamically linked x86-64 executable", bin)
	}
	interp, err = filepath.EvalSymlinks(in)
	if err != nil {
		t.Skip(err)
	}
	for _, d := range []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64"} {
		if p, err := filepath.EvalSymlinks(filepath.Join(d, "libc.so.6")); err == nil {
			return bin, interp, p
		}
	}
	t.Skip("no libc.so.6 on this host")
	return
}

func readHost(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDynamicAgent checks a real dynamically linked executable against guest root filesystems
// laid out as Debian's (usr-merged, multiarch), with the host's loader and libc in them: it is
// accepted when they are there, and refused, naming what is missing, when they are not.
func TestDynamicAgent(t *testing.T) {
	bin, interp, libc := hostDynamic(t)
	ldso, libcData := readHost(t, interp), readHost(t, libc)
	base := []entry{
		{h: CpioHeader{Name: "lib", Mode: ModeSymlink | 0o777, Linkname: "usr/lib"}},
		{h: CpioHeader{Name: "lib64", Mode: ModeSymlink | 0o777, Linkname: "usr/lib64"}},
		{h: CpioHeader{Name: "usr/lib64/ld-linux-x86-64.so.2", Mode: ModeSymlink | 0o777, Linkname: "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"}},
	}
	loader := entry{h: CpioHeader{Name: "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", Mode: ModeRegular | 0o755}, data: ldso}
	goodLibc := entry{h: CpioHeader{Name: "usr/lib/x86_64-linux-gnu/libc.so.6", Mode: ModeRegular | 0o755}, data: libcData}
	// A libc.so.6 that defines no symbol versions at all, as an old or foreign one would lack
	// the versions a newer binary asks for.
	noVersions := entry{h: CpioHeader{Name: "usr/lib/x86_64-linux-gnu/libc.so.6", Mode: ModeRegular | 0o755}, data: readHost(t, bin)}
	tests := []struct {
		name    string
		entries []entry
		wantErr []string
	}{
		{"loader and libc there", append(base, loader, goodLibc), nil},
		{"no libc", append(base, loader), []string{"no libc.so.6", "CGO_ENABLED=0"}},
		{"no loader", append(base, goodLibc), []string{"no program interpreter /lib64/ld-linux-x86-64.so.2"}},
		{"libc without the versions", append(base, loader, noVersions), []string{"libc.so.6 (/usr/lib/x86_64-linux-gnu/libc.so.6) lacks GLIBC_2."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			rootfs := filepath.Join(dir, "rootfs.cpio")
			if err := os.WriteFile(rootfs, writeArchive(t, tt.entries), 0o644); err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(dir, "agent.cpio")
			err := AgentArchive(dst, bin, rootfs)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(dst); err != nil {
					t.Errorf("no archive: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
