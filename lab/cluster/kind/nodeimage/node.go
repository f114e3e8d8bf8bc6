package nodeimage

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nfslab/nfslab/internal/lines"
	"github.com/nfslab/nfslab/lab/hosttools"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/internal/gomod"
	"github.com/nfslab/nfslab/lab/internal/procgroup"
)

// What the node image is built from besides the binaries.
const (
	// KindVersion is the kind module whose base-image files (entrypoint, systemd units,
	// containerd config) the node image carries; the same kind drives the cluster.
	KindVersion = "v0.33.0"
	// The tags kubeadm of KubernetesVersion asks for (its constants DefaultEtcdVersion and
	// PauseVersion); containerd's own sandbox image is pause 3.10.
	etcdImageTag = "3.7.0-0"
	suite        = "bookworm"

	nodeRecipe = "kind-node-v5" // v5: the kubelet's cgroup script patched (kubeletcgroup.go)
	// GaneshaImage is the NFS server's image, preloaded in the node's containerd (pods use it
	// with imagePullPolicy Never).
	GaneshaImage = "nfslab.local/nfs-ganesha:v1"
	// NodeArchiveFile is the docker-archive in the artefact directory; NodeTagFile holds the
	// node image's tag.
	NodeArchiveFile = "node.tar"
	NodeTagFile     = "tag"
)

// pauseTags are the pause image tags the node's containerd (3.10) and kubeadm (3.10.2) use.
func pauseTags() []string { return []string{"3.10", "3.10.2"} }

// nodePackages is the node's userland from Debian: systemd as init, containerd and runc, CNI
// plugins (a static bridge configuration stands in for kindnetd, which has no source on the Go
// module proxy), what kube-proxy's modes and kubeadm call, and nfs-common for mounts made by the
// node's own tools; jq for kind's mount-product-files.sh, the hook runc runs for every container.
func nodePackages() []string {
	return []string{"systemd", "systemd-sysv", "dbus", "conntrack", "iptables", "nftables", "ipset", "iproute2",
		"ethtool", "util-linux", "mount", "kmod", "libseccomp2", "pigz", "fuse-overlayfs", "e2fsprogs", "bash",
		"ca-certificates", "procps", "containerd", "runc", "containernetworking-plugins", "socat", "ebtables", "jq",
		"nfs-common"}
}

// ganeshaPackages is the NFS server image's userland: nfs-ganesha with its VFS backend.
func ganeshaPackages() []string { return []string{"nfs-ganesha", "nfs-ganesha-vfs"} }

// kubeProxyPackages is kube-proxy's image userland: the iptables/nft/ipset tools its modes run.
func kubeProxyPackages() []string {
	return []string{"iptables", "nftables", "conntrack", "ipset", "kmod"}
}

// The node's pod network: one bridge, host-local addresses from BridgeSubnet, routes out.
// Every node of the image starts with the same range; the lab gives each further node of a
// cluster its own by rewriting BridgeConflist's subnet there, and routes between them.
const (
	BridgeConflist = "/etc/cni/net.d/10-bridge.conflist"
	BridgeSubnet   = "10.244.0.0/24"
	bridgeConflist = `{
  "cniVersion": "0.4.0",
  "name": "nfslab-bridge",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "` + BridgeSubnet + `"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`
)

// Node is a node image: a docker-archive holding it, and its tag.
type Node struct {
	Archive, Tag string
	// Key names the image's content, for what is cached from it (the Docker disk that holds
	// it): the cache key of nfslab's own image, the image ID (the sha256 of its config) of a
	// user's.
	Key string
}

