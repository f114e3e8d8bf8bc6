package image

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeELF returns a minimal 64-bit little-endian ELF header for machine, followed by one
// program header of type phType (none if phType is 0).
func fakeELF(machine elf.Machine, typ elf.Type, phType elf.ProgType) []byte {
	var b bytes.Buffer
	ident := [16]byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)}
	phnum := uint16(0)
	if phType != 0 {
		phnum = 1
	}
	hdr := elf.Header64{
		Ident: ident, Type: uint16(typ), Machine: uint16(machine), Version: uint32(elf.EV_CURRENT),
		Entry: 0x401000, Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: phnum, Shentsize: 64,
	}
	binary.Write(&b, binary.LittleEndian, hdr)
	if phType != 0 {
		binary.Write(&b, binary.LittleEndian, elf.Prog64{Type: uint32(phType), Off: 0, Filesz: 28, Memsz: 28})
	}
	return b.Bytes()
}

func TestAgentArchive(t *testing.T) {
	tests := []struct {
		name    string
		content []byte
		wantErr string
	}{
		{"static executable", fakeELF(elf.EM_X86_64, elf.ET_EXEC, elf.PT_LOAD), ""},
		{"static pie", fakeELF(elf.EM_X86_64, elf.ET_DYN, elf.PT_LOAD), ""},
		{"dynamic", fakeELF(elf.EM_X86_64, elf.ET_EXEC, elf.PT_INTERP), "CGO_ENABLED=0"},
		{"other architecture", fakeELF(elf.EM_AARCH64, elf.ET_EXEC, elf.PT_LOAD), "GOARCH=amd64"},
		{"shared object", fakeELF(elf.EM_X86_64, elf.ET_REL, 0), "not an executable"},
		{"shell script", []byte("#!/bin/sh\necho hi\n"), "not an ELF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "nfslab")
			if err := os.WriteFile(bin, tt.content, 0o755); err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(dir, "agent.cpio")
			err := AgentArchive(dst, bin, "")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want %q", err, tt.wantErr)
				}
				if _, serr := os.Stat(dst); serr == nil {
					t.Error("archive written despite the error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(dst)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got := readArchive(t, f)
			if len(got) != 4 {
				t.Fatalf("entries %+v, want 4", got)
			}
			if h := got[0].h; h.Name != "nfslab" || h.Mode != ModeRegular|0o755 || got[0].data != string(tt.content) {
				t.Errorf("agent entry %+v", h)
			}
			if h := got[1].h; h.Name != "init" || h.Mode&ModeTypeMask != ModeSymlink || h.Linkname != "/nfslab" {
				t.Errorf("init entry %+v", h)
			}
			if h := got[3].h; h.Name != "dev/console" || h.Mode != ModeChar|0o600 || h.RdevMajor != 5 || h.RdevMinor != 1 {
				t.Errorf("console entry %+v", h)
			}
		})
	}
}

func TestAssemble(t *testing.T) {
	dir := t.TempDir()
	var parts []string
	for i, e := range []entry{
		{h: CpioHeader{Name: "etc/x", Mode: ModeRegular | 0o644}, data: "first"},
		{h: CpioHeader{Name: "usr/lib/modules", Mode: ModeDir | 0o755}},
		{h: CpioHeader{Name: "etc/x", Mode: ModeRegular | 0o644}, data: "override"},
	} {
		p := filepath.Join(dir, string(rune('a'+i))+".cpio")
		if err := os.WriteFile(p, writeArchive(t, []entry{e}), 0o644); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, p)
	}
	dst := filepath.Join(dir, "initrd")
	if err := Assemble(dst, parts...); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(dst)
	defer f.Close()
	got := readArchive(t, f)
	var names []string
	for _, e := range got {
		names = append(names, e.h.Name+"="+e.data)
	}
	if want := "etc/x=first usr/lib/modules= etc/x=override"; strings.Join(names, " ") != want {
		t.Errorf("entries %q, want %q", strings.Join(names, " "), want)
	}
	if err := Assemble(dst); err == nil {
		t.Error("Assemble with no parts: no error")
	}
	if err := Assemble(dst, filepath.Join(dir, "missing.cpio")); err == nil {
		t.Error("Assemble with a missing part: no error")
	}
	// A failed Assemble leaves nothing: no part-written initrd, no temporary file.
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Errorf("%d entries left, want the 3 parts alone", len(entries))
	}
}
