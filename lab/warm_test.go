package lab

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nfslab/nfslab/lab/cluster/vm"
)

func TestWarmSpec(t *testing.T) {
	dir := t.TempDir()
	kernelFile, initrd := filepath.Join(dir, "bzImage"), filepath.Join(dir, "initrd.cpio")
	for p, s := range map[string]string{kernelFile: "kernel", initrd: "initrd"} {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := vm.Config{Kernel: kernelFile, Initrd: initrd, Accel: vm.AccelTCG, CPUs: 2, MemoryMB: 2048, Dir: dir, Name: "nfslab-run-1"}
	r := &runner{qemu: "7.2.22"}
	spec, ok, err := r.warmSpec(base)
	if err != nil || !ok {
		t.Fatalf("warmSpec(netns VM under TCG) = %v, %v; want a snapshot", ok, err)
	}
	if spec.QEMU != "7.2.22" {
		t.Errorf("spec.QEMU = %q", spec.QEMU)
	}

	none := []struct {
		name string
		edit func(c *vm.Config, r *runner)
	}{
		{"--no-snapshot", func(_ *vm.Config, r *runner) { r.opts.NoSnapshot = true }},
		{"KVM", func(c *vm.Config, _ *runner) { c.Accel = vm.AccelKVM }},
		{"disks", func(c *vm.Config, _ *runner) { c.Disks = []vm.Disk{{Path: "docker.img", Mode: vm.DiskSnapshot}} }},
		{"forwards", func(c *vm.Config, _ *runner) { c.Forwards = []vm.Forward{{HostPort: 1, GuestPort: 2}} }},
		{"ports", func(c *vm.Config, _ *runner) { c.Ports = []string{"nfslab.shell"} }},
	}
	for _, tt := range none {
		c, rr := base, &runner{qemu: r.qemu}
		tt.edit(&c, rr)
		if _, ok, err := rr.warmSpec(c); ok || err != nil {
			t.Errorf("%s: warmSpec = %v, %v; want no snapshot", tt.name, ok, err)
		}
	}

	// The key follows what shapes the booted VM, and nothing else.
	key := func(c vm.Config) string {
		t.Helper()
		s, ok, err := r.warmSpec(c)
		if err != nil || !ok {
			t.Fatalf("warmSpec = %v, %v", ok, err)
		}
		return s.Key()
	}
	same := base
	same.Dir, same.Name = t.TempDir(), "nfslab-run-2"
	if key(same) != spec.Key() {
		t.Error("the key changed with the run's directory and name")
	}
	more := base
	more.MemoryMB = 4096
	if key(more) == spec.Key() {
		t.Error("the key did not change with the VM's memory")
	}
	if err := os.WriteFile(initrd, []byte("another agent"), 0o644); err != nil {
		t.Fatal(err)
	}
	if key(base) == spec.Key() {
		t.Error("the key did not change with the initramfs's contents")
	}
}
