package image

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/nfslab/nfslab/lab/hosttools"
)

// NewExt4Disk creates at path a sparse raw disk image of sizeMiB holding an empty ext4
// filesystem labelled label. mkfs.ext4 writes the file directly: no loop device, no mount, so it
// works wherever the lab does. Only the blocks the guest writes take space on the host.
func NewExt4Disk(ctx context.Context, path, label string, sizeMiB int) error {
	return mkfsExt4(ctx, path, label, sizeMiB, "")
}

// mkfsExt4 creates at path (which must not exist) a sparse raw disk image of sizeMiB holding an
// ext4 filesystem labelled label. When root is not empty, mkfs.ext4 copies the tree below it into
// the filesystem (-d: owners, modes, symlinks, hard links, device nodes, extended attributes).
func mkfsExt4(ctx context.Context, path, label string, sizeMiB int, root string) error {
	mkfs, err := hosttools.Require("mkfs.ext4", "e2fsprogs")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("create disk image: %w", err)
	}
	err = f.Truncate(int64(sizeMiB) << 20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("size disk image %s: %w", path, err)
	}
	// Lazy init: the inode tables and the journal are zeroed by the guest's kernel on first
	// use instead of written out here (a 20 GiB disk would otherwise cost a few hundred MB).
	args := []string{"-q", "-F", "-L", label, "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1"}
	if root != "" {
		args = append(args, "-d", root)
	}
	cmd := exec.CommandContext(ctx, mkfs, append(args, path)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(path)
		return fmt.Errorf("mkfs.ext4 %s: %w: %s", path, err, strings.TrimSpace(string(out)))
	}
	return nil
}