// BuildNode returns the kind node image for KubernetesVersion, building it into the cache if
// needed: the binaries (Binaries), Debian userlands by mmdebstrap, kind's base files from its
// module, the control plane's component images imported into the node's containerd by a
// throw-away containerd on the host, all written as a docker-archive without Docker. extras
// adds images to the node's containerd (Extras{} is the default node image).
func BuildNode(ctx context.Context, cache image.Cache, log *slog.Logger, extras Extras, progress func(string)) (Node, error) {
	if err := (hosttools.Set{For: "building the kind node image", AptOptions: hosttools.NoRecommends, Tools: hostTools()}).Check(); err != nil {
		return Node{}, err
	}
	binsInputs, err := binariesInputs(ctx)
	if err != nil {
		return Node{}, err
	}
	inputs := image.Inputs{
		"recipe":      nodeRecipe,
		"binaries":    binsInputs.Key(), // the name of the binaries' cache entry
		"kind":        KindVersion,
		"suite":       suite,
		"packages":    strings.Join(nodePackages(), ","),
		"kube-proxy":  strings.Join(kubeProxyPackages(), ","),
		"ganesha":     ganeshaInputs(),
		"conflist":    bridgeConflist,
		"etcd-tag":    etcdImageTag,
		"pause-tags":  strings.Join(pauseTags(), ","),
		"kubernetes":  KubernetesVersion,
		"etcd":        EtcdVersion,
		"hook-dirs":   strings.Join(image.MergedUsrHookDirs(), ","),
		"entrypoint":  "/usr/local/bin/entrypoint /sbin/init",
		"stop-signal": "SIGRTMIN+3",
	}
	if len(extras.Cilium) > 0 {
		if extras.bpftool, err = ciliumBpftool(ctx, cache, log, progress); err != nil {
			return Node{}, err
		}
	}
	extras.inputs(inputs)
	// The tag names the node image's own inputs: two different node images never share a tag.
	tag := "nfslab.local/kind-node:" + KubernetesVersion + "-" + inputs.Key()[:12]
	dir, err := cache.Artefact(ctx, log, "kind-node", inputs, func(ctx context.Context, dir string) error {
		return buildNode(ctx, log, cache, binsInputs, extras, dir, tag, progress)
	})
	if err != nil {
		return Node{}, err
	}
	if _, err := os.Stat(filepath.Join(dir, NodeTagFile)); err != nil {
		return Node{}, fmt.Errorf("cached node image is incomplete (%w): remove %s to rebuild it", err, dir)
	}
	return Node{Archive: filepath.Join(dir, NodeArchiveFile), Tag: tag, Key: filepath.Base(dir)}, nil
}

func hostTools() []hosttools.Tool {
	return []hosttools.Tool{
		{Command: "mmdebstrap", Package: "mmdebstrap"},
		{Command: "containerd", Package: "containerd"},
		{Command: "ctr", Package: "containerd"},
		{Command: "gcc", Package: "build-essential"},
		{Command: "tar", Package: "tar"},
	}
}

