package nodeimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nfslab/nfslab/lab/hosttools"
	"github.com/nfslab/nfslab/lab/image"
)

// entry is one file of a test tar.
type entry struct{ name, data string }

func tarOf(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

const testConfig = `{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`

func testConfigID() string {
	sum := sha256.Sum256([]byte(testConfig))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// savedArchive is a docker-archive as docker save writes it — the config under its digest, a
// layer, manifest.json last — with the given manifest entries' tags, its config at configName
// ("" for docker's classic <hex>.json).
func savedArchive(t testing.TB, configName string, tags ...[]string) []byte {
	t.Helper()
	if configName == "" {
		configName = strings.TrimPrefix(testConfigID(), "sha256:") + ".json"
	}
	var manifest []image.DockerManifestEntry
	for _, tt := range tags {
		manifest = append(manifest, image.DockerManifestEntry{Config: configName, RepoTags: tt, Layers: []string{"l1/layer.tar"}})
	}
	m, err := json.Marshal(manifest)
	if err != nil {
		t.Fatal(err)
	}
	return tarOf(t, entry{configName, testConfig}, entry{"l1/layer.tar", strings.Repeat("\x00", 1024)}, entry{"manifest.json", string(m)})
}

// TestReadArchive: the tag and the image ID (the config's sha256) of a one-image archive, in
// the classic and the OCI layout; what is not a usable one is said.
func TestReadArchive(t *testing.T) {
	ociConfig := "blobs/sha256/" + strings.TrimPrefix(testConfigID(), "sha256:")
	tests := []struct {
		name    string
		archive []byte
		tag     string
		wantErr string
	}{
		{"classic layout", savedArchive(t, "", []string{"kindest/node:v1.37.0", "other:x"}), "kindest/node:v1.37.0", ""},
		{"OCI layout", savedArchive(t, ociConfig, []string{"registry.example:5000/team/node:v1"}), "registry.example:5000/team/node:v1", ""},
		{"Docker Hub's long form", savedArchive(t, "", []string{"docker.io/kindest/node:v1"}), "kindest/node:v1", ""},
		{"an official image's long form", savedArchive(t, "", []string{"docker.io/library/debian:12"}), "debian:12", ""},
		{"./ names", tarOf(t, entry{"./" + strings.TrimPrefix(testConfigID(), "sha256:") + ".json", testConfig},
			entry{"./manifest.json", `[{"Config":"` + strings.TrimPrefix(testConfigID(), "sha256:") + `.json","RepoTags":["n:t"]}]`}), "n:t", ""},
		{"no tag", savedArchive(t, "", nil), "", "no tag"},
		{"two images", savedArchive(t, "", []string{"a:1"}, []string{"b:2"}), "", "holds 2 images"},
		{"no image", tarOf(t, entry{"manifest.json", "[]"}), "", "lists no image"},
		{"no manifest", tarOf(t, entry{"hello.txt", "hi"}), "", "no manifest.json"},
		{"manifest not JSON", tarOf(t, entry{"manifest.json", "{"}), "", "not a docker-archive's"},
		{"manifest an object", tarOf(t, entry{"manifest.json", `{"Config":"c"}`}), "", "not a docker-archive's"},
		{"config missing", tarOf(t, entry{"manifest.json", `[{"Config":"c.json","RepoTags":["n:t"]}]`}), "", "does not hold"},
		{"config escaping", tarOf(t, entry{"manifest.json", `[{"Config":"../c.json","RepoTags":["n:t"]}]`}), "", "no usable config"},
		{"tag without a tag", savedArchive(t, "", []string{"kindest/node"}), "", "not NAME:TAG"},
		{"tag with a space", savedArchive(t, "", []string{"kindest/node:v1 x"}), "", "not NAME:TAG"},
		{"not a tar", []byte(strings.Repeat("not a tar archive\n", 64)), "", "not a tar"},
		{"empty", nil, "", "no manifest.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tag, id, err := ReadArchive(bytes.NewReader(tt.archive))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tag != tt.tag || id != testConfigID() {
				t.Errorf("got %s %s, want %s %s", tag, id, tt.tag, testConfigID())
			}
		})
	}
}

