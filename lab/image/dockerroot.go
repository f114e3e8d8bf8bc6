package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/nfslab/nfslab/lab/hosttools"
)

// ErrNeedsDockerLoad says that NewDockerDisk cannot write a Docker disk on the host for this
// archive or this process, though `docker load` could: the image has more than one layer, a
// compressed layer or whiteouts, or the process is not root (writing the layer's owners and
// device nodes needs it). The caller loads the archive with Docker instead. Nothing is left at
// the disk's path. (An archive that is not one tagged image is an error of its own: Docker
// could not make a node image of it either.)
var ErrNeedsDockerLoad = errors.New("the Docker disk cannot be written on the host")

// NewDockerDisk creates at path an ext4 disk image of sizeMiB labelled label whose root is a
// Docker 20.10 data root (overlay2 storage driver) holding the image of the docker-archive
// archive (what `docker save` writes), as if `docker load` had loaded it. It returns the
// image's tags, as Docker lists them.
//
// It exists because `docker load` of a 1.2 GB archive in a VM takes minutes under TCG, while
// writing the same state on the host takes seconds. Only what `docker load` would write is
// written; Docker creates the rest when it starts.
//
// The Docker state is first laid out in the directory staging, which must not exist: it is
// created, and the caller removes it (it holds a copy of the unpacked layer). The error wraps
// ErrNeedsDockerLoad when the archive or the process does not allow this (see there).
func NewDockerDisk(ctx context.Context, path, label string, sizeMiB int, archive, staging string) ([]string, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: not root (the layer's owners and device nodes need it)", ErrNeedsDockerLoad)
	}
	f, err := os.Open(archive)
	if err != nil {
		return nil, fmt.Errorf("docker-archive: %w", err)
	}
	defer f.Close()
	img, err := readArchiveManifest(f)
	if err != nil {
		return nil, fmt.Errorf("docker-archive %s: %w", archive, err)
	}
	config, imageID, diffID, err := readImageConfig(f, img.Config)
	if err != nil {
		return nil, fmt.Errorf("docker-archive %s: %w", archive, err)
	}
	repoJSON, err := json.Marshal(map[string]any{"Repositories": repositories(img.RepoTags, "sha256:"+imageID)})
	if err != nil {
		return nil, err
	}

	// Docker's overlay2 driver names a layer's directory by a random cache ID and links it from
	// overlay2/l by a random short ID; both are derived from the layer here, so that the same
	// archive gives the same tree.
	cacheSum := sha256.Sum256([]byte("nfslab-docker-disk:" + diffID))
	cacheID := hex.EncodeToString(cacheSum[:])
	linkSum := sha256.Sum256([]byte("nfslab-docker-link:" + diffID))
	linkID := base32.StdEncoding.EncodeToString(linkSum[:])[:26]
	layerDir := "image/overlay2/layerdb/sha256/" + strings.TrimPrefix(diffID, "sha256:")
	diff := filepath.Join(staging, "overlay2", cacheID, "diff")

	for _, d := range []struct {
		name string
		mode fs.FileMode
	}{
		{"", 0o755}, // staging, the disk's root (Docker sets its data root's mode itself)
		{"overlay2", 0o710},
		{"overlay2/l", 0o700},
		{"overlay2/" + cacheID, 0o710},
		{"overlay2/" + cacheID + "/diff", 0o755},
		{"image", 0o700},
		{"image/overlay2", 0o700},
		{"image/overlay2/distribution", 0o700},
		{"image/overlay2/imagedb", 0o700},
		{"image/overlay2/imagedb/content", 0o700},
		{"image/overlay2/imagedb/content/sha256", 0o700},
		{"image/overlay2/imagedb/metadata", 0o700},
		{"image/overlay2/imagedb/metadata/sha256", 0o700},
		{"image/overlay2/layerdb", 0o700},
		{"image/overlay2/layerdb/sha256", 0o755},
		{layerDir, 0o700},
	} {
		p := filepath.Join(staging, d.name)
		if err := os.Mkdir(p, d.mode); err != nil {
			return nil, fmt.Errorf("the Docker disk's staging tree: %w", err)
		}
		if err := os.Chmod(p, d.mode); err != nil { // whatever the umask
			return nil, fmt.Errorf("the Docker disk's staging tree: %w", err)
		}
	}
	if err := extractLayer(ctx, f, img.Layers[0], diffID, diff); err != nil {
		return nil, fmt.Errorf("docker-archive %s: %w", archive, err)
	}
	size, err := treeSize(ctx, diff)
	if err != nil {
		return nil, fmt.Errorf("docker-archive %s: the layer: %w", archive, err)
	}
	// Docker also keeps the layer's tar-split.json.gz in layerdb, from which it rebuilds the
	// layer's exact tar for `docker save` and `docker push` of the image; nfslab does neither
	// in the VM, and Docker needs it for nothing else, so it is left out.
	for _, w := range []struct {
		name string
		mode fs.FileMode
		data string
	}{
		{"overlay2/" + cacheID + "/link", 0o644, linkID},
		{layerDir + "/diff", 0o644, diffID},
		{layerDir + "/size", 0o644, strconv.FormatInt(size, 10)},
		{layerDir + "/cache-id", 0o644, cacheID},
		{"image/overlay2/imagedb/content/sha256/" + imageID, 0o600, string(config)},
		{"image/overlay2/repositories.json", 0o600, string(repoJSON)},
	} {
		p := filepath.Join(staging, w.name)
		if err := os.WriteFile(p, []byte(w.data), w.mode); err != nil {
			return nil, fmt.Errorf("the Docker disk's staging tree: %w", err)
		}
		if err := os.Chmod(p, w.mode); err != nil {
			return nil, fmt.Errorf("the Docker disk's staging tree: %w", err)
		}
	}
	if err := os.Symlink("../"+cacheID+"/diff", filepath.Join(staging, "overlay2/l", linkID)); err != nil {
		return nil, fmt.Errorf("the Docker disk's staging tree: %w", err)
	}
	if err := EnsureFree(filepath.Dir(path), size); err != nil {
		return nil, err
	}
	if err := mkfsExt4(ctx, path, label, sizeMiB, staging); err != nil {
		return nil, err
	}
	return img.RepoTags, nil
}

