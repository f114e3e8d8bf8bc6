package nodeimage

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/nfslab/nfslab/lab/image"
)

// Image is one single-layer image of a docker-archive: what `docker save` writes and both
// `docker load` and `ctr images import` read. No Docker is needed to write one.
type Image struct {
	Tag        string // repository:tag
	Root       string // the directory whose tree is the image's only layer
	Entrypoint []string
	Cmd        []string
	Env        []string
	StopSignal string
}

// imageConfig is the image configuration document of an Image (the fields Docker reads).
type imageConfig struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       struct {
		Entrypoint []string `json:"Entrypoint,omitempty"`
		Cmd        []string `json:"Cmd,omitempty"`
		Env        []string `json:"Env,omitempty"`
		StopSignal string   `json:"StopSignal,omitempty"`
	} `json:"config"`
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

// WriteDockerArchive writes images to out as one docker-archive. Each layer is made with GNU
// tar (numeric owners, extended attributes: file capabilities survive) in tmp, hashed, and
// copied in; images with the same Root share one layer, made and stored once. out is written
// whole or not at all.
func WriteDockerArchive(ctx context.Context, out, tmp string, images []Image) error {
	type built struct {
		layer     layerFile
		config    string // file in tmp
		config256 string
		tag       string
	}
	layers := map[string]layerFile{} // by Root
	var parts []built
	for i, img := range images {
		l, ok := layers[img.Root]
		if !ok {
			var err error
			if l, err = writeLayer(ctx, img, filepath.Join(tmp, fmt.Sprintf("layer%d.tar", i))); err != nil {
				return err
			}
			layers[img.Root] = l
		}
		var c imageConfig
		c.Architecture, c.OS = "amd64", "linux"
		c.Config.Entrypoint, c.Config.Cmd, c.Config.Env, c.Config.StopSignal = img.Entrypoint, img.Cmd, img.Env, img.StopSignal
		c.RootFS.Type, c.RootFS.DiffIDs = "layers", []string{"sha256:" + l.id}
		data, err := json.Marshal(c)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		config := filepath.Join(tmp, fmt.Sprintf("config%d.json", i))
		if err := os.WriteFile(config, data, 0o644); err != nil {
			return err
		}
		parts = append(parts, built{layer: l, config: config, config256: hex.EncodeToString(sum[:]), tag: img.Tag})
	}

	f, err := os.Create(out + ".tmp")
	if err != nil {
		return err
	}
	defer os.Remove(out + ".tmp")
	tw := tar.NewWriter(f)
	var manifest []image.DockerManifestEntry
	added := map[string]bool{}
	for _, p := range parts {
		layerName := p.layer.id + "/layer.tar"
		if !added[layerName] {
			if err := addFile(tw, layerName, p.layer.file); err != nil {
				return err
			}
			added[layerName] = true
		}
		if !added[p.config256] {
			if err := addFile(tw, p.config256+".json", p.config); err != nil {
				return err
			}
			added[p.config256] = true
		}
		manifest = append(manifest, image.DockerManifestEntry{Config: p.config256 + ".json", RepoTags: []string{p.tag}, Layers: []string{layerName}})
	}
	data, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(data); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(out+".tmp", out)
}

// layerFile is a layer written by writeLayer.
type layerFile struct {
	file string
	id   string // hex sha256 of the file
}

// writeLayer writes img's tree to file as a layer and hashes it.
func writeLayer(ctx context.Context, img Image, file string) (layerFile, error) {
	cmd := exec.CommandContext(ctx, "tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", img.Root, "-cf", file, ".")
	if b, err := cmd.CombinedOutput(); err != nil {
		return layerFile{}, fmt.Errorf("layer of %s: tar: %w: %s", img.Tag, err, strings.TrimSpace(string(b)))
	}
	id, err := image.FileSHA256(file)
	if err != nil {
		return layerFile{}, fmt.Errorf("layer of %s: %w", img.Tag, err)
	}
	return layerFile{file: file, id: id}, nil
}

func addFile(tw *tar.Writer, name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: st.Size(), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}
