package lab

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab/agent"
	"github.com/nfslab/nfslab/lab/cluster/kind"
	"github.com/nfslab/nfslab/lab/cluster/vm"
	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/snapshot"
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
	plan, ok, err := r.warmPlan(base, machineSetup{})
	spec := plan.spec
	if err != nil || !ok || spec.Point != snapshot.Booted || plan.prepare != nil {
		t.Fatalf("warmPlan(netns VM under TCG) = %v, %v; want a snapshot", ok, err)
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
		{"disks but no cluster to prepare", func(c *vm.Config, _ *runner) { c.Disks = []vm.Disk{{Path: "docker.img", Mode: vm.DiskSnapshot}} }},
		{"forwards", func(c *vm.Config, _ *runner) { c.Forwards = []vm.Forward{{HostPort: 1, GuestPort: 2}} }},
		{"ports", func(c *vm.Config, _ *runner) { c.Ports = []string{"nfslab.shell"} }},
	}
	for _, tt := range none {
		c, rr := base, &runner{qemu: r.qemu}
		tt.edit(&c, rr)
		if _, ok, err := rr.warmPlan(c, machineSetup{}); ok || err != nil {
			t.Errorf("%s: warmPlan = %v, %v; want no snapshot", tt.name, ok, err)
		}
	}

	// The key follows what shapes the booted VM, and nothing else.
	key := func(c vm.Config) string {
		t.Helper()
		p, ok, err := r.warmPlan(c, machineSetup{})
		if err != nil || !ok {
			t.Fatalf("warmPlan = %v, %v", ok, err)
		}
		return p.spec.Key()
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

func TestWarmPlanKind(t *testing.T) {
	dir := t.TempDir()
	kernelFile, initrd := filepath.Join(dir, "bzImage"), filepath.Join(dir, "initrd.cpio")
	for _, p := range []string{kernelFile, initrd} {
		if err := os.WriteFile(p, []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := &runner{qemu: "7.2.22"}
	disk1, disk2 := filepath.Join(dir, "k1-docker.img"), filepath.Join(dir, "k2-docker.img")
	for _, p := range []string{disk1, disk2} {
		if err := os.WriteFile(p, []byte("ext4"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := vm.Config{Kernel: kernelFile, Initrd: initrd, Accel: vm.AccelTCG, CPUs: 2, MemoryMB: 6144,
		Disks: []vm.Disk{{Path: disk1, Mode: vm.DiskSnapshot}}}
	setup := func(mode string) machineSetup {
		return machineSetup{
			disks:   cfg.Disks,
			engine:  &kind.EngineConfig{Disk: "/dev/vda"},
			kind:    &kind.ClusterConfig{NodeImage: "nfslab/node:v1"},
			prepare: &agent.Prepare{ProxyMode: mode, Nodes: 1},
		}
	}
	plan, ok, err := r.warmPlan(cfg, setup("iptables"))
	if err != nil || !ok || plan.spec.Point != snapshot.ClusterReady || plan.prepare.ProxyMode != "iptables" {
		t.Fatalf("warmPlan(kind) = %+v, %v, %v; want a cluster-ready snapshot", plan, ok, err)
	}
	other, _, _ := r.warmPlan(cfg, setup("ipvs"))
	if other.spec.Key() == plan.spec.Key() {
		t.Error("the key did not change with the cluster's kube-proxy mode")
	}
	moved := cfg
	moved.Disks = []vm.Disk{{Path: disk2, Mode: vm.DiskSnapshot}}
	if p, _, _ := r.warmPlan(moved, setup("iptables")); p.spec.Key() == plan.spec.Key() {
		t.Error("the key did not change with the Docker disk")
	}
	// The same disk built again at the same path (after a prune).
	if err := os.Chtimes(disk1, time.Now(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if p, _, _ := r.warmPlan(cfg, setup("iptables")); p.spec.Key() == plan.spec.Key() {
		t.Error("the key did not change with a Docker disk built again")
	}
	// A cluster with real Cilium: keyed by its install, the chart as rendered with its values.
	withCilium := func(values map[string]any) machineSetup {
		m := setup("none")
		m.prepare.Cilium = "cilium@v1.19.7"
		m.cilium = []cilium.Install{
			{Datapath: "cilium-no-socket-lb", Version: "v1.19.7"},
			{Datapath: "cilium", Version: "v1.19.7", Values: values},
		}
		return m
	}
	c1, ok, err := r.warmPlan(cfg, withCilium(map[string]any{"debug": map[string]any{"enabled": false}}))
	if err != nil || !ok || c1.spec.Point != snapshot.ClusterReady || c1.prepare.Cilium != "cilium@v1.19.7" {
		t.Fatalf("warmPlan(Cilium) = %+v, %v, %v; want a cluster-ready snapshot", c1, ok, err)
	}
	if c2, _, _ := r.warmPlan(cfg, withCilium(map[string]any{"debug": map[string]any{"enabled": true}})); c2.spec.Key() == c1.spec.Key() {
		t.Error("the key did not change with the Cilium install's values")
	}
	noSuch := withCilium(nil)
	noSuch.prepare.Cilium = "cilium@v1.15.19"
	if _, ok, err := r.warmPlan(cfg, noSuch); ok || err == nil {
		t.Errorf("warmPlan(a Cilium install the job lacks) = %v, %v; want an error", ok, err)
	}
	// A disk written in place (the node image's load) cannot be kept as it was.
	written := cfg
	written.Disks = []vm.Disk{{Path: "docker.img"}}
	if _, ok, err := r.warmPlan(written, setup("iptables")); ok || err != nil {
		t.Errorf("warmPlan(writable disk) = %v, %v; want none", ok, err)
	}
}