// TestArchiveNode: a file is read as a docker-archive; a missing file, a directory, a
// compressed or a malformed archive is an *UnusableError.
func TestArchiveNode(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(savedArchive(t, "", []string{"n:t"}))
	zw.Close()
	tests := []struct {
		name, file, wantErr string
	}{
		{"archive", write("node.tar", savedArchive(t, "", []string{"kindest/node:v1"})), ""},
		{"missing", filepath.Join(dir, "nope.tar"), "no such file"},
		{"directory", dir, "is a directory"},
		{"gzip", write("node.tar.gz", gz.Bytes()), "compressed"},
		{"no tag", write("untagged.tar", savedArchive(t, "", nil)), "no tag"},
		{"text", write("notes.txt", []byte("hello\n")), "not a tar"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := ArchiveNode(tt.file)
			if tt.wantErr == "" {
				if err != nil || n.Archive != tt.file || n.Tag != "kindest/node:v1" || n.Key != testConfigID() {
					t.Errorf("ArchiveNode = %+v, %v", n, err)
				}
				return
			}
			var bad *UnusableError
			if !errors.As(err, &bad) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v (%T), want an *UnusableError saying %q", err, err, tt.wantErr)
			}
		})
	}
}

// fakeDocker is a docker CLI for TestUserNode: image inspect answers when the image is there
// ($FAKE_HAVE, or pulled), pull succeeds when $FAKE_PULLABLE is set, save copies $FAKE_FIXTURE.
// Every call is logged to $FAKE_LOG.
const fakeDocker = `#!/bin/sh
echo "$*" >> "$FAKE_LOG"
case "$1 $2" in
"image inspect")
	if [ -n "$FAKE_HAVE" ] || [ -f "$FAKE_LOG.pulled" ]; then echo sha256:0123; exit 0; fi
	echo "Error response from daemon: No such image: $5" >&2; exit 1;;
"pull "*)
	if [ -n "$FAKE_PULLABLE" ]; then touch "$FAKE_LOG.pulled"; exit 0; fi
	echo "Error response from daemon: pull access denied for $2" >&2; exit 1;;
"save --output")
	cp "$FAKE_FIXTURE" "$3"; exit $?;;
esac
echo "fake docker: $*" >&2; exit 2
`

