package image

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestNewExt4Disk: the image is sparse, of the size asked, and holds an ext4 filesystem with the
// label; an existing file is never overwritten.
func TestNewExt4Disk(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 not installed")
	}
	p := filepath.Join(t.TempDir(), "docker.img")
	if err := NewExt4Disk(context.Background(), p, "nfslab-docker", 1024); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != 1024<<20 {
		t.Errorf("size %d, want %d", st.Size(), 1024<<20)
	}
	if used := st.Sys().(*syscall.Stat_t).Blocks * 512; used > 64<<20 {
		t.Errorf("the image uses %d bytes on the host: not sparse", used)
	}
	if dumpe2fs, err := exec.LookPath("dumpe2fs"); err == nil {
		out, err := exec.Command(dumpe2fs, "-h", p).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "nfslab-docker") {
			t.Errorf("dumpe2fs -h: %v\n%s", err, out)
		}
	}
	if err := NewExt4Disk(context.Background(), p, "x", 16); err == nil {
		t.Error("an existing image was overwritten")
	}
}
