package nodeimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/semver"

	"github.com/nfslab/nfslab/lab/image"
)

// CiliumImages are Cilium's agent and operator images given by the user (nfslab run
// --cilium-image) in place of those nfslab builds: one docker-archive holding both, which the
// node image's containerd imports as it is (Extras.UserCilium).
type CiliumImages struct {
	Archive  string // the docker-archive's absolute path
	Agent    string // the agent image's reference, as the archive tags it
	Operator string // the operator image's
	// Key names the pair by content (the two image IDs): it goes into the node image's cache
	// key, so another pair of images makes another node image.
	Key string
}

// Version is the agent's tag when it is a version (v1.15.19, v1.16.0-rc.1), else "".
func (c CiliumImages) Version() string { return tagVersion(c.Agent) }

// ReferenceVersion is the version UserCilium's value names before anything is read or pulled:
// its tag when the value is an image reference tagged with a version, else "".
func ReferenceVersion(value string) string {
	if _, err := os.Stat(value); err == nil || looksLikePath(value) {
		return ""
	}
	return tagVersion(value)
}

// tagVersion is ref's tag when it is a version, else "".
func tagVersion(ref string) string {
	_, tag := splitRef(ref)
	if !semver.IsValid(tag) {
		return ""
	}
	return tag
}

// UserCilium resolves what --cilium-image names: the path of a docker-archive that holds Cilium's
// agent image (a repository whose last element is "cilium") and an operator image (one whose
// last element has "operator" in it), as
//
//	docker save -o cilium.tar quay.io/cilium/cilium:v1.15.19 quay.io/cilium/operator-generic:v1.15.19
//
// writes; or the agent image's reference, whose operator is then the generic one of the same
// registry path and tag (OperatorFor). The host's Docker must hold or pull both; they are saved
// into the cache as one docker-archive, once per pair. A value that cannot work is an
// *UnusableError.
func UserCilium(ctx context.Context, cache image.Cache, log *slog.Logger, value string, progress func(string)) (CiliumImages, error) {
	if _, err := os.Stat(value); err == nil || looksLikePath(value) {
		return ciliumArchive(value)
	}
	if !image.DockerTag().MatchString(value) {
		return CiliumImages{}, unusable("no such file, and not an image reference NAME:TAG")
	}
	name, _ := splitRef(value)
	if _, repo := splitRepo(name); repo != "cilium" {
		return CiliumImages{}, unusable("no such file, and %s is not Cilium's agent image (a repository named cilium, as quay.io/cilium/cilium:v1.15.19)", value)
	}
	refs := []string{value, OperatorFor(value)}
	check := func(archive string) error {
		_, err := ciliumArchive(archive)
		return err
	}
	save, err := dockerSave(ctx, "cilium", refs, check, progress)
	if err != nil {
		return CiliumImages{}, err
	}
	dir, err := cache.Artefact(ctx, log, "cilium-user-images", save.inputs, save.build)
	if err != nil {
		return CiliumImages{}, fmt.Errorf("save %s from Docker: %w", strings.Join(refs, " "), err)
	}
	return ciliumArchive(filepath.Join(dir, NodeArchiveFile))
}

// OperatorFor is the generic operator image that goes with the agent image ref: the same
// registry path and tag, the repository operator-generic (quay.io/cilium/cilium:v1.15.19 →
// quay.io/cilium/operator-generic:v1.15.19).
func OperatorFor(agent string) string {
	name, tag := splitRef(agent)
	dir, _ := splitRepo(name)
	return dir + "operator-generic:" + tag
}

// ciliumArchive reads the agent and operator images of the docker-archive at file.
func ciliumArchive(file string) (CiliumImages, error) {
	file, imgs, err := readArchiveFile(file)
	if err != nil {
		return CiliumImages{}, err
	}
	c, err := pickCilium(imgs)
	if err != nil {
		return CiliumImages{}, &UnusableError{Err: fmt.Errorf("%s: %w", file, err)}
	}
	c.Archive = file
	return c, nil
}

// pickCilium finds the agent and the operator among an archive's images, by their
// repositories' last elements: exactly one of each.
func pickCilium(imgs []archiveImage) (CiliumImages, error) {
	var agents, operators []string
	var ids []string
	for _, img := range imgs {
		for _, tag := range img.Tags {
			name, _ := splitRef(tag)
			_, repo := splitRepo(name)
			switch {
			case repo == "cilium":
				agents = append(agents, tag)
				ids = append(ids, img.ID)
			case strings.Contains(repo, "operator"):
				operators = append(operators, tag)
				ids = append(ids, img.ID)
			}
		}
	}
	var all []string
	for _, img := range imgs {
		all = append(all, img.Tags...)
	}
	switch {
	case len(agents) != 1:
		return CiliumImages{}, fmt.Errorf("%d images of Cilium's agent (a repository named cilium) among %s: want one", len(agents), strings.Join(all, ", "))
	case len(operators) != 1:
		return CiliumImages{}, fmt.Errorf("%d images of Cilium's operator (a repository whose name has operator) among %s: want one", len(operators), strings.Join(all, ", "))
	}
	sum := sha256.Sum256([]byte(strings.Join(ids, ",")))
	return CiliumImages{Agent: agents[0], Operator: operators[0], Key: hex.EncodeToString(sum[:])}, nil
}

// splitRef splits an image reference NAME:TAG at the tag's colon (not a registry's port).
func splitRef(ref string) (name, tag string) {
	i := strings.LastIndexByte(ref, ':')
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ref, ""
	}
	return ref[:i], ref[i+1:]
}

// splitRepo splits an image name into its path up to the last "/" (kept) and its last element.
func splitRepo(name string) (dir, repo string) {
	i := strings.LastIndexByte(name, '/')
	return name[:i+1], name[i+1:]
}