// readArchiveManifest reads the docker-archive f's manifest.json, which must list one tagged
// image (ParseDockerManifest) of one layer (else the error wraps ErrNeedsDockerLoad).
func readArchiveManifest(f *os.File) (DockerManifestEntry, error) {
	data, err := readArchiveFile(f, "manifest.json", MaxDockerManifestBytes)
	if err != nil {
		return DockerManifestEntry{}, err
	}
	img, err := ParseDockerManifest(data)
	if err != nil {
		return DockerManifestEntry{}, err
	}
	if len(img.Layers) != 1 {
		return img, fmt.Errorf("%w: the image has %d layers, not 1", ErrNeedsDockerLoad, len(img.Layers))
	}
	return img, nil
}

// readImageConfig reads the image config name from the docker-archive f and returns it, the
// image's ID (the hex sha256 of the config) and its one diff ID (sha256:<hex>, the digest of the
// uncompressed layer).
func readImageConfig(f *os.File, name string) (config []byte, id, diffID string, err error) {
	config, err = readArchiveFile(f, name, MaxDockerConfigBytes)
	if err != nil {
		return nil, "", "", err
	}
	sum := sha256.Sum256(config)
	id = hex.EncodeToString(sum[:])
	// docker save names the config <image ID>.json (Docker 25 and later: blobs/sha256/<ID>).
	if base := strings.TrimSuffix(path.Base(name), ".json"); hexDigest().MatchString(base) && base != id {
		return nil, "", "", fmt.Errorf("the config %s has the sha256 %s: the archive is damaged", name, id)
	}
	var c struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(config, &c); err != nil {
		return nil, "", "", fmt.Errorf("the config %s: %w", name, err)
	}
	ids := c.RootFS.DiffIDs
	if len(ids) != 1 {
		return nil, "", "", fmt.Errorf("the config %s lists %d diff_ids for the 1 layer of manifest.json", name, len(ids))
	}
	if digest, ok := strings.CutPrefix(ids[0], "sha256:"); !ok || !hexDigest().MatchString(digest) {
		return nil, "", "", fmt.Errorf("the config %s: diff_id %q is not sha256:<hex>", name, ids[0])
	}
	return config, id, ids[0], nil
}

// hexDigest matches a hex sha256 digest, as Docker writes it.
func hexDigest() *regexp.Regexp { return regexp.MustCompile(`^[0-9a-f]{64}$`) }

