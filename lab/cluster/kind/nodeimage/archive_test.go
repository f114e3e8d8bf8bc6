package nodeimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/nfslab/nfslab/lab/image"
)

// TestWriteDockerArchive: the archive has docker save's layout — manifest.json naming each
// image's config and layer, a config whose diff_id is the layer's sha256, the layer holding the
// directory's files.
func TestWriteDockerArchive(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "usr/local/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/local/bin/pause"), []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "images.tar")
	imgs := []Image{
		{Tag: "registry.k8s.io/pause:3.10", Root: root, Entrypoint: []string{"/usr/local/bin/pause"}},
		{Tag: "nfslab.local/node:v1", Root: root, StopSignal: "SIGRTMIN+3", Env: []string{"container=docker"}},
	}
	if err := WriteDockerArchive(t.Context(), out, t.TempDir(), imgs); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
	var manifest []image.DockerManifestEntry
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil || len(manifest) != 2 {
		t.Fatalf("manifest.json: %v, %d entries", err, len(manifest))
	}
	for i, m := range manifest {
		if m.RepoTags[0] != imgs[i].Tag {
			t.Errorf("entry %d tagged %v, want %s", i, m.RepoTags, imgs[i].Tag)
		}
		var c imageConfig
		if err := json.Unmarshal(files[m.Config], &c); err != nil {
			t.Fatalf("config %s: %v", m.Config, err)
		}
		layer := files[m.Layers[0]]
		sum := sha256.Sum256(layer)
		if c.RootFS.DiffIDs[0] != "sha256:"+hex.EncodeToString(sum[:]) {
			t.Errorf("%s: diff_id %s is not the layer's sha256", imgs[i].Tag, c.RootFS.DiffIDs[0])
		}
		if c.Config.StopSignal != imgs[i].StopSignal || len(c.Config.Entrypoint) != len(imgs[i].Entrypoint) {
			t.Errorf("%s: config %+v", imgs[i].Tag, c.Config)
		}
		found := false
		lr := tar.NewReader(bytes.NewReader(layer))
		for {
			h, err := lr.Next()
			if err != nil {
				break
			}
			if h.Name == "./usr/local/bin/pause" && h.Mode&0o111 != 0 {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: the layer lacks ./usr/local/bin/pause (executable)", imgs[i].Tag)
		}
	}
}
