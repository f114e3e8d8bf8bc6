package debian

import (
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseDepends(t *testing.T) {
	bullseye, err := Lookup("bullseye")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, out string
		archive   Archive
		want      string
		wantErr   string
	}{
		{"plain", "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n", Archive{}, "linux-image-6.1.0-56-amd64", ""},
		{"alternatives", "linux-image-amd64\n |Depends: <linux-image-6.1.0-56-amd64>\n  Depends: other\n", Archive{}, "linux-image-6.1.0-56-amd64", ""},
		{"none on the host", "linux-image-amd64\n", Archive{}, "", "run apt-get update"},
		{"none in a private archive", "linux-image-amd64\n", bullseye, "", "in Debian bullseye"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDepends(tt.out, "linux-image-amd64", tt.archive)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("parseDepends = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestParseCandidate(t *testing.T) {
	tests := []struct {
		name, out, want, wantErr string
	}{
		{"candidate", "p:\n  Installed: (none)\n  Candidate: 6.1.192-2\n  Version table:\n     6.1.192-2 500\n", "6.1.192-2", ""},
		{"none", "p:\n  Installed: (none)\n  Candidate: (none)\n", "", "apt-get update"},
		{"empty", "", "", "no candidate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCandidate(tt.out, "p", Archive{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("parseCandidate = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	if a, err := Lookup(""); err != nil || !a.Host() || a.String() != "the host's apt sources" {
		t.Errorf("Lookup(\"\") = %+v, %v", a, err)
	}
	a, err := Lookup("bullseye")
	if err != nil || a.Host() || len(a.Sources) != 2 {
		t.Fatalf("Lookup(bullseye) = %+v, %v", a, err)
	}
	for _, s := range a.Sources {
		if !strings.HasPrefix(s, "deb [signed-by="+keyring+"] http://deb.debian.org/") {
			t.Errorf("source line %q", s)
		}
	}
	if _, err := Lookup("sarge"); err == nil || !strings.Contains(err.Error(), "known: bullseye") {
		t.Errorf("Lookup(sarge) err = %v", err)
	}
}

func TestPrivateOptions(t *testing.T) {
	got := strings.Join(privateOptions("/c/apt/bullseye", "/c/apt/bullseye/sources.list"), " ")
	for _, want := range []string{
		"-o Dir::Etc::SourceList=/c/apt/bullseye/sources.list",
		"-o Dir::Etc::SourceParts=/c/apt/bullseye/sources.list.d",
		"-o Dir::State::Lists=/c/apt/bullseye/lists",
		"-o Dir::Cache=/c/apt/bullseye/cache",
		"-o Dir::Cache::pkgcache=/c/apt/bullseye/cache/pkgcache.bin",
		"-o Dir::State::status=/dev/null",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("options %q lack %q", got, want)
		}
	}
}

// TestIntegrationPrivateArchive reaches bullseye through a private apt state directory, as the
// 5.10 kernels do: it downloads bullseye's package lists (about 12 MB) into a temporary cache.
func TestIntegrationPrivateArchive(t *testing.T) {
	if testing.Short() {
		t.Skip("downloads Debian bullseye's package lists: skipped with -short")
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("no apt-get")
	}
	bullseye, err := Lookup("bullseye")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cache := t.TempDir()
	apt, err := Open(t.Context(), log, bullseye, cache)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := listAge(filepath.Join(cache, "apt", "bullseye", "lists")); !ok {
		t.Error("no package lists in the private state directory")
	}
	pkg, err := apt.Depends(t.Context(), "linux-image-amd64")
	if err != nil || !strings.HasPrefix(pkg, "linux-image-5.10.") {
		t.Errorf("Depends(linux-image-amd64) = %q, %v; want bullseye's 5.10 image", pkg, err)
	}
	if v, err := apt.Candidate(t.Context(), "linux-source-5.10"); err != nil || !strings.HasPrefix(v, "5.10.") {
		t.Errorf("Candidate(linux-source-5.10) = %q, %v", v, err)
	}
	if _, err := apt.Candidate(t.Context(), "linux-source-9.99"); err == nil || !strings.Contains(err.Error(), "Debian bullseye") {
		t.Errorf("Candidate(linux-source-9.99) err = %v, want one naming the archive", err)
	}
	// The lists are fresh: a second Open uses them without downloading.
	start := time.Now()
	if _, err := Open(t.Context(), log, bullseye, cache); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("second Open took %s: it downloaded the lists again?", d)
	}
}

func TestOpenHostKeepsPackageCache(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if apt, err := Open(t.Context(), log, Archive{}, ""); err != nil || len(apt.opts) != 0 {
		t.Errorf("Open(host, no cache dir) = %v, %v; want apt's own settings", apt, err)
	}
	cache := t.TempDir()
	apt, err := Open(t.Context(), log, Archive{}, cache)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(cache, "apt", "host", "pkgcache.bin")
	if got := strings.Join(apt.opts, " "); got != "-o Dir::Cache::pkgcache="+file {
		t.Errorf("options %q, want the package cache in %s", got, file)
	}
	if _, err := exec.LookPath("apt-cache"); err != nil {
		t.Skip("no apt-cache")
	}
	// apt itself: every Debian or Ubuntu host's lists know it.
	if v, err := apt.Candidate(t.Context(), "apt"); err != nil || v == "" {
		t.Skipf("the host's apt lists do not answer (%q, %v): run apt-get update", v, err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("apt-cache kept no package cache: %v", err)
	}
}
