package image

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnsureFree(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		dir     string
		need    int64
		noSpace bool
	}{
		{"nothing needed", dir, 0, false},
		{"a little", dir, 1 << 10, false},
		{"a directory not created yet", filepath.Join(dir, "a", "b"), 1 << 10, false},
		{"more than any disk", dir, 1 << 62, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := EnsureFree(tt.dir, tt.need)
			var ns *NoSpaceError
			if got := errors.As(err, &ns); got != tt.noSpace {
				t.Fatalf("EnsureFree(%s, %d) = %v; NoSpaceError %v, want %v", tt.dir, tt.need, err, got, tt.noSpace)
			}
			if !tt.noSpace {
				return
			}
			if ns.Dir != tt.dir || ns.Need != tt.need || ns.Free <= 0 || ns.Free >= ns.Need {
				t.Errorf("error %+v does not say where, how much is free and how much is needed", ns)
			}
			for _, want := range []string{tt.dir, FormatSize(ns.Free), "nfslab cache prune"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message %q lacks %q", err, want)
				}
			}
		})
	}
}

func TestFormatSize(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.0 KiB"},
		{165 << 20, "165 MiB"},
		{3<<30 + 512<<20, "3.5 GiB"},
		{20 << 30, "20 GiB"},
		{2 << 40, "2.0 TiB"},
		{-5, "-5 B"},
	}
	for _, tt := range tests {
		if got := FormatSize(tt.n); got != tt.want {
			t.Errorf("FormatSize(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}
