package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nfslab/nfslab/lab/hosttools"
)

// layerEntry is a file of a test layer.
type layerEntry struct {
	hdr  tar.Header
	data string
}

// testLayer is a layer tar holding entries.
func testLayer(t *testing.T, entries ...layerEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.Size = int64(len(e.data))
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// baseLayer holds directories, a regular file, a hard link to it, a symlink, an executable with
// an extended attribute, a device node, and a file owned by a user.
func baseLayer(t *testing.T, extra ...layerEntry) []byte {
	dir := func(name string, uid int, mode int64) layerEntry {
		return layerEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: mode, Uid: uid, Gid: uid}}
	}
	return testLayer(t, append([]layerEntry{
		dir("./", 0, 0o755),
		dir("./etc/", 0, 0o755),
		{hdr: tar.Header{Name: "./etc/hello", Mode: 0o644}, data: "hello, nfslab\n"},
		{hdr: tar.Header{Name: "./etc/hello.hard", Typeflag: tar.TypeLink, Linkname: "./etc/hello"}},
		{hdr: tar.Header{Name: "./etc/motd", Typeflag: tar.TypeSymlink, Linkname: "hello", Mode: 0o777}},
		dir("./usr/", 0, 0o755),
		dir("./usr/bin/", 0, 0o755),
		{hdr: tar.Header{Name: "./usr/bin/run", Mode: 0o755, PAXRecords: map[string]string{"SCHILY.xattr.trusted.nfslab": "yes"}}, data: "#!/bin/sh\necho run\n"},
		dir("./dev/", 0, 0o755),
		{hdr: tar.Header{Name: "./dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}},
		dir("./home/", 0, 0o755),
		dir("./home/u/", 1000, 0o700),
		{hdr: tar.Header{Name: "./home/u/note", Mode: 0o600, Uid: 1000, Gid: 1000}, data: "mine"},
	}, extra...)...)
}

// testImage is an image of a test docker-archive.
type testImage struct {
	tags    []string
	layers  [][]byte
	diffIDs []string // nil: the sha256 of each layer
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// writeTestArchive writes a docker-archive of images to dir/node.tar, laid out as docker save
// does (layers, configs, then manifest.json), and returns its path and the images' configs.
func writeTestArchive(t *testing.T, dir string, images ...testImage) (string, [][]byte) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	type entry struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	var manifest []entry
	var configs [][]byte
	for _, img := range images {
		e := entry{RepoTags: img.tags}
		diffIDs := img.diffIDs
		for _, l := range img.layers {
			e.Layers = append(e.Layers, sha256Hex(l)+"/layer.tar")
			add(sha256Hex(l)+"/layer.tar", l)
			if img.diffIDs == nil {
				diffIDs = append(diffIDs, "sha256:"+sha256Hex(l))
			}
		}
		config, err := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
			"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
		if err != nil {
			t.Fatal(err)
		}
		e.Config = sha256Hex(config) + ".json"
		add(e.Config, config)
		manifest = append(manifest, e)
		configs = append(configs, config)
	}
	data, err := json.Marshal(manifest)
	if err != nil {
		t.Fatal(err)
	}
	add("manifest.json", data)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "node.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p, configs
}

// dockerDiskTools skips the test unless it can write and read a Docker disk: root, tar,
// mkfs.ext4 and debugfs.
func dockerDiskTools(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not root: NewDockerDisk refuses")
	}
	for _, c := range []string{"tar", "mkfs.ext4"} {
		if _, err := hosttools.Path(c); err != nil {
			t.Skip(err)
		}
	}
	debugfs, err := hosttools.Path("debugfs")
	if err != nil {
		t.Skip(err)
	}
	return debugfs
}

// debugfsOut runs a debugfs request on the disk image and returns its standard output.
func debugfsOut(t *testing.T, debugfs, disk, request string) string {
	t.Helper()
	cmd := exec.Command(debugfs, "-R", request, disk)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v: %s", request, err, stderr.String())
	}
	if strings.Contains(stderr.String(), "File not found") {
		t.Errorf("debugfs -R %q: %s", request, stderr.String())
	}
	return string(out)
}

