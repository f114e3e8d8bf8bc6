package vm

import (
	"strings"
	"testing"

	"github.com/nfslab/nfslab/lab/event"
)

// TestArgsPorts: the agent's port and each extra port are a virtio-serial port of that name on a
// unix socket in the VM's directory, with a path short enough for a unix socket.
func TestArgsPorts(t *testing.T) {
	dir := "/tmp/" + strings.Repeat("d", 70)
	args := Args(Config{Kernel: "bz", Initrd: "rd", CPUs: 2, MemoryMB: 2048, Dir: dir, Ports: []string{"nfslab.shell", "other"}}, AccelTCG, dir+"/agent-tcg.sock", dir+"/console.log")
	line := strings.Join(args, " ")
	for _, want := range []string{
		"-chardev socket,id=agent,path=" + dir + "/agent-tcg.sock -device virtserialport,chardev=agent,name=" + event.PortName,
		"-chardev socket,id=port0,path=" + portSocket(dir, AccelTCG, 0) + " -device virtserialport,chardev=port0,name=nfslab.shell",
		"-chardev socket,id=port1,path=" + portSocket(dir, AccelTCG, 1) + " -device virtserialport,chardev=port1,name=other",
	} {
		if !strings.Contains(line, want) {
			t.Errorf("qemu's arguments lack %q:\n%s", want, line)
		}
	}
	if n := len(portSocket(dir, AccelTCG, 1)); n > len(dir+"/agent-tcg.sock") {
		t.Errorf("a port's socket path (%d bytes) is longer than the agent's", n)
	}
}
