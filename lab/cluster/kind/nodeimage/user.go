package nodeimage

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/nfslab/nfslab/lab/hosttools"
	"github.com/nfslab/nfslab/lab/image"
)

const savedRecipe = "docker-save-v1"

// UnusableError says that a node image the user named cannot be used as given: no such file,
// not a docker-archive, an image Docker cannot find or pull, no Docker to ask. Other errors of
// UserNode are the host's.
type UnusableError struct{ Err error }

func (e *UnusableError) Error() string { return e.Err.Error() }
func (e *UnusableError) Unwrap() error { return e.Err }

func unusable(format string, a ...any) error {
	return &UnusableError{Err: fmt.Errorf(format, a...)}
}

// UserNode resolves a node image the user names instead of nfslab's own: the path of a
// docker-archive (what `docker save` writes), or an image reference, which the host's Docker
// must hold or pull and which is saved into the cache as a docker-archive, once per image.
func UserNode(ctx context.Context, cache image.Cache, log *slog.Logger, value string, progress func(string)) (Node, error) {
	if _, err := os.Stat(value); err == nil || looksLikePath(value) {
		return ArchiveNode(value)
	}
	return savedNode(ctx, cache, log, value, progress)
}

// looksLikePath says whether value can only be meant as a file, never as an image reference.
func looksLikePath(value string) bool {
	for _, p := range []string{"/", "./", "../", "~"} {
		if strings.HasPrefix(value, p) {
			return true
		}
	}
	return strings.HasSuffix(value, ".tar") || strings.HasSuffix(value, ".tar.gz") || strings.HasSuffix(value, ".tgz")
}

// ArchiveNode reads the node image's tag and ID from the docker-archive at file. The Node names
// the file by its absolute path: a VM attaches it from another directory.
func ArchiveNode(file string) (Node, error) {
	file, imgs, err := readArchiveFile(file)
	if err != nil {
		return Node{}, err
	}
	if len(imgs) > 1 {
		return Node{}, unusable("%s: %v", file, oneImage(len(imgs)))
	}
	return Node{Archive: file, Tag: imgs[0].Tags[0], Key: imgs[0].ID}, nil
}

// readArchiveFile reads the images of the docker-archive at file, and returns the file's
// absolute path with them. What is not a usable docker-archive is an *UnusableError.
func readArchiveFile(file string) (string, []archiveImage, error) {
	file, err := filepath.Abs(file)
	if err != nil {
		return "", nil, err
	}
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil, unusable("no such file")
	}
	if err != nil {
		return "", nil, &UnusableError{Err: err}
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return "", nil, &UnusableError{Err: err}
	} else if st.IsDir() {
		return "", nil, unusable("%s is a directory, not a docker-archive", file)
	}
	magic := make([]byte, 2)
	if n, _ := f.ReadAt(magic, 0); n == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		return "", nil, unusable("%s is compressed (gzip): decompress it first, docker save's own output is a plain tar", file)
	}
	imgs, err := readArchiveImages(f)
	if err != nil {
		return "", nil, &UnusableError{Err: fmt.Errorf("%s: %w", file, err)}
	}
	return file, imgs, nil
}

// ReadArchive reads a docker-archive holding one image and returns its tag and its image ID
// (sha256:<hex> of its config).
func ReadArchive(r io.Reader) (tag, id string, err error) {
	imgs, err := readArchiveImages(r)
	if err != nil {
		return "", "", err
	}
	if len(imgs) > 1 {
		return "", "", oneImage(len(imgs))
	}
	return imgs[0].Tags[0], imgs[0].ID, nil
}

// oneImage is the error of a node image archive that holds n images.
func oneImage(n int) error {
	return fmt.Errorf("the archive holds %d images: save the node image alone (docker save -o node.tar NAME:TAG)", n)
}

// archiveImage is an image of a docker-archive: its tags (Docker's short form) and its ID.
type archiveImage struct {
	Tags []string
	ID   string
}