// inodeField reads a field of debugfs's stat output (Inode, Mode, User, Links).
func inodeField(t *testing.T, stat, field string) string {
	t.Helper()
	m := regexp.MustCompile(regexp.QuoteMeta(field) + `:\s+(\S+)`).FindStringSubmatch(stat)
	if m == nil {
		t.Errorf("no %s in debugfs stat output:\n%s", field, stat)
		return ""
	}
	return m[1]
}

// linkTarget reads the target of the symlink p: debugfs prints a short one with stat, and
// dumps a long one (stored in a block) with cat.
func linkTarget(t *testing.T, debugfs, disk, p string) string {
	t.Helper()
	stat := debugfsOut(t, debugfs, disk, "stat "+p)
	if !strings.Contains(stat, "Type: symlink") {
		t.Errorf("%s is not a symlink:\n%s", p, stat)
		return ""
	}
	if m := regexp.MustCompile(`Fast link dest: "(.*)"`).FindStringSubmatch(stat); m != nil {
		return m[1]
	}
	return debugfsOut(t, debugfs, disk, "cat "+p)
}

// TestNewDockerDisk: the disk holds Docker's state for the archive's image as `docker load`
// writes it — repositories.json with every tag, the config in imagedb, the layer's metadata in
// layerdb, the layer unpacked in overlay2 with its short link — and the layer's files keep
// their contents, modes, owners, hard links, symlinks, device nodes and extended attributes.
func TestNewDockerDisk(t *testing.T) {
	debugfs := dockerDiskTools(t)
	dir := t.TempDir()
	layer := baseLayer(t)
	tags := []string{"localhost:5000/nfslab/node:v1", "docker.io/library/busybox:1.36", "kindest/node:v1.30.0"}
	archive, configs := writeTestArchive(t, dir, testImage{tags: tags, layers: [][]byte{layer}})
	disk := filepath.Join(dir, "docker.img")
	staging := filepath.Join(dir, "staging")
	got, err := NewDockerDisk(context.Background(), disk, "nfslab-docker", 64, archive, staging)
	if err != nil {
		t.Fatal(err)
	}
	defer RemoveTree(staging)
	wantTags := []string{"localhost:5000/nfslab/node:v1", "busybox:1.36", "kindest/node:v1.30.0"}
	if !slices.Equal(got, wantTags) {
		t.Errorf("tags %q, want %q", got, wantTags)
	}
	imageID := "sha256:" + sha256Hex(configs[0])
	diffID := sha256Hex(layer)
	cat := func(p string) string { return debugfsOut(t, debugfs, disk, "cat "+p) }
	stat := func(p string) string { return debugfsOut(t, debugfs, disk, "stat "+p) }

	var repos struct{ Repositories map[string]map[string]string }
	if err := json.Unmarshal([]byte(cat("/image/overlay2/repositories.json")), &repos); err != nil {
		t.Fatal(err)
	}
	wantRepos := map[string]map[string]string{
		"localhost:5000/nfslab/node": {"localhost:5000/nfslab/node:v1": imageID},
		"busybox":                    {"busybox:1.36": imageID},
		"kindest/node":               {"kindest/node:v1.30.0": imageID},
	}
	if !reflect.DeepEqual(repos.Repositories, wantRepos) {
		t.Errorf("repositories.json: %v, want %v", repos.Repositories, wantRepos)
	}
	if c := cat("/image/overlay2/imagedb/content/sha256/" + sha256Hex(configs[0])); c != string(configs[0]) {
		t.Errorf("imagedb config %q, want %q", c, configs[0])
	}

	layerdb := "/image/overlay2/layerdb/sha256/" + diffID
	cacheID := cat(layerdb + "/cache-id")
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(cacheID) {
		t.Fatalf("cache-id %q is not 64 hex digits", cacheID)
	}
	if d := cat(layerdb + "/diff"); d != "sha256:"+diffID {
		t.Errorf("layerdb diff %q, want sha256:%s", d, diffID)
	}
	// Docker's size: regular files once per inode, and symlinks' targets.
	wantSize := len("hello, nfslab\n") + len("hello") + len("#!/bin/sh\necho run\n") + len("mine")
	if s := cat(layerdb + "/size"); s != strconv.Itoa(wantSize) {
		t.Errorf("layerdb size %q, want %d", s, wantSize)
	}
	link := cat("/overlay2/" + cacheID + "/link")
	if !regexp.MustCompile(`^[A-Z2-7]{26}$`).MatchString(link) {
		t.Errorf("link %q is not a 26-character link ID", link)
	}
	if !strings.Contains(debugfsOut(t, debugfs, disk, "ls -l /overlay2/l"), link) {
		t.Errorf("/overlay2/l does not hold %s", link)
	}
	if dest := linkTarget(t, debugfs, disk, "/overlay2/l/"+link); dest != "../"+cacheID+"/diff" {
		t.Errorf("/overlay2/l/%s -> %q, want ../%s/diff", link, dest, cacheID)
	}

	root := "/overlay2/" + cacheID + "/diff"
	for _, m := range []struct{ path, mode string }{
		{"/overlay2", "0710"},
		{"/overlay2/l", "0700"},
		{"/overlay2/" + cacheID, "0710"},
		{root, "0755"},
		{"/overlay2/" + cacheID + "/link", "0644"},
		{"/image", "0700"},
		{"/image/overlay2", "0700"},
		{"/image/overlay2/distribution", "0700"},
		{"/image/overlay2/imagedb/metadata/sha256", "0700"},
		{layerdb, "0700"},
		{layerdb + "/cache-id", "0644"},
		{"/image/overlay2/repositories.json", "0600"},
		{"/image/overlay2/imagedb/content/sha256/" + sha256Hex(configs[0]), "0600"},
		{root + "/usr/bin/run", "0755"},
		{root + "/home/u", "0700"},
	} {
		if mode := inodeField(t, stat(m.path), "Mode"); mode != m.mode {
			t.Errorf("%s: mode %s, want %s", m.path, mode, m.mode)
		}
	}
	if c := cat(root + "/etc/hello"); c != "hello, nfslab\n" {
		t.Errorf("etc/hello holds %q", c)
	}
	if c := cat(root + "/usr/bin/run"); c != "#!/bin/sh\necho run\n" {
		t.Errorf("usr/bin/run holds %q", c)
	}
	hello, hard := stat(root+"/etc/hello"), stat(root+"/etc/hello.hard")
	if a, b := inodeField(t, hello, "Inode"), inodeField(t, hard, "Inode"); a != b {
		t.Errorf("etc/hello.hard is inode %s, etc/hello %s: not a hard link", b, a)
	}
	if n := inodeField(t, hello, "Links"); n != "2" {
		t.Errorf("etc/hello has %s links, want 2", n)
	}
	if dest := linkTarget(t, debugfs, disk, root+"/etc/motd"); dest != "hello" {
		t.Errorf("etc/motd -> %q, want hello", dest)
	}
	if null := stat(root + "/dev/null"); !strings.Contains(null, "Type: character special") || !strings.Contains(null, "Device major/minor number: 01:03") {
		t.Errorf("dev/null is not the character device 1:3:\n%s", null)
	}
	if u := inodeField(t, stat(root+"/home/u/note"), "User"); u != "1000" {
		t.Errorf("home/u/note is owned by %s, want 1000", u)
	}
	if ea := debugfsOut(t, debugfs, disk, "ea_get "+root+"/usr/bin/run trusted.nfslab"); !strings.Contains(ea, "yes") {
		t.Errorf("usr/bin/run lost its extended attribute trusted.nfslab: %q", ea)
	}

	// The same archive gives the same layout.
	disk2, staging2 := filepath.Join(dir, "docker2.img"), filepath.Join(dir, "staging2")
	if _, err := NewDockerDisk(context.Background(), disk2, "nfslab-docker", 64, archive, staging2); err != nil {
		t.Fatal(err)
	}
	defer RemoveTree(staging2)
	if c := debugfsOut(t, debugfs, disk2, "cat "+layerdb+"/cache-id"); c != cacheID {
		t.Errorf("second disk: cache-id %s, first %s", c, cacheID)
	}
}

