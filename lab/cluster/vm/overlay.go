package vm

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// CreateOverlay creates at path a qcow2 image whose unwritten blocks read from backing (raw, or
// qcow2 when backingQcow2): the guest's writes go to the overlay and backing stays as it is. A
// cached disk shared by runs, or a snapshot's disk, is attached this way.
func CreateOverlay(ctx context.Context, path, backing string, backingQcow2 bool) error {
	format := "raw"
	if backingQcow2 {
		format = "qcow2"
	}
	out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-F", format, "-b", backing, path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("create a disk overlay over %s: qemu-img: %w: %s", backing, err, strings.TrimSpace(string(out)))
	}
	return nil
}
