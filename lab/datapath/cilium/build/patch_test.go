package build

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPatchTimeouts(t *testing.T) {
	write := func(t *testing.T, dir, file, text string) {
		t.Helper()
		p := filepath.Join(dir, file)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	release := map[string]string{
		"pkg/defaults/defaults.go":  "const (\n\tExecTimeout = 300 * time.Second\n)\n",
		"pkg/endpoint/bpf.go":       "const (\n\tEndpointGenerationTimeout = 330 * time.Second\n)\n",
		"pkg/api/const.go":          "const (\n\tClientTimeout = 90 * time.Second\n)\n",
		"daemon/cmd/daemon_main.go": "const (\n\tapiTimeout   = 60 * time.Second\n\tdaemonSubsys = \"daemon\"\n)\n",
	}
	t.Run("every limit raised", func(t *testing.T) {
		src := t.TempDir()
		for file, text := range release {
			write(t, src, file, text)
		}
		if err := patchTimeouts(src); err != nil {
			t.Fatal(err)
		}
		for file, want := range map[string]string{
			"pkg/defaults/defaults.go":  "ExecTimeout = 1800 * time.Second",
			"pkg/endpoint/bpf.go":       "EndpointGenerationTimeout = 1800 * time.Second",
			"pkg/api/const.go":          "ClientTimeout = 1800 * time.Second",
			"daemon/cmd/daemon_main.go": "apiTimeout   = 1800 * time.Second",
		} {
			b, _ := os.ReadFile(filepath.Join(src, file))
			if !strings.Contains(string(b), want) {
				t.Errorf("%s: %q, want %q", file, b, want)
			}
		}
	})
	t.Run("a version that defines a limit otherwise", func(t *testing.T) {
		src := t.TempDir()
		write(t, src, "pkg/defaults/defaults.go", "const ExecTimeout = 5 * time.Minute\n")
		write(t, src, "pkg/endpoint/bpf.go", "const EndpointGenerationTimeout = 330 * time.Second\n")
		err := patchTimeouts(src)
		if err == nil || !strings.Contains(err.Error(), `pkg/defaults/defaults.go has "ExecTimeout = 300 * time.Second" 0 times`) {
			t.Errorf("err %v, want it to name the file and the missing definition", err)
		}
	})
}
