package nodeimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/nfslab/nfslab/lab/image"
)

// TestWriteDockerArchive: the archive has docker save's layout — manifest.json naming each
// image's config and layer, a config whose diff_id is the layer's sha256, the layer holding the
// directory's files — and images of one tree share its layer, images of one config that config:
// each is in the archive once.
func TestWriteDockerArchive(t *testing.T) {
	root, other := t.TempDir(), t.TempDir()
	for i, r := range []string{root, other} {
		if err := os.MkdirAll(filepath.Join(r, "usr/local/bin"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(r, "usr/local/bin/pause"), []byte(fmt.Sprintf("#!/bin/true %d\n", i)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "images.tar")
	imgs := []Image{
		{Tag: "registry.k8s.io/pause:3.10", Root: root, Entrypoint: []string{"/usr/local/bin/pause"}},
		{Tag: "nfslab.local/node:v1", Root: root, StopSignal: "SIGRTMIN+3", Env: []string{"container=docker"}},
		{Tag: "registry.k8s.io/pause:3.10.2", Root: root, Entrypoint: []string{"/usr/local/bin/pause"}},
		{Tag: "nfslab.local/other:v1", Root: other, Entrypoint: []string{"/usr/local/bin/pause"}},
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
		if _, dup := files[h.Name]; dup {
			t.Errorf("%s is in the archive twice", h.Name)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
	var manifest []image.DockerManifestEntry
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil || len(manifest) != len(imgs) {
		t.Fatalf("manifest.json: %v, %d entries", err, len(manifest))
	}
	if l := manifest[0].Layers[0]; manifest[1].Layers[0] != l || manifest[2].Layers[0] != l || manifest[3].Layers[0] == l {
		t.Errorf("layers %v %v %v %v: want the first three (one tree) alike, the fourth its own",
			manifest[0].Layers, manifest[1].Layers, manifest[2].Layers, manifest[3].Layers)
	}
	if manifest[0].Config != manifest[2].Config || manifest[0].Config == manifest[1].Config {
		t.Errorf("configs %s %s %s: want the first and third (one tree, one config) alike, the second its own",
			manifest[0].Config, manifest[1].Config, manifest[2].Config)
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
