package recipe

import "github.com/nfslab/nfslab/lab/hosttools"

// buildTools are the host tools `make bzImage` and Build need for a 6.1 x86_64 kernel.
func buildTools() hosttools.Set {
	return hosttools.Set{
		For:        "building a kernel",
		AptOptions: "-y",
		Tools: []hosttools.Tool{
			{Command: "gcc", Package: "build-essential"},
			{Command: "make", Package: "build-essential"},
			{Command: "bc", Package: "bc"},
			{Command: "bison", Package: "bison"},
			{Command: "flex", Package: "flex"},
			{File: "/usr/include/gelf.h", Package: "libelf-dev"},
			{File: "/usr/include/openssl/opensslv.h", Package: "libssl-dev"},
			{Command: "xz", Package: "xz-utils"},
			{Command: "cpio", Package: "cpio"},
			{Command: "depmod", Package: "kmod"},
			{Command: "pahole", Package: "dwarves"},
			{Command: "rsync", Package: "rsync"},
			{Command: "patch", Package: "patch"},
			{Command: "tar", Package: "tar"},
			{Command: "nice", Package: "coreutils"},
			{Command: "dpkg-query", Package: "dpkg"},
		},
	}
}

// CheckBuildTools verifies that the host has what a kernel build needs (gcc, make, bc, bison,
// flex, libelf and libssl headers, xz, cpio, kmod, pahole, rsync, patch). If anything is
// missing the error is a *hosttools.MissingError with the apt-get line that installs it.
func CheckBuildTools() error {
	return buildTools().Check()
}
