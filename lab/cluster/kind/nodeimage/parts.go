package nodeimage

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nfslab/nfslab/internal/lines"
)

const registry = "registry.k8s.io/"

// componentImages lays out, under work, the images kubeadm and containerd ask for by tag: the
// control plane's (one static binary each), etcd's, kube-proxy's and nfs-ganesha's (both on
// lands.images: the iptables/nft/ipset tools kube-proxy's modes run, and nfs-ganesha) and pause
// (compiled from Kubernetes' pause.c).
func componentImages(ctx context.Context, work, bins, k8sDir string, lands userlands) ([]Image, error) {
	path := imageEnv()
	var imgs []Image
	single := func(tag, bin string) error {
		root := filepath.Join(work, "img-"+filepath.Base(bin))
		if err := scratchRoot(root); err != nil {
			return err
		}
		if err := copyExec(bin, filepath.Join(root, "usr/local/bin", filepath.Base(bin))); err != nil {
			return err
		}
		imgs = append(imgs, Image{Tag: tag, Root: root, Env: path})
		return nil
	}
	for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		if err := single(registry+c+":"+KubernetesVersion, filepath.Join(bins, "bin", c)); err != nil {
			return nil, err
		}
	}
	if err := single(registry+"etcd:"+etcdImageTag, filepath.Join(bins, "bin", "etcd")); err != nil {
		return nil, err
	}

	if err := copyExec(filepath.Join(bins, "bin", "kube-proxy"), filepath.Join(lands.images, "usr/local/bin/kube-proxy")); err != nil {
		return nil, err
	}
	imgs = append(imgs, Image{Tag: registry + "kube-proxy:" + KubernetesVersion, Root: lands.images, Env: path})

	ganesha, err := ganeshaImageOn(lands.images)
	if err != nil {
		return nil, err
	}
	imgs = append(imgs, ganesha)

	pause := filepath.Join(work, "img-pause")
	if err := os.MkdirAll(pause, 0o755); err != nil {
		return nil, err
	}
	src := filepath.Join(k8sDir, "build/pause/linux/pause.c")
	cmd := exec.CommandContext(ctx, "gcc", "-static", "-O2", "-DVERSION="+pauseTags()[len(pauseTags())-1], "-o", filepath.Join(pause, "pause"), src)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("compile pause from %s: %w: %s", src, err, strings.TrimSpace(string(out)))
	}
	for _, t := range pauseTags() {
		imgs = append(imgs, Image{Tag: registry + "pause:" + t, Root: pause, Entrypoint: []string{"/pause"}})
	}
	return imgs, nil
}

// imageEnv is the environment of the images nfslab lays out itself.
func imageEnv() []string {
	return []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
}

// ganeshaImage lays out the NFS server's image (GaneshaImage) under work: a Debian userland
// with nfs-ganesha and the fixups it needs, for GaneshaArchive, which saves it alone for node
// images that lack it. nfslab's own node image preloads it on the userland it shares with
// kube-proxy's image (makeUserlands, then ganeshaImageOn).
func ganeshaImage(ctx context.Context, work string) (Image, error) {
	root := filepath.Join(work, "img-ganesha")
	if err := debootstrap(ctx, root, ganeshaPackages()); err != nil {
		return Image{}, fmt.Errorf("nfs-ganesha image: %w", err)
	}
	return ganeshaImageOn(root)
}

// ganeshaImageOn finishes the NFS server's image on root, a userland with ganeshaPackages.
func ganeshaImageOn(root string) (Image, error) {
	if err := writeFixups(root, ganeshaFixups()); err != nil {
		return Image{}, fmt.Errorf("nfs-ganesha image: %w", err)
	}
	return Image{Tag: GaneshaImage, Root: root, Env: imageEnv()}, nil
}

// ganeshaInputs is what the NFS server's image is made from, as a cache input: its packages,
// its tag and its fixups.
func ganeshaInputs() string {
	return strings.Join(ganeshaPackages(), ",") + " " + GaneshaImage + " " + fmt.Sprint(ganeshaFixups())
}

// fixup is a directory, symlink or file written over an image's tree.
type fixup struct {
	Path, Link, Data string
	Dir              bool
}

// ganeshaFixups are what the nfs-ganesha image needs beyond its packages: its VFS export is not
// created without /etc/mtab, its ID mapper takes 10 s to start without a Domain, and it expects
// its runtime directories.
func ganeshaFixups() []fixup {
	return []fixup{
		{Path: "run/ganesha", Dir: true}, {Path: "var/lib/nfs/ganesha", Dir: true}, {Path: "var/log/ganesha", Dir: true},
		{Path: "etc/mtab", Link: "/proc/self/mounts"},
		{Path: "etc/idmapd.conf", Data: "[General]\nDomain = nfslab.local\n"},
	}
}

