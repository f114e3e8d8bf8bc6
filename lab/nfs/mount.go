package nfs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// MountSource formats the source argument of an NFS mount(2): "10.96.0.50:/export", or
// "[fd00::50]:/export" for IPv6.
func MountSource(server netip.Addr, path string) string {
	if server.Is6() && !server.Is4In6() {
		return "[" + server.String() + "]:" + path
	}
	return server.Unmap().String() + ":" + path
}

// MountOptions builds the fstype and the text mount data that mount(2) takes for an NFS mount
// without mount.nfs: for NFS 4.x the fstype is "nfs4" and data is
// "vers=<version>,addr=<server>,clientaddr=<client>" followed by extra (for example "proto=tcp",
// "hard", "timeo=10", "retrans=2").
//
// version is "4.0", "4.1" or "4.2" ("4" means "4.0", which is what the kernel's "vers=4" means:
// the kernel does not negotiate a minor version on its own). NFSv2/v3 are refused: with plain
// mount(2) they need the mountd and portmapper round trips that mount.nfs performs, and the lab's
// servers are v4-only. extra must not repeat vers, addr or clientaddr, and no item may be empty
// or contain a comma (which would smuggle in further options).
func MountOptions(version string, server netip.Addr, clientAddr netip.Addr, extra []string) (fstype, data string, err error) {
	var vers string
	switch version {
	case "4", "4.0":
		vers = "4.0"
	case "4.1", "4.2":
		vers = version
	default:
		return "", "", fmt.Errorf("nfs mount options: unsupported NFS version %q (want 4.0, 4.1 or 4.2)", version)
	}
	if !server.IsValid() {
		return "", "", errors.New("nfs mount options: server address is not set")
	}
	if !clientAddr.IsValid() {
		return "", "", errors.New("nfs mount options: client address is not set")
	}
	parts := []string{"vers=" + vers, "addr=" + server.Unmap().String(), "clientaddr=" + clientAddr.Unmap().String()}
	for _, opt := range extra {
		key, _, _ := strings.Cut(opt, "=")
		switch {
		case opt == "" || strings.ContainsAny(opt, ", \t\n"):
			return "", "", fmt.Errorf("nfs mount options: invalid extra option %q", opt)
		case key == "vers" || key == "nfsvers" || key == "minorversion" || key == "addr" || key == "clientaddr":
			return "", "", fmt.Errorf("nfs mount options: extra option %q overrides one MountOptions sets", opt)
		}
		parts = append(parts, opt)
	}
	return "nfs4", strings.Join(parts, ","), nil
}

// Mount creates target (and its parents) and mounts source on it with mount(2), flags 0 and the
// text options data (see MountOptions).
//
// The syscall runs in its own goroutine. If ctx ends first, Mount returns ctx's error at once, but
// the syscall may stay blocked in the kernel (an NFS mount waits for the server) and may even
// succeed later: the goroutine and the OS thread it occupies stay behind until then, and the
// caller should still Unmount target during cleanup. The agent itself is never blocked.
//
// The NFS client takes its network namespace from the calling thread, so call Mount from the
// node's (root) namespace, never from a goroutine locked into a pod's namespace.
func Mount(ctx context.Context, source, target, fstype, data string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mount %s on %s: %w", source, target, err)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("mount %s on %s: %w", source, target, err)
	}
	done := make(chan error, 1) // buffered: an abandoned syscall must not block its goroutine
	go func() { done <- unix.Mount(source, target, fstype, 0, data) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("mount %s on %s (%s, %q): %w", source, target, fstype, data, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mount %s on %s: abandoned, the syscall may still be blocked in the kernel: %w", source, target, ctx.Err())
	}
}

// Unmount detaches whatever is mounted on target: first umount2(MNT_FORCE), which aborts the
// NFS client's pending RPCs, and when that fails (typically EBUSY because a stuck probe still
// holds a file open) umount2(MNT_DETACH), which lazily detaches the mount.
//
// A target that is not a mount point (EINVAL) or does not exist (ENOENT) counts as unmounted:
// Unmount is safe to call during any cleanup. Like Mount, it runs the syscalls in a goroutine
// and returns ctx's error if ctx ends first, leaving the syscall behind.
func Unmount(ctx context.Context, target string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	done := make(chan error, 1)
	go func() { done <- unmount(target) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("unmount %s: abandoned, the syscall may still be blocked in the kernel: %w", target, ctx.Err())
	}
}

func unmount(target string) error {
	forceErr := unix.Unmount(target, unix.MNT_FORCE)
	if forceErr == nil || errors.Is(forceErr, unix.EINVAL) || errors.Is(forceErr, unix.ENOENT) {
		return nil
	}
	if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil // went away between the two calls
		}
		return fmt.Errorf("unmount %s: MNT_FORCE: %v; MNT_DETACH: %w", target, forceErr, err)
	}
	return nil
}
