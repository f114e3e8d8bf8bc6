package kind

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestContainerCgroup: the container's cgroup is found by its id under either cgroup driver's
// naming, and nothing else matches.
func TestContainerCgroup(t *testing.T) {
	const id = "0123456789abcdef0123"
	for _, tc := range []struct {
		name, dir string
		wantErr   string
	}{
		{"systemd driver", "system.slice/docker-x.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod1.slice/cri-containerd-" + id + ".scope", ""},
		{"cgroupfs driver", "docker/x/kubepods/besteffort/pod1/" + id, ""},
		{"another container", "docker/x/kubepods/besteffort/pod1/" + id + "ff", "has no cgroup"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, tc.dir), 0o755); err != nil {
				t.Fatal(err)
			}
			got, err := containerCgroup(context.Background(), root, id)
			switch {
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("containerCgroup = %q, %v; want an error saying %q", got, err, tc.wantErr)
			case tc.wantErr == "" && (err != nil || got != filepath.Join(root, tc.dir)):
				t.Errorf("containerCgroup = %q, %v; want %s", got, err, tc.dir)
			}
		})
	}
	if _, err := containerCgroup(context.Background(), t.TempDir(), "../etc"); err == nil {
		t.Error("a path as a container id was accepted")
	}
}
