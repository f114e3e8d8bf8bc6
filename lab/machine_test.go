package lab

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/nfslab/nfslab/lab/image"
)

// TestDockerDiskFits: the kind form's Docker disk is refused, before it is created, where the
// node image it would hold does not fit (a sparse 1 TiB archive), and allowed where it does.
func TestDockerDiskFits(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		size    int64
		noSpace bool
	}{
		{"a small archive", 1 << 20, false},
		{"an archive larger than the disk", 1 << 40, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			archive := filepath.Join(dir, tt.name+".tar")
			f, err := os.Create(archive)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Truncate(tt.size); err != nil {
				f.Close()
				t.Skipf("no sparse file of %d bytes here: %v", tt.size, err)
			}
			f.Close()
			err = dockerDiskFits(dir, archive)
			var ns *image.NoSpaceError
			if errors.As(err, &ns) != tt.noSpace || (!tt.noSpace && err != nil) {
				t.Fatalf("dockerDiskFits = %v, want no space %v", err, tt.noSpace)
			}
			if tt.noSpace && ns.Need != 2*tt.size {
				t.Errorf("asked for %d bytes, want twice the archive", ns.Need)
			}
		})
	}
	if err := dockerDiskFits(dir, filepath.Join(dir, "missing.tar")); err == nil {
		t.Error("a missing archive: no error")
	}
}