// buildNode builds the node image into dir. The Debian userlands need no binary: they are laid
// out while Binaries compiles Kubernetes (mmdebstrap mostly waits on downloads and dpkg, and the
// compile is the longest step), which takes them off the critical path of a cold build.
func buildNode(ctx context.Context, log *slog.Logger, cache image.Cache, binsInputs image.Inputs, extras Extras, dir, tag string, progress func(string)) error {
	say := func(format string, a ...any) {
		if progress != nil {
			progress("node image: " + fmt.Sprintf(format, a...))
		}
	}
	start := time.Now()
	work := filepath.Join(dir, "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	defer image.RemoveTree(work)

	var (
		bins  string
		lands userlands
	)
	err := together(ctx,
		func(ctx context.Context) (err error) {
			bins, err = cachedBinaries(ctx, cache, log, binsInputs, progress)
			return err
		},
		func(ctx context.Context) (err error) {
			lands, err = makeUserlands(ctx, work, extras.ciliumPackages(), say)
			return err
		})
	if err != nil {
		return err
	}

	kindMod, err := gomod.Download(ctx, "sigs.k8s.io/kind", KindVersion)
	if err != nil {
		return err
	}
	k8sMod, err := gomod.Download(ctx, "k8s.io/kubernetes", KubernetesVersion)
	if err != nil {
		return err
	}

	say("component images")
	comps, err := componentImages(ctx, work, bins, k8sMod.Dir, lands)
	if err != nil {
		return err
	}
	imports := []containerdImport{{Archive: filepath.Join(work, "components.tar")}}
	if err := WriteDockerArchive(ctx, imports[0].Archive, work, comps); err != nil {
		return fmt.Errorf("component images: %w", err)
	}
	if len(extras.Cilium) > 0 {
		imgs, err := ciliumImages(ctx, lands.cilium, extras.bpftool, extras.Cilium)
		if err != nil {
			return err
		}
		ci := containerdImport{Archive: filepath.Join(work, "cilium.tar"), Unpack: true}
		if err := WriteDockerArchive(ctx, ci.Archive, work, imgs); err != nil {
			return fmt.Errorf("the images of Cilium: %w", err)
		}
		imports = append(imports, ci)
	}
	if u := extras.UserCilium; u != nil {
		say("the user's Cilium images %s and %s", u.Agent, u.Operator)
		imports = append(imports, containerdImport{Archive: u.Archive})
	}

	root := lands.node
	if err := installKindFiles(ctx, root, kindMod.Dir, bins); err != nil {
		return err
	}
	say("component images into the node's containerd")
	if err := importIntoContainerd(ctx, log, root, work, imports); err != nil {
		return err
	}
	say("writing the node image")
	node := Image{
		Tag: tag, Root: root, Entrypoint: []string{"/usr/local/bin/entrypoint", "/sbin/init"},
		Env:        []string{"container=docker", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		StopSignal: "SIGRTMIN+3",
	}
	if err := WriteDockerArchive(ctx, filepath.Join(dir, NodeArchiveFile), work, []Image{node}); err != nil {
		return fmt.Errorf("node image: %w", err)
	}
	say("%s built in %.0f s", tag, time.Since(start).Seconds())
	return os.WriteFile(filepath.Join(dir, NodeTagFile), []byte(tag+"\n"), 0o644)
}

// userlands are the Debian trees of the node image: the node's own, and one userland that the
// kube-proxy and nfs-ganesha images share. Sharing it makes them one layer, which the node's
// containerd stores once: the node image is 130 MB smaller (1.10 GB instead of 1.23), and
// one mmdebstrap is saved. Each image carries the other's files unused (kube-proxy's binary,
// nfs-ganesha's packages). cilium is Cilium's images' userland, when the node image has them.
type userlands struct {
	node, images, cilium string
}

// together runs fs side by side and returns once all of them have returned. When one fails, the
// context of the others is cancelled (a failed userland stops the compile) and the first error
// is returned.
func together(ctx context.Context, fs ...func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(fs))
	for _, f := range fs {
		go func() { errs <- f(ctx) }()
	}
	var first error
	for range fs {
		if err := <-errs; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

// makeUserlands lays the userlands out under work with mmdebstrap, one after the other;
// Cilium's (of the packages cilium) only when there are any.
func makeUserlands(ctx context.Context, work string, cilium []string, say func(string, ...any)) (userlands, error) {
	withCilium := len(cilium) > 0
	u := userlands{node: filepath.Join(work, "node"), images: filepath.Join(work, "img-userland")}
	start := time.Now()
	others := "kube-proxy's and nfs-ganesha's"
	if withCilium {
		others += ", then Cilium's"
	}
	say("userlands (mmdebstrap: the node's %d packages, then %s), while Kubernetes compiles", len(nodePackages()), others)
	if err := debootstrap(ctx, u.node, nodePackages()); err != nil {
		return u, fmt.Errorf("node userland: %w", err)
	}
	if err := debootstrap(ctx, u.images, imagePackages()); err != nil {
		return u, fmt.Errorf("kube-proxy and nfs-ganesha images: %w", err)
	}
	if withCilium {
		u.cilium = filepath.Join(work, "img-cilium")
		if err := debootstrap(ctx, u.cilium, cilium); err != nil {
			return u, fmt.Errorf("the userland of Cilium's images: %w", err)
		}
	}
	say("userlands ready in %.0f s", time.Since(start).Seconds())
	return u, nil
}

// imagePackages are the packages of the userland the kube-proxy and nfs-ganesha images share.
func imagePackages() []string {
	return append(kubeProxyPackages(), ganeshaPackages()...)
}

// debootstrap installs a Debian minbase with pkgs into root (created), without documentation
// and apt's lists.
func debootstrap(ctx context.Context, root string, pkgs []string) error {
	args := []string{"--variant=minbase", "--include=" + strings.Join(pkgs, ","),
		"--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/doc/*",
		"--dpkgopt=path-exclude=/usr/share/locale/*", "--dpkgopt=path-exclude=/usr/share/info/*",
		"--aptopt=Acquire::Languages \"none\"", "--dpkgopt=force-unsafe-io"}
	for _, h := range image.MergedUsrHookDirs() {
		args = append(args, "--hook-dir="+h)
	}
	args = append(args, suite, root)
	// On cancellation, signal mmdebstrap's whole process group, as a terminal's ^C would: killing
	// its main process alone left its apt and dpkg children running, and the wait for their
	// output held an interrupted build for as long as they ran. SIGKILL (the leader only) if
	// they have not gone a minute later.
	cmd := procgroup.Command(ctx, syscall.SIGTERM, time.Minute, "nice", append([]string{"-n", "5", "mmdebstrap"}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		// Killed mid-install, mmdebstrap leaves its chroot's mounts (proc, sys, devpts, dev/shm).
		if uerr := image.UnmountBelow(root); uerr != nil {
			err = fmt.Errorf("%w; and its mounts stay: %v", err, uerr)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("mmdebstrap %s: interrupted: %w", root, ctx.Err())
		}
		return fmt.Errorf("mmdebstrap %s: %w\n%s", root, err, lines.Tail(string(out), 15))
	}
	for _, d := range []string{"var/cache/apt", "var/lib/apt/lists"} {
		entries, _ := os.ReadDir(filepath.Join(root, d))
		for _, e := range entries {
			os.RemoveAll(filepath.Join(root, d, e.Name()))
		}
	}
	return nil
}
