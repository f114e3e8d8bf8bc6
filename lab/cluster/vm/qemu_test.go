package vm

import (
	"strings"
	"testing"

	"github.com/nfslab/nfslab/lab/event"
)

// TestArgsPorts: the agent's port and each extra port are a virtio-serial port of that name on an
// abstract unix socket named by the boot's tag, short whatever the work directory's path.
func TestArgsPorts(t *testing.T) {
	dir := "/tmp/" + strings.Repeat("d", 200)
	tag, err := newBootTag(AccelTCG)
	if err != nil {
		t.Fatal(err)
	}
	args := Args(Config{Kernel: "bz", Initrd: "rd", CPUs: 2, MemoryMB: 2048, Dir: dir, Ports: []string{"nfslab.shell", "other"}}, AccelTCG, tag, dir+"/console.log")
	line := strings.Join(args, " ")
	for _, want := range []string{
		"-chardev socket,id=agent,abstract=on,path=" + socketName(tag, "agent") + " -device virtserialport,chardev=agent,name=" + event.PortName,
		"-chardev socket,id=port0,abstract=on,path=" + socketName(tag, "port0") + " -device virtserialport,chardev=port0,name=nfslab.shell",
		"-chardev socket,id=port1,abstract=on,path=" + socketName(tag, "port1") + " -device virtserialport,chardev=port1,name=other",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("qemu's arguments lack %q:\n%s", want, line)
		}
	}
	if n := len(socketName(tag, "port1")); n > 100 {
		t.Errorf("a socket name has %d bytes, more than a unix socket address holds", n)
	}
	other, err := newBootTag(AccelTCG)
	if err != nil {
		t.Fatal(err)
	}
	if other == tag {
		t.Errorf("two boots got the same tag %q", tag)
	}
}

// TestArgsDisks: each disk is a raw virtio-blk drive in the order given (/dev/vda first), with
// its mode; a comma in a path is escaped.
func TestArgsDisks(t *testing.T) {
	disks := []Disk{{Path: "/c/docker.img"}, {Path: "/c/base.img", Mode: DiskSnapshot}, {Path: "/c/node.tar", Mode: DiskReadOnly}, {Path: "/u/a,b.tar", Mode: DiskReadOnly}}
	line := strings.Join(Args(Config{Kernel: "bz", Initrd: "rd", CPUs: 1, MemoryMB: 512, Disks: disks}, AccelTCG, "t", "/c/console.log"), " ")
	for _, want := range []string{
		"-drive file=/c/docker.img,if=virtio,format=raw,index=0,cache=unsafe ",
		"-drive file=/c/base.img,if=virtio,format=raw,index=1,cache=unsafe,snapshot=on ",
		"-drive file=/c/node.tar,if=virtio,format=raw,index=2,readonly=on ",
		"-drive file=/u/a,,b.tar,if=virtio,format=raw,index=3,readonly=on",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("qemu's arguments lack %q:\n%s", want, line)
		}
	}
	if line := strings.Join(Args(Config{Kernel: "bz", Initrd: "rd", CPUs: 1, MemoryMB: 512}, AccelTCG, "t", "c"), " "); strings.Contains(line, "-drive") {
		t.Errorf("a VM without disks got a drive: %s", line)
	}
}

// TestArgsForwards: no forward, no network at all; with forwards, a user-mode network that is
// restricted and forwards only from the host's loopback.
func TestArgsForwards(t *testing.T) {
	line := strings.Join(Args(Config{Kernel: "bz", Initrd: "rd", CPUs: 1, MemoryMB: 512}, AccelTCG, "t", "c"), " ")
	if !strings.Contains(line, "-nic none") || strings.Contains(line, "-netdev") {
		t.Errorf("without forwards: %s", line)
	}
	line = strings.Join(Args(Config{Kernel: "bz", Initrd: "rd", CPUs: 1, MemoryMB: 512, Forwards: []Forward{{HostPort: 41000, GuestPort: 6443}}}, AccelTCG, "t", "c"), " ")
	for _, want := range []string{"-netdev user,id=lab,restrict=on,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:41000-:6443", "-device virtio-net-pci,netdev=lab"} {
		if !strings.Contains(line, want) {
			t.Errorf("with a forward: %s lacks %s", line, want)
		}
	}
	if strings.Contains(line, "-nic none") || strings.Count(line, "hostfwd=tcp:127.0.0.1:") != 1 {
		t.Errorf("with a forward: %s", line)
	}
}
