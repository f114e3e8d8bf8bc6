package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// A docker-archive is what `docker save` writes: a tar of the images' configs and layers, and a
// manifest.json that lists the images. nfslab writes them (the kind node image), reads the
// user's (nfslab run --node-image) and writes their contents straight into a Docker disk.

// Limits on what is read from a docker-archive into memory or hashed: manifest.json, and the
// entries that may be an image's config.
const (
	MaxDockerManifestBytes = 1 << 20
	MaxDockerConfigBytes   = 4 << 20
)

// DockerManifestEntry is an image of a docker-archive's manifest.json: the path of its config,
// its tags and the paths of its layers (uncompressed tars), bottom first.
type DockerManifestEntry struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

// ParseDockerManifest reads a docker-archive's manifest.json, which must list exactly one image
// (ParseDockerManifests says what each image must be).
func ParseDockerManifest(data []byte) (DockerManifestEntry, error) {
	entries, err := ParseDockerManifests(data)
	if err != nil {
		return DockerManifestEntry{}, err
	}
	if len(entries) > 1 {
		return DockerManifestEntry{}, fmt.Errorf("the archive holds %d images: save the node image alone (docker save -o node.tar NAME:TAG)", len(entries))
	}
	return entries[0], nil
}

// ParseDockerManifests reads a docker-archive's manifest.json, which must list at least one
// image, each with at least one tag. It returns the images with their tags in Docker's short
// form (as DockerShortName writes them, each NAME:TAG) and their configs' paths cleaned; the
// paths are inside the archive.
func ParseDockerManifests(data []byte) ([]DockerManifestEntry, error) {
	var entries []DockerManifestEntry
	if err := json.Unmarshal(data, &entries); err != nil {
		return nil, fmt.Errorf("manifest.json is not a docker-archive's: %w", err)
	}
	if len(entries) == 0 {
		return nil, errors.New("manifest.json lists no image")
	}
	for i, e := range entries {
		if len(e.RepoTags) == 0 {
			return nil, errors.New("the image has no tag (manifest.json's RepoTags is empty): save it by its name, docker save -o out.tar NAME:TAG")
		}
		tags := make([]string, 0, len(e.RepoTags))
		for _, t := range e.RepoTags {
			short := DockerShortName(t)
			if !DockerTag().MatchString(short) {
				return nil, fmt.Errorf("the image's tag %q is not NAME:TAG", t)
			}
			tags = append(tags, short)
		}
		config := path.Clean(e.Config)
		if e.Config == "" || config == "." || config == ".." || strings.HasPrefix(config, "../") || path.IsAbs(config) {
			return nil, fmt.Errorf("manifest.json names no usable config (%q)", e.Config)
		}
		entries[i].RepoTags, entries[i].Config = tags, config
	}
	return entries, nil
}

// DockerTag is what nfslab accepts as an image's tag: NAME:TAG, in the characters image
// references use.
func DockerTag() *regexp.Regexp {
	return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/:-]*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
}

// DockerShortName writes an image name the way Docker lists it: without Docker Hub's domain,
// and without "library/" for its official images.
func DockerShortName(name string) string {
	rest, ok := strings.CutPrefix(name, "docker.io/")
	if !ok {
		return name
	}
	if official, ok := strings.CutPrefix(rest, "library/"); ok && !strings.Contains(official, "/") {
		return official
	}
	return rest
}