// TestNewDockerDiskRefuses: archives that are not one tagged image of one plain layer wrap
// ErrNeedsDockerLoad (the caller loads them in a VM); a layer that does not match its diff_id
// is an error of its own (docker load would refuse it too). Neither leaves a disk behind.
func TestNewDockerDiskRefuses(t *testing.T) {
	dockerDiskTools(t)
	layer := baseLayer(t)
	other := testLayer(t, layerEntry{hdr: tar.Header{Name: "b", Mode: 0o644}, data: "b"})
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(layer)
	zw.Close()
	whiteout := baseLayer(t, layerEntry{hdr: tar.Header{Name: "./etc/.wh.gone", Mode: 0o644}})
	tag := []string{"nfslab/node:v1"}
	tests := []struct {
		name     string
		images   []testImage
		sentinel bool
		wantErr  string
	}{
		{"two layers", []testImage{{tags: tag, layers: [][]byte{layer, other}}}, true, "2 layers"},
		{"two images", []testImage{{tags: tag, layers: [][]byte{layer}}, {tags: []string{"b:1"}, layers: [][]byte{other}}}, false, "2 images"},
		{"no tag", []testImage{{layers: [][]byte{layer}}}, false, "no tag"},
		{"compressed layer", []testImage{{tags: tag, layers: [][]byte{gz.Bytes()}, diffIDs: []string{"sha256:" + sha256Hex(layer)}}}, true, "gzip"},
		{"whiteout", []testImage{{tags: tag, layers: [][]byte{whiteout}}}, true, ".wh.gone"},
		{"diff_id mismatch", []testImage{{tags: tag, layers: [][]byte{layer}, diffIDs: []string{"sha256:" + sha256Hex(other)}}}, false, "diff_id"},
		{"tag without tag", []testImage{{tags: []string{"localhost:5000/node"}, layers: [][]byte{layer}}}, false, "not NAME:TAG"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			archive, _ := writeTestArchive(t, dir, tt.images...)
			disk := filepath.Join(dir, "docker.img")
			staging := filepath.Join(dir, "staging")
			defer RemoveTree(staging)
			_, err := NewDockerDisk(context.Background(), disk, "nfslab-docker", 64, archive, staging)
			if err == nil {
				t.Fatal("no error")
			}
			if errors.Is(err, ErrNeedsDockerLoad) != tt.sentinel {
				t.Errorf("errors.Is(%v, ErrNeedsDockerLoad) = %v, want %v", err, !tt.sentinel, tt.sentinel)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not say %q", err, tt.wantErr)
			}
			if _, err := os.Lstat(disk); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a disk was left at %s (%v)", disk, err)
			}
		})
	}
}

// TestRepositories: repositories.json names each tag under its repository, the tag's name
// before its last colon (a registry's port included).
func TestRepositories(t *testing.T) {
	for _, tt := range []struct {
		tags []string
		want map[string]map[string]string
	}{
		{[]string{"a:1", "a:2"}, map[string]map[string]string{"a": {"a:1": "id", "a:2": "id"}}},
		{[]string{"busybox:1", "kindest/node:v1"}, map[string]map[string]string{"busybox": {"busybox:1": "id"}, "kindest/node": {"kindest/node:v1": "id"}}},
		{[]string{"host:5000/x/y:t"}, map[string]map[string]string{"host:5000/x/y": {"host:5000/x/y:t": "id"}}},
	} {
		if got := repositories(tt.tags, "id"); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: %v, want %v", tt.tags, got, tt.want)
		}
	}
}
