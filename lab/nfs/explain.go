package nfs

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// UDPDisabledOption is the kernel option that compiles NFS over UDP out of the client (set in
// Debian's kernels and in nfslab's recipe kernels): the kernel then refuses proto=udp with
// EINVAL. Its reason ("NFS: Unsupported transport protocol udp") goes only to an fsopen(2)
// context's log, never to the kernel log for mount(2): the errno is all a mount(2) caller sees.
const UDPDisabledOption = "CONFIG_NFS_DISABLE_UDP_SUPPORT"

// kernelConfig returns the value of a kernel config option ("y", "m", a string; "" when it is
// "is not set") and whether the running kernel's config could be read at all. A variable so
// that tests can stand in for the kernel.
var kernelConfig = readKernelConfig

// ExplainMountError adds what the lab knows about the likely cause to an error returned by
// Mount for an NFS version (a Versions value); other errors, and nil, are returned unchanged.
// The result wraps err, so errors.Is still sees the errno.
//
//   - EINVAL for "3-udp": NFS over UDP is compiled out when the kernel was built with
//     CONFIG_NFS_DISABLE_UDP_SUPPORT=y. The kernel config is read from /proc/config.gz or
//     /boot/config-<release> to say "is" rather than "may be" when it can.
//   - EPROTONOSUPPORT: the NFS version is not built into (or loaded in) the kernel.
//   - ECONNREFUSED, ETIMEDOUT, EIO for NFSv3: the MOUNT request goes to mountd at MountdPort
//     before any NFS call, so the Service must carry that port too (ServicePorts).
func ExplainMountError(version string, err error) error {
	if err == nil {
		return nil
	}
	v, perr := parseVersion(version)
	if perr != nil {
		return err
	}
	switch {
	case v.proto == UDP && errors.Is(err, unix.EINVAL):
		val, known := kernelConfig(UDPDisabledOption)
		switch {
		case known && val == "y":
			return fmt.Errorf("%w: NFS over UDP is compiled out of this kernel (%s=y)", err, UDPDisabledOption)
		case known:
			return fmt.Errorf("%w: the kernel refused the UDP mount options (%s is not set, so NFS over UDP itself is compiled in)", err, UDPDisabledOption)
		default:
			return fmt.Errorf("%w: NFS over UDP may be compiled out of this kernel (%s=y, as in Debian's and nfslab's kernels)", err, UDPDisabledOption)
		}
	case errors.Is(err, unix.EPROTONOSUPPORT):
		opt := "CONFIG_NFS_V3"
		if v.major == 4 {
			opt = "CONFIG_NFS_V4 (and CONFIG_NFS_V4_1/_2 for minor versions 1 and 2)"
		}
		return fmt.Errorf("%w: NFS version %s is not available in this kernel (%s, or its module is not loaded)", err, v.vers, opt)
	case v.major == 3 && (errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.ETIMEDOUT) || errors.Is(err, unix.EIO)):
		return fmt.Errorf("%w: an NFSv3 mount first asks mountd at port %d/%s: check that the server serves it and that the service datapath carries it", err, MountdPort, v.proto)
	}
	return err
}

// readKernelConfig looks name up in /proc/config.gz (CONFIG_IKCONFIG_PROC) or, failing that,
// /boot/config-<release>.
func readKernelConfig(name string) (value string, known bool) {
	if f, err := os.Open("/proc/config.gz"); err == nil {
		defer f.Close()
		if zr, err := gzip.NewReader(f); err == nil {
			if v, ok := configValue(zr, name); ok {
				return v, true
			}
		}
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return "", false
	}
	f, err := os.Open("/boot/config-" + unix.ByteSliceToString(uts.Release[:]))
	if err != nil {
		return "", false
	}
	defer f.Close()
	return configValue(f, name)
}

// configValue scans a kernel .config for name: "NAME=value" gives value (unquoted), "# NAME is
// not set" gives "". known is false when the text could not be read to the end; an option that
// is absent from a complete config counts as not set.
func configValue(r io.Reader, name string) (value string, known bool) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, name+"="); ok {
			return strings.Trim(v, `"`), true
		}
		if line == "# "+name+" is not set" {
			return "", true
		}
	}
	if sc.Err() != nil {
		return "", false
	}
	return "", true
}