func writeFixups(root string, fs []fixup) error {
	for _, f := range fs {
		p := filepath.Join(root, f.Path)
		var err error
		switch {
		case f.Dir:
			err = os.MkdirAll(p, 0o755)
		case f.Link != "":
			os.Remove(p)
			err = os.Symlink(f.Link, p)
		default:
			err = os.WriteFile(p, []byte(f.Data), 0o644)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// scratchRoot makes the skeleton of a one-binary image: /usr/local/bin, a sticky /tmp and a
// passwd with root (some components look their user up).
func scratchRoot(root string) error {
	for _, d := range []string{"usr/local/bin", "etc", "var/lib"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "tmp"), 0o755); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
}

func copyExec(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

// installKindFiles turns the Debian userland at root into a kind node, as kind's base image does
// (from the kind module's images/base/files): its entrypoint and scripts, systemd units for
// containerd and the kubelet with only those enabled, containerd's and the kubelet's config,
// the CNI plugins where containerd looks, the bridge network, the OCI spec template, and the
// kubelet, kubeadm and kubectl. One script of kind's is patched (patchKubeletCgroup).
func installKindFiles(ctx context.Context, root, kindDir, bins string) error {
	files := filepath.Join(kindDir, "images/base/files")
	copies := []struct{ src, dst string }{
		{"usr/local/bin", "usr/local/bin"},
		{"kind", "kind"},
		{"etc/crictl.yaml", "etc/crictl.yaml"},
		{"etc/containerd", "etc/containerd"},
		{"etc/default", "etc/default"},
		{"etc/sysctl.d", "etc/sysctl.d"},
		{"etc/systemd/system", "etc/systemd/system"},
	}
	for _, c := range copies {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, c.dst)), 0o755); err != nil {
			return err
		}
		// cp -a keeps the scripts' modes; the module cache's files are read-only, so fix modes after.
		cmd := exec.CommandContext(ctx, "cp", "-rT", filepath.Join(files, c.src), filepath.Join(root, c.dst))
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("copy kind's %s: %w: %s", c.src, err, strings.TrimSpace(string(out)))
		}
	}
	if out, err := exec.CommandContext(ctx, "chmod", "-R", "u+w,a+rX", filepath.Join(root, "kind"), filepath.Join(root, "etc/systemd/system")).CombinedOutput(); err != nil {
		return fmt.Errorf("chmod kind files: %w: %s", err, out)
	}
	if err := patchKubeletCgroup(root); err != nil {
		return err
	}
	for _, d := range []string{"usr/local/bin", "kind/bin"} {
		entries, _ := os.ReadDir(filepath.Join(root, d))
		for _, e := range entries {
			if err := os.Chmod(filepath.Join(root, d, e.Name()), 0o755); err != nil {
				return err
			}
		}
	}
	// Only containerd and the kubelet start; units a container cannot run are removed.
	for _, glob := range []string{
		"lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service",
		"lib/systemd/system/multi-user.target.wants/*", "etc/systemd/system/*.wants/*",
		"lib/systemd/system/local-fs.target.wants/*", "lib/systemd/system/sockets.target.wants/*udev*",
		"lib/systemd/system/sockets.target.wants/*initctl*", "lib/systemd/system/basic.target.wants/*",
	} {
		matches, _ := filepath.Glob(filepath.Join(root, glob))
		for _, m := range matches {
			os.Remove(m)
		}
	}
	wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		return err
	}
	links := map[string]string{
		"etc/systemd/system/systemd-binfmt.service": "/dev/null",
		"sbin/init":                "/usr/lib/systemd/systemd",
		"usr/local/bin/containerd": "/usr/bin/containerd",
	}
	for _, u := range []string{"kubelet", "containerd", "undo-mount-hacks"} {
		links["etc/systemd/system/multi-user.target.wants/"+u+".service"] = "/etc/systemd/system/" + u + ".service"
	}
	for p, target := range links {
		os.Remove(filepath.Join(root, p))
		if err := os.Symlink(target, filepath.Join(root, p)); err != nil {
			return err
		}
	}
	if err := appendFile(filepath.Join(root, "etc/systemd/journald.conf"), "ReadKMsg=no\n"); err != nil {
		return err
	}
	for _, d := range []string{"etc/kubernetes/manifests", "opt/cni/bin", "etc/cni/net.d"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	// Hard links: the plugins are stored once in the image's layer.
	if out, err := exec.CommandContext(ctx, "cp", "-al", filepath.Join(root, "usr/lib/cni")+"/.", filepath.Join(root, "opt/cni/bin")).CombinedOutput(); err != nil {
		return fmt.Errorf("CNI plugins: %w: %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(root, BridgeConflist), []byte(bridgeConflist), 0o644); err != nil {
		return err
	}
	if err := writeCRIBaseSpec(ctx, filepath.Join(root, "etc/containerd/cri-base.json")); err != nil {
		return err
	}
	for _, c := range []string{"kubelet", "kubeadm", "kubectl"} {
		if err := copyExec(filepath.Join(bins, "bin", c), filepath.Join(root, "usr/bin", c)); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(root, "kind/version"), []byte(KubernetesVersion+"\n"), 0o644)
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(text)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeCRIBaseSpec writes containerd's default OCI spec with kind's createContainer hook (it
// mounts the product files into each container) and without rlimits, as kind's base image has.
func writeCRIBaseSpec(ctx context.Context, dst string) error {
	out, err := exec.CommandContext(ctx, "ctr", "oci", "spec").Output()
	if err != nil {
		return fmt.Errorf("ctr oci spec: %w", err)
	}
	var spec map[string]any
	if err := json.Unmarshal(out, &spec); err != nil {
		return fmt.Errorf("ctr oci spec: %w", err)
	}
	hooks, _ := spec["hooks"].(map[string]any)
	if hooks == nil {
		hooks = map[string]any{}
	}
	create, _ := hooks["createContainer"].([]any)
	hooks["createContainer"] = append(create, map[string]any{"path": "/kind/bin/mount-product-files.sh"})
	spec["hooks"] = hooks
	if proc, ok := spec["process"].(map[string]any); ok {
		delete(proc, "rlimits")
	}
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}

// containerdImport is one docker-archive for the node's containerd store.
type containerdImport struct {
	Archive string
	// Unpack also unpacks the images into the store's overlayfs snapshots, as the node's
	// containerd (kind's config: the overlayfs snapshotter) would before their first container.
	// Under TCG that unpack is minutes for Cilium's image of about a gigabyte, long enough for
	// the kubelet's runtime request to time out; on the host it is seconds. The node image then
	// holds the image twice (blob and snapshot). Every image of nfslab's own is one layer, so a
	// snapshot has no overlayfs whiteouts that Docker's own layers would misread.
	Unpack bool
}

// importIntoContainerd imports the component images of each archive into the containerd store
// of the node at root (so the node never pulls), with a containerd of the host's own that only
// lives for this (CRI disabled, its own root, state and socket under work).
func importIntoContainerd(ctx context.Context, log *slog.Logger, root, work string, imports []containerdImport) error {
	state := filepath.Join(work, "containerd-state")
	sock := filepath.Join(work, "c.sock")
	if len(sock) > 100 {
		state = filepath.Join(os.TempDir(), fmt.Sprintf("nfslab-ctrd-%d", os.Getpid()))
		sock = filepath.Join(state, "c.sock")
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(state)
	config := filepath.Join(work, "containerd.toml")
	toml := fmt.Sprintf("version = 2\nroot = %q\nstate = %q\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = %q\n",
		filepath.Join(root, "var/lib/containerd"), state, sock)
	if err := os.WriteFile(config, []byte(toml), 0o644); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(work, "containerd.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	daemon := exec.CommandContext(cctx, "containerd", "--config", config)
	daemon.Stdout, daemon.Stderr = logf, logf
	if err := daemon.Start(); err != nil {
		return fmt.Errorf("start a containerd for the import: %w", err)
	}
	defer func() { stop(); _ = daemon.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd for the import did not come up (log: %s)", filepath.Join(work, "containerd.log"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, im := range imports {
		if err := ctrImport(ctx, sock, im); err != nil {
			return err
		}
	}
	out, err := exec.CommandContext(ctx, "ctr", "-a", sock, "-n", "k8s.io", "images", "ls", "-q").Output()
	if err != nil {
		return fmt.Errorf("ctr images ls: %w", err)
	}
	log.Info("node image: imported component images", "images", strings.Fields(string(out)))
	return nil
}

// ctrImport imports one archive into the containerd at sock.
func ctrImport(ctx context.Context, sock string, im containerdImport) error {
	f, err := os.Open(im.Archive)
	if err != nil {
		return err
	}
	defer f.Close()
	// (Debian 12's ctr cannot label what it imports, so the images are not pinned against the
	// kubelet's image garbage collection; it only collects under disk pressure.)
	args := []string{"-a", sock, "-n", "k8s.io", "images", "import", "--all-platforms"}
	if im.Unpack {
		args = append(args, "--snapshotter", "overlayfs")
	} else {
		args = append(args, "--no-unpack")
	}
	imp := exec.CommandContext(ctx, "ctr", append(args, "-")...)
	imp.Stdin = f
	if out, err := imp.CombinedOutput(); err != nil {
		return fmt.Errorf("ctr images import %s: %w: %s", filepath.Base(im.Archive), err, lines.Tail(string(out), 10))
	}
	return nil
}