// readArchiveImages reads the images of a docker-archive, each with its tags and its image ID
// (sha256:<hex> of its config). The tar's entries are read once; large ones are skipped (by
// seeking, when r can).
func readArchiveImages(r io.Reader) ([]archiveImage, error) {
	tr := tar.NewReader(r)
	var manifest []byte
	sums := map[string]string{} // entries small enough to be a config: name → sha256
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("not a docker-archive (not a tar: %w)", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Clean(h.Name)
		switch {
		case name == "manifest.json":
			if h.Size > image.MaxDockerManifestBytes {
				return nil, fmt.Errorf("manifest.json is %d bytes: not a docker-archive's", h.Size)
			}
			if manifest, err = io.ReadAll(tr); err != nil {
				return nil, fmt.Errorf("read manifest.json: %w", err)
			}
		case h.Size <= image.MaxDockerConfigBytes:
			s := sha256.New()
			if _, err := io.Copy(s, tr); err != nil {
				return nil, fmt.Errorf("read %s: %w", name, err)
			}
			sums[name] = hex.EncodeToString(s.Sum(nil))
		}
	}
	if manifest == nil {
		return nil, errors.New("no manifest.json: not a docker-archive (docker save -o out.tar IMAGE writes one)")
	}
	entries, err := image.ParseDockerManifests(manifest)
	if err != nil {
		return nil, err
	}
	imgs := make([]archiveImage, 0, len(entries))
	for _, e := range entries {
		sum, ok := sums[e.Config]
		if !ok {
			return nil, fmt.Errorf("manifest.json names the config %s, which the archive does not hold", e.Config)
		}
		imgs = append(imgs, archiveImage{Tags: e.RepoTags, ID: "sha256:" + sum})
	}
	return imgs, nil
}

// savedNode resolves an image reference with the host's Docker — pulling the image when Docker
// lacks it — and saves it into the cache as a docker-archive, once per image ID and reference.
func savedNode(ctx context.Context, cache image.Cache, log *slog.Logger, ref string, progress func(string)) (Node, error) {
	save, err := dockerSave(ctx, "node image", []string{ref}, checkSaved, progress)
	if err != nil {
		return Node{}, err
	}
	dir, err := cache.Artefact(ctx, log, "kind-user-node", save.inputs, save.build)
	if err != nil {
		return Node{}, fmt.Errorf("save %s from Docker: %w", ref, err)
	}
	return ArchiveNode(filepath.Join(dir, NodeArchiveFile))
}

// savedImages are images of the host's Docker to save as one docker-archive (NodeArchiveFile)
// into a cache entry: its inputs (the images' IDs and references) and what builds it.
type savedImages struct {
	inputs image.Inputs
	build  func(ctx context.Context, dir string) error
}

// dockerSave resolves refs with the host's Docker, pulling what it lacks, and returns how to
// save them: check vets the archive docker save wrote; what names the images in messages
// ("node image").
func dockerSave(ctx context.Context, what string, refs []string, check func(string) error, progress func(string)) (savedImages, error) {
	docker, err := hosttools.Path("docker")
	if err != nil {
		return savedImages{}, unusable("no such file, and an image reference needs Docker on this host, which has none: pass a docker-archive instead (docker save -o out.tar %s, on a machine with Docker)", strings.Join(refs, " "))
	}
	var ids []string
	for _, ref := range refs {
		id, err := localImageID(ctx, docker, ref)
		if err != nil {
			say(progress, "%s: Docker lacks %s: pulling it", what, ref)
			if _, err := dockerRun(ctx, docker, "pull", ref); err != nil {
				return savedImages{}, unusable("no such file, and Docker neither has nor can pull %s (%v): pass a docker-archive instead, or an image Docker can pull", ref, err)
			}
			if id, err = localImageID(ctx, docker, ref); err != nil {
				return savedImages{}, unusable("%s pulled, yet Docker does not list it: %w", ref, err)
			}
		}
		ids = append(ids, id)
	}
	return savedImages{
		inputs: image.Inputs{"recipe": savedRecipe, "image-id": strings.Join(ids, ","), "ref": strings.Join(refs, ",")},
		build: func(ctx context.Context, dir string) error {
			say(progress, "%s: saving %s (%s) into the cache", what, strings.Join(refs, " "), strings.Join(ids, " "))
			archive := filepath.Join(dir, NodeArchiveFile)
			if _, err := dockerRun(ctx, docker, append([]string{"save", "--output", archive}, refs...)...); err != nil {
				return err
			}
			return check(archive)
		},
	}, nil
}

// checkSaved checks that the archive docker save wrote is one nfslab can use: it has no tag
// when the reference named the image by digest.
func checkSaved(archive string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, _, err := ReadArchive(f); err != nil {
		return unusable("as docker save writes it: %w", err)
	}
	return nil
}

// localImageID asks the host's Docker for the ID of the image ref names.
func localImageID(ctx context.Context, docker, ref string) (string, error) {
	out, err := dockerRun(ctx, docker, "image", "inspect", "--format", "{{.Id}}", ref)
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(string(out))
	if id == "" {
		return "", fmt.Errorf("docker image inspect %s: no ID", ref)
	}
	return id, nil
}

// dockerRun runs the host's Docker CLI and returns its standard output; a failure carries the
// last line of its standard error.
func dockerRun(ctx context.Context, docker string, args ...string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, docker, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		return out, fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return out, nil
}

func say(progress func(string), format string, a ...any) {
	if progress != nil {
		progress(fmt.Sprintf(format, a...))
	}
}
