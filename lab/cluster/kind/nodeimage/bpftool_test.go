package nodeimage

import (
	"bytes"
	"debug/elf"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/kernel/debian"
)

// TestCiliumBpftool builds the Cilium images' bpftool from the installed kernel source (about
// 35 s) and checks it is the one they need: static, running, and without libcap's check of
// CAP_BPF and CAP_PERFMON by name (it checks for root alone, as Cilium's own bpftool does).
func TestCiliumBpftool(t *testing.T) {
	if testing.Short() {
		t.Skip("builds bpftool from the kernel source: skipped with -short")
	}
	if _, err := os.Stat(debian.HostSourceTarball(bpftoolSourcePackage)); err != nil {
		t.Skipf("%s is not installed (the kernel recipes install it)", bpftoolSourcePackage)
	}
	if err := bpftoolTools().Check(); err != nil {
		t.Skip(err)
	}
	start := time.Now()
	dir, err := ciliumBpftool(t.Context(), image.Cache{Dir: t.TempDir()}, slog.New(slog.DiscardHandler), func(s string) { t.Log(s) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built in %.1f s", time.Since(start).Seconds())
	tool := filepath.Join(dir, bpftoolPath)
	f, err := elf.Open(tool)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("bpftool has a dynamic loader: want it static, to run on any host's build")
		}
	}
	out, err := exec.CommandContext(t.Context(), tool, "version").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("using libbpf")) {
		t.Errorf("bpftool version: %v: %s", err, out)
	}
	bin, err := os.ReadFile(tool)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(bin, []byte("required for full feature probing")) || !bytes.Contains(bin, []byte("full feature probing requires root privileges")) {
		t.Error("bpftool checks capabilities by name (built with libcap): want its check for root alone")
	}
	if _, err := os.Stat(filepath.Join(dir, "work")); err == nil {
		t.Error("the build's work tree is left in the artefact")
	}
}
