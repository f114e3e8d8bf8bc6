package nodeimage

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nfslab/nfslab/lab/internal/gomod"
)

// TestKubeletCgroupPatch: kind's script of the pinned kind version takes the patch, which lands
// before the check and leaves a script bash can parse; a script without the check, or with it
// twice, is refused.
func TestKubeletCgroupPatch(t *testing.T) {
	mod, err := gomod.Download(t.Context(), "sigs.k8s.io/kind", KindVersion) // nfslab's own dependency: cached
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(mod.Dir, "images/base/files", kubeletCgroupScript))
	if err != nil {
		t.Fatal(err)
	}
	got, err := withKubeletCgroupMove(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if i, j := strings.Index(got, "init.scope/cgroup.procs"), strings.Index(got, kubeletCgroupCheck); i < 0 || i > j {
		t.Errorf("the move is not before the check:\n%s", got)
	}
	p := filepath.Join(t.TempDir(), "script.sh")
	if err := os.WriteFile(p, []byte(got), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("bash", "-n", p).CombinedOutput(); err != nil {
		t.Errorf("bash -n: %v: %s", err, out)
	}
	for _, bad := range []string{"#!/bin/bash\necho\n", kubeletCgroupCheck + "\n" + kubeletCgroupCheck} {
		if _, err := withKubeletCgroupMove(bad); err == nil || !strings.Contains(err.Error(), "another patch") {
			t.Errorf("withKubeletCgroupMove(%q) = %v, want a refusal", bad, err)
		}
	}
}
