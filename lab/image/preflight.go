package image

import "github.com/nfslab/nfslab/lab/hosttools"

// hostTools are the commands the VM path needs on the host.
func hostTools() hosttools.Set {
	return hosttools.Set{
		AptOptions: hosttools.NoRecommends,
		Tools: []hosttools.Tool{
			{Command: "qemu-system-x86_64", Package: "qemu-system-x86"},
			{Command: "mmdebstrap", Package: "mmdebstrap"},
			{Command: "apt-get", Package: "apt"},
			{Command: "apt-cache", Package: "apt"},
			{Command: "dpkg-deb", Package: "dpkg"},
			{Command: "depmod", Package: "kmod"},
			{Command: "zstd", Package: "zstd"},           // snapshots' saved states
			{Command: "qemu-img", Package: "qemu-utils"}, // disk overlays of snapshots
		},
	}
}

// CheckHostTools verifies that the host commands needed to build images and boot VMs
// (qemu-system-x86_64, mmdebstrap, apt-get, apt-cache, dpkg-deb, depmod, zstd, qemu-img) are
// installed. If any
// is missing the error is a *hosttools.MissingError.
func CheckHostTools() error {
	return hostTools().Check()
}
