package image

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// NoSpaceError says the filesystem of Dir has less free space than something about to be
// written there needs.
type NoSpaceError struct {
	Dir        string
	Free, Need int64 // bytes
}

func (e *NoSpaceError) Error() string {
	return fmt.Sprintf("%s free on the filesystem of %s, about %s needed: free some space or prune the cache (nfslab cache prune --max-size SIZE)",
		FormatSize(e.Free), e.Dir, FormatSize(e.Need))
}

// EnsureFree returns a *NoSpaceError when the filesystem that holds dir (or would hold it: the
// nearest directory that exists) has fewer than need bytes free for an unprivileged writer.
// Builders of gigabyte-sized cache entries call it first, so that a run fails with a message
// saying so instead of filling the disk.
func EnsureFree(dir string, need int64) error {
	p := dir
	var st unix.Statfs_t
	for {
		err := unix.Statfs(p, &st)
		if err == nil {
			break
		}
		parent := filepath.Dir(p)
		if !errors.Is(err, fs.ErrNotExist) || parent == p {
			return fmt.Errorf("reading the free space of %s: %w", dir, err)
		}
		p = parent
	}
	free := int64(st.Bavail) * st.Bsize
	if free < need {
		return &NoSpaceError{Dir: dir, Free: free, Need: need}
	}
	return nil
}

// FormatSize renders n bytes with a binary unit: "1023 B", "3.5 GiB", "165 MiB" (one decimal
// below 10).
func FormatSize(n int64) string {
	const units = "KMGTPE"
	if n < 1024 && n > -1024 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n)
	i := -1
	for (v >= 1024 || v <= -1024) && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v < 10 && v > -10 {
		return fmt.Sprintf("%.1f %ciB", v, units[i])
	}
	return fmt.Sprintf("%.0f %ciB", v, units[i])
}
