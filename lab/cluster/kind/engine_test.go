package kind

import (
	"strings"
	"testing"

	"github.com/nfslab/nfslab/lab/event"
)

func TestParseInfo(t *testing.T) {
	tests := []struct {
		name, in string
		want     event.EngineObs
		err      string
	}{
		{
			name: "engine up",
			in: `{"ServerVersion":"20.10.24+dfsg1","Driver":"overlay2","DriverStatus":[["Backing Filesystem","extfs"],["Supports d_type","true"]],` +
				`"CgroupVersion":"2","CgroupDriver":"cgroupfs","KernelVersion":"6.1.192-nfslab-vulnerable","Warnings":["WARNING: No swap limit support"]}`,
			want: event.EngineObs{ServerVersion: "20.10.24+dfsg1", Driver: "overlay2", BackingFS: "extfs", CgroupVersion: "2",
				CgroupDriver: "cgroupfs", KernelVersion: "6.1.192-nfslab-vulnerable", Warnings: []string{"WARNING: No swap limit support"}},
		},
		{name: "daemon not up", in: `{"ServerErrors":["Cannot connect to the Docker daemon"]}`, err: "Cannot connect"},
		{name: "no server version", in: `{"Driver":"overlay2"}`, err: "no server version"},
		{name: "not JSON", in: `Client: Docker Engine`, err: "read docker info"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseInfo([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.ServerVersion != tt.want.ServerVersion || got.Driver != tt.want.Driver || got.BackingFS != tt.want.BackingFS ||
				got.CgroupVersion != tt.want.CgroupVersion || got.CgroupDriver != tt.want.CgroupDriver ||
				got.KernelVersion != tt.want.KernelVersion || strings.Join(got.Warnings, ";") != strings.Join(tt.want.Warnings, ";") {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCheckKernel(t *testing.T) {
	const fs = "nodev\tsysfs\nnodev\tcgroup2\n\text4\nnodev\toverlay\n"
	const ctl = "cpuset cpu io memory hugetlb pids rdma misc\n"
	tests := []struct {
		name, fs, ctl string
		missing       []string
	}{
		{name: "everything", fs: fs, ctl: ctl},
		{name: "no overlayfs", fs: strings.Replace(fs, "nodev\toverlay\n", "", 1), ctl: ctl, missing: []string{"CONFIG_OVERLAY_FS"}},
		{name: "no memory or pids controller", fs: fs, ctl: "cpuset cpu io\n", missing: []string{"CONFIG_MEMCG", "CONFIG_CGROUP_PIDS"}},
		{name: "overlay2 is not overlay", fs: strings.Replace(fs, "\toverlay\n", "\toverlay2\n", 1), ctl: ctl, missing: []string{"CONFIG_OVERLAY_FS"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkKernel(tt.fs, tt.ctl)
			if len(tt.missing) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %v named", tt.missing)
			}
			for _, m := range tt.missing {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("%q does not name %s", err, m)
				}
			}
		})
	}
}

func TestLoadedImages(t *testing.T) {
	out := "Loaded image: nfslab.local/kind-node:v1.37.2-abc\nLoaded image ID: sha256:0123\n\nLoaded image: registry.k8s.io/pause:3.10\n"
	got := loadedImages(out)
	if strings.Join(got, ",") != "nfslab.local/kind-node:v1.37.2-abc,registry.k8s.io/pause:3.10" {
		t.Errorf("loadedImages = %v", got)
	}
	if got := loadedImages("open /dev/vdb: no such file"); len(got) != 0 {
		t.Errorf("loadedImages of an error = %v", got)
	}
}
