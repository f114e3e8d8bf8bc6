package vm

import (
	"fmt"
	"strings"

	"github.com/nfslab/nfslab/lab/event"
)

// Disk is a raw disk image file attached to a VM.
type Disk struct {
	Path string
	// Mode says what the guest's writes do: DiskWritable (the default) writes them to the file
	// without flushes (cache=unsafe: the contents are worth nothing after a crash of the VM);
	// DiskSnapshot sends them to a temporary overlay qemu deletes on exit, leaving the file as
	// it was (a cached disk shared by runs); DiskReadOnly refuses them.
	Mode DiskMode
	// Qcow2 says the file is a qcow2 image, such as an overlay over a cached disk
	// (CreateOverlay), rather than a raw one.
	Qcow2 bool
}

// DiskMode is how a VM may change a Disk.
type DiskMode int

// The modes of a Disk.
const (
	DiskWritable DiskMode = iota
	DiskSnapshot
	DiskReadOnly
)

// driveArg is the -drive argument of disk i. A comma in the path is doubled, as qemu's option
// syntax wants (a user's node image archive may have one).
func (d Disk) driveArg(i int) string {
	format := "raw"
	if d.Qcow2 {
		format = "qcow2"
	}
	arg := fmt.Sprintf("file=%s,if=virtio,format=%s,index=%d", strings.ReplaceAll(d.Path, ",", ",,"), format, i)
	switch d.Mode {
	case DiskSnapshot:
		return arg + ",cache=unsafe,snapshot=on"
	case DiskReadOnly:
		return arg + ",readonly=on"
	}
	return arg + ",cache=unsafe"
}

// Args returns qemu's command line for cfg with the given accelerator, the tag that names this
// boot's sockets (see socketName) and the console log's path.
func Args(cfg Config, accel, tag, console string) []string {
	cpu := []string{"-accel", "tcg,thread=multi", "-cpu", "max"}
	if accel == AccelKVM {
		cpu = []string{"-accel", "kvm", "-cpu", "host"}
	}
	args := append(cpu,
		"-machine", "q35",
		"-smp", fmt.Sprint(cfg.CPUs),
		"-m", fmt.Sprint(cfg.MemoryMB),
		"-nodefaults", "-display", "none", "-no-reboot",
	)
	args = append(args, netArgs(cfg.Forwards)...)
	args = append(args,
		"-chardev", "file,id=console,path="+console,
		"-serial", "chardev:console",
		"-device", "virtio-serial-pci",
		"-chardev", "socket,id=agent,abstract=on,path="+socketName(tag, "agent"),
		"-device", "virtserialport,chardev=agent,name="+event.PortName,
		"-chardev", "socket,id=qmp,abstract=on,path="+socketName(tag, "qmp"),
		"-mon", "chardev=qmp,mode=control",
	)
	for i, disk := range cfg.Disks {
		args = append(args, "-drive", disk.driveArg(i))
	}
	for i, name := range cfg.Ports {
		id := fmt.Sprintf("port%d", i)
		args = append(args,
			"-chardev", "socket,id="+id+",abstract=on,path="+socketName(tag, id),
			"-device", "virtserialport,chardev="+id+",name="+name)
	}
	args = append(args,
		"-kernel", cfg.Kernel,
		"-initrd", cfg.Initrd,
		"-append", "console=ttyS0 panic=-1 no_timer_check quiet loglevel=4 mitigations=off rdinit=/init -- agent",
	)
	if cfg.Name != "" {
		args = append(args, "-name", cfg.Name)
	}
	if cfg.Incoming != "" {
		args = append(args, "-incoming", "exec:zstd -q -d -c "+shellQuote(cfg.Incoming))
	}
	return args
}

// Forward makes guest TCP port GuestPort (on the guest's GuestAddr) reachable at
// 127.0.0.1:HostPort on the host, and nowhere else.
type Forward struct {
	HostPort  int
	GuestPort int
}

// GuestAddr is the guest's address on qemu's user-mode network (its default), which the agent
// configures when the VM has forwards.
const GuestAddr = "10.0.2.15/24"

// netArgs are qemu's network arguments for the forwards: none, or a restricted user-mode network.
func netArgs(fw []Forward) []string {
	if len(fw) == 0 {
		return []string{"-nic", "none"}
	}
	netdev := "user,id=lab,restrict=on,net=10.0.2.0/24"
	for _, f := range fw {
		netdev += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", f.HostPort, f.GuestPort)
	}
	return []string{"-netdev", netdev, "-device", "virtio-net-pci,netdev=lab"}
}

// socketName names the host's end of one virtio-serial port ("agent", "port0", …) of the boot
// tagged tag. The sockets live in the abstract unix namespace: nothing is left on disk when a run
// is killed, and the name does not grow with the work directory's path (a unix socket's path has
// at most 107 bytes, which a deep temporary directory exceeds).
func socketName(tag, port string) string {
	return "nfslab-" + tag + "-" + port
}