// TestUserNode: a reference goes through the host's Docker (inspect, pull when absent, save
// into the cache once); what cannot work is an *UnusableError that leaves no cache entry.
func TestUserNode(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "docker"), []byte(fakeDocker), 0o755); err != nil {
		t.Fatal(err)
	}
	fixtures := t.TempDir()
	tagged := filepath.Join(fixtures, "tagged.tar")
	untagged := filepath.Join(fixtures, "untagged.tar")
	if err := os.WriteFile(tagged, savedArchive(t, "", []string{"kindest/node:v1"}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(untagged, savedArchive(t, "", nil), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, value, path   string // path: where docker is, the fake's directory or an empty one
		have, pullable      bool
		fixture             string
		wantErr, wantCalled string
	}{
		{name: "held by Docker", value: "kindest/node:v1", path: bin, have: true, fixture: tagged, wantCalled: "image inspect|save"},
		{name: "pulled", value: "kindest/node:v1", path: bin, pullable: true, fixture: tagged, wantCalled: "image inspect|pull|image inspect|save"},
		{name: "cannot be pulled", value: "kindest/node:v9", path: bin, fixture: tagged, wantErr: "pull access denied", wantCalled: "image inspect|pull"},
		{name: "saved without a tag", value: "kindest/node@sha256:0123", path: bin, have: true, fixture: untagged, wantErr: "no tag", wantCalled: "image inspect|save"},
		{name: "no Docker", value: "kindest/node:v1", path: t.TempDir(), wantErr: "pass a docker-archive instead"},
		{name: "a missing file", value: "./node.tar", path: bin, wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := filepath.Join(t.TempDir(), "calls")
			t.Setenv("PATH", tt.path+":/usr/bin:/bin")
			t.Setenv("FAKE_LOG", calls)
			t.Setenv("FAKE_FIXTURE", tt.fixture)
			t.Setenv("FAKE_HAVE", map[bool]string{true: "1"}[tt.have])
			t.Setenv("FAKE_PULLABLE", map[bool]string{true: "1"}[tt.pullable])
			if _, err := hosttools.Path("docker"); tt.path != bin && err == nil {
				t.Skip("this host has docker in /usr/bin, /bin, /usr/sbin or /sbin")
			}
			cache := image.Cache{Dir: t.TempDir()}
			log := slog.New(slog.DiscardHandler)
			n, err := UserNode(t.Context(), cache, log, tt.value, nil)
			if got := calledVerbs(t, calls); got != tt.wantCalled {
				t.Errorf("docker was called for %q, want %q", got, tt.wantCalled)
			}
			if tt.wantErr != "" {
				var bad *UnusableError
				if !errors.As(err, &bad) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want an *UnusableError saying %q", err, tt.wantErr)
				}
				if entries, _ := filepath.Glob(filepath.Join(cache.Dir, "kind-user-node", "*")); len(entries) > 0 && !allLocks(entries) {
					t.Errorf("a failed resolution left cache entries %v", entries)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n.Tag != "kindest/node:v1" || n.Key != testConfigID() || !strings.HasPrefix(n.Archive, cache.Dir) {
				t.Errorf("UserNode = %+v", n)
			}
			// The second time the cached archive is used: Docker is asked only for the ID.
			if _, err := UserNode(t.Context(), cache, log, tt.value, nil); err != nil {
				t.Fatal(err)
			}
			if got := calledVerbs(t, calls); got != tt.wantCalled+"|image inspect" {
				t.Errorf("the second time docker was called for %q", got)
			}
		})
	}
}

// calledVerbs lists the fake docker's calls by their command ("image inspect", "pull", …).
func calledVerbs(t *testing.T, log string) string {
	b, err := os.ReadFile(log)
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	var verbs []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if f[0] == "image" {
			verbs = append(verbs, "image "+f[1])
		} else {
			verbs = append(verbs, f[0])
		}
	}
	return strings.Join(verbs, "|")
}

func allLocks(paths []string) bool {
	for _, p := range paths {
		if !strings.HasSuffix(p, ".lock") {
			return false
		}
	}
	return true
}

// FuzzReadArchive: any input is refused or yields a tag and a sha256 image ID, never a panic.
func FuzzReadArchive(f *testing.F) {
	f.Add(savedArchive(f, "", []string{"kindest/node:v1"}))
	f.Add(savedArchive(f, "", nil))
	f.Add([]byte("manifest.json"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tag, id, err := ReadArchive(bytes.NewReader(data))
		if err == nil && (tag == "" || !strings.HasPrefix(id, "sha256:") || len(id) != len("sha256:")+64) {
			t.Errorf("ReadArchive = %q, %q", tag, id)
		}
	})
}

// TestArchiveNodeOfOurs: an archive WriteDockerArchive wrote reads back with its tag, and its
// key is the image ID Docker would give it (the sha256 of the config it names).
func TestArchiveNodeOfOurs(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "hello"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "ganesha.tar")
	if err := WriteDockerArchive(t.Context(), out, t.TempDir(), []Image{{Tag: GaneshaImage, Root: root, Env: imageEnv()}}); err != nil {
		t.Fatal(err)
	}
	n, err := ArchiveNode(out)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	want := ""
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if strings.HasSuffix(h.Name, ".json") && h.Name != "manifest.json" {
			want = "sha256:" + strings.TrimSuffix(h.Name, ".json")
		}
	}
	if n.Tag != GaneshaImage || n.Key != want {
		t.Errorf("ArchiveNode = %+v, want tag %s and key %s", n, GaneshaImage, want)
	}
}