// repositories returns the content of Docker's repositories.json for tags, the NAME:TAG tags
// (in Docker's short form: ParseDockerManifest) of the image id: repository → tag → id.
func repositories(tags []string, id string) map[string]map[string]string {
	repos := map[string]map[string]string{}
	for _, tag := range tags {
		// The tag follows the last colon (DockerTag allows no slash after it).
		repo := tag[:strings.LastIndex(tag, ":")]
		if repos[repo] == nil {
			repos[repo] = map[string]string{}
		}
		repos[repo][tag] = id
	}
	return repos
}

// archiveEntry returns a reader of the docker-archive f positioned at its regular file name,
// and the file's size. Other entries are skipped by seeking.
func archiveEntry(f *os.File, name string) (io.Reader, int64, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, 0, err
	}
	name = path.Clean(name)
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, 0, fmt.Errorf("the archive holds no file %s", name)
		}
		if err != nil {
			return nil, 0, fmt.Errorf("not a docker-archive (not a tar: %w)", err)
		}
		if h.Typeflag == tar.TypeReg && path.Clean(h.Name) == name {
			return tr, h.Size, nil
		}
	}
}

// readArchiveFile reads the file name, of at most limit bytes, of the docker-archive f.
func readArchiveFile(f *os.File, name string, limit int64) ([]byte, error) {
	r, size, err := archiveEntry(f, name)
	if err != nil {
		return nil, err
	}
	if size > limit {
		return nil, fmt.Errorf("%s is %d bytes: not a docker-archive's", name, size)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return data, nil
}

// extractLayer unpacks the layer name of the docker-archive f into the directory diff with GNU
// tar, keeping numeric owners, modes, hard links, device nodes and extended attributes (file
// capabilities), as Docker's overlay2 driver does, and checks that the layer's sha256 is
// diffID. The layer is streamed from the archive: it is never copied out whole.
func extractLayer(ctx context.Context, f *os.File, name, diffID, diff string) error {
	tarCmd, err := hosttools.Require("tar", "tar")
	if err != nil {
		return err
	}
	r, size, err := archiveEntry(f, name)
	if err != nil {
		return err
	}
	br := bufio.NewReader(r)
	head, _ := br.Peek(6)
	for _, c := range []struct {
		name  string
		magic []byte
	}{
		{"gzip", []byte{0x1f, 0x8b}},
		{"bzip2", []byte("BZh")},
		{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0}},
		{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd}},
	} {
		if bytes.HasPrefix(head, c.magic) {
			return fmt.Errorf("%w: the layer %s is %s-compressed", ErrNeedsDockerLoad, name, c.name)
		}
	}
	if err := EnsureFree(diff, size); err != nil {
		return err
	}
	h := sha256.New()
	in := io.TeeReader(br, h)
	cmd := exec.CommandContext(ctx, tarCmd, "-x", "-p", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-f", "-", "-C", diff)
	cmd.Stdin = in
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("unpack the layer %s: tar: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	// tar stops at the end-of-archive blocks; what follows them is part of the layer's digest.
	if _, err := io.Copy(io.Discard, in); err != nil {
		return fmt.Errorf("read the layer %s: %w", name, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != diffID {
		return fmt.Errorf("the layer %s has the digest %s, its config's diff_id is %s: the archive is damaged", name, got, diffID)
	}
	// The layer's "./" entry gave diff its owner and mode; Docker skips that entry.
	if err := os.Lchown(diff, 0, 0); err != nil {
		return err
	}
	return os.Chmod(diff, 0o755)
}

// treeSize is a layer's size as Docker records it (its directory.Size): the sizes of all but
// directories, each inode once. The error wraps ErrNeedsDockerLoad when the layer holds a
// whiteout (.wh.*), which Docker would turn into an overlay whiteout.
func treeSize(ctx context.Context, dir string) (int64, error) {
	seen := map[uint64]bool{}
	var size int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".wh.") {
			rel, _ := filepath.Rel(dir, p)
			return fmt.Errorf("%w: the layer holds the whiteout %s", ErrNeedsDockerLoad, rel)
		}
		if d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok || info.Size() == 0 || seen[st.Ino] {
			return nil
		}
		seen[st.Ino] = true
		size += info.Size()
		return nil
	})
	return size, err
}
