package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nfslab/nfslab/lab/cluster/kind"
	"github.com/nfslab/nfslab/lab/cluster/kind/nodeimage"
	"github.com/nfslab/nfslab/lab/cluster/vm"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/kernel"
	"github.com/nfslab/nfslab/lab/scenario"
)

// OwnNodeImage, as Options.NodeImage, names nfslab's own node image, as the empty value does.
const OwnNodeImage = "nfslab"

// checkNodeImage refuses --node-image for a run that has no kind cell.
func checkNodeImage(opts Options, groups [][]scenario.Cell) error {
	if opts.NodeImage == "" {
		return nil
	}
	for _, g := range groups {
		if g[0].Cluster == scenario.ClusterKind {
			return nil
		}
	}
	return &InputError{Err: fmt.Errorf("--node-image %q is a kind node image: the run has no kind cell (add --cluster kind)", opts.NodeImage)}
}

// userNodeImage resolves Options.NodeImage before anything is created (no VM, no work
// directory): nil for nfslab's own node image. A value that cannot work is an *InputError
// naming the flag and the value.
func userNodeImage(ctx context.Context, opts Options, p *progress) (*nodeimage.Node, error) {
	if opts.NodeImage == "" || opts.NodeImage == OwnNodeImage {
		return nil, nil
	}
	cache, err := cacheOf(opts)
	if err != nil {
		return nil, err
	}
	node, err := nodeimage.UserNode(ctx, cache, opts.Log, opts.NodeImage, func(line string) { p.say("%s", line) })
	var bad *nodeimage.UnusableError
	switch {
	case errors.As(err, &bad):
		return nil, &InputError{Err: fmt.Errorf("--node-image %q: %w", opts.NodeImage, bad.Err)}
	case err != nil:
		return nil, labErr("--node-image %q: %w", opts.NodeImage, err)
	}
	p.say("node image: %s (image %s), from --node-image", node.Tag, node.Key)
	return &node, nil
}

// nodeImage is the kind form's node image: the user's, else nfslab's own with extras, built into
// the cache when it is not there.
func (r *runner) nodeImage(ctx context.Context, extras nodeimage.Extras) (nodeimage.Node, error) {
	if r.userNode != nil {
		return *r.userNode, nil
	}
	r.p.say("node image: preparing (cache %s)", r.cache.Dir)
	node, err := nodeimage.BuildNode(ctx, r.cache, r.opts.Log, extras, func(line string) { r.p.say("%s", line) })
	if err != nil {
		return nodeimage.Node{}, labErr("the kind node image: %w", err)
	}
	return node, nil
}

// sideLoadArchive is the docker-archive the agent loads into a cluster's nodes once the cluster
// exists: the NFS server's image, which a user's node image lacks. It is "" for nfslab's own
// node image, which carries that image.
func (r *runner) sideLoadArchive(ctx context.Context) (string, error) {
	if r.userNode == nil {
		return "", nil
	}
	archive, err := nodeimage.GaneshaArchive(ctx, r.cache, r.opts.Log, func(line string) { r.p.say("%s", line) })
	if err != nil {
		return "", labErr("for the node image %s: %w", r.userNode.Tag, err)
	}
	return archive, nil
}

// sideLoadDevice is the block device under which the guest sees the side-loaded archive: the
// disk after the Docker disk.
const sideLoadDevice = "/dev/vdb"

// kindDisks are a kind machine's disks: the cached Docker disk as a snapshot, then the
// side-loaded archive, read-only, when there is one.
func kindDisks(dockerDisk, sideLoad string) []vm.Disk {
	disks := []vm.Disk{{Path: dockerDisk, Mode: vm.DiskSnapshot}}
	if sideLoad != "" {
		disks = append(disks, vm.Disk{Path: sideLoad, Mode: vm.DiskReadOnly})
	}
	return disks
}

// clusterConfig is what the agent creates kind clusters from (the kube-proxy mode is each
// cell's): the node image and the NFS server's image; with a side-loaded archive (a user's node
// image), the device to load it from and kind's own pod network.
func clusterConfig(nodeTag, sideLoad string) *kind.ClusterConfig {
	cfg := &kind.ClusterConfig{NodeImage: nodeTag, GaneshaImage: nodeimage.GaneshaImage, ReadyTimeout: clusterTimeout}
	if sideLoad != "" {
		cfg.SideLoad, cfg.KindCNI = []string{sideLoadDevice}, true
	}
	return cfg
}

// nodeDisk returns a Docker disk (an ext4 image) whose engine already holds the node image,
// building it into the cache first, once per node image — per tag and content (node.Key), so a
// user's image never reuses another's disk; machines attach the result as a snapshot and leave
// it as it was. An image of one layer (nfslab's own) is written into the disk on the host
// (writeNodeDisk), in seconds; any other is loaded by Docker itself in a VM of kernel k, the
// archive attached read-only, which under TCG takes minutes (170 s for 1.2 GB).
func (r *runner) nodeDisk(ctx context.Context, k kernel.Kernel, initrd, work string, node nodeimage.Node) (string, error) {
	rootfsKey := filepath.Base(filepath.Dir(r.rootfs))
	// v2: written on the host where it can be (no tar-split in its layer store, which only a
	// docker save in the VM would need).
	inputs := image.Inputs{"recipe": "kind-docker-disk-v2", "node": node.Tag, "node-archive": node.Key,
		"rootfs": rootfsKey, "size-mib": fmt.Sprint(dockerDiskMiB), "label": dockerDiskLabel}
	dir, err := r.cache.Artefact(ctx, r.opts.Log, "kind-docker-disk", inputs, func(ctx context.Context, dir string) error {
		disk := filepath.Join(dir, "docker.img")
		if err := dockerDiskFits(dir, node.Archive); err != nil {
			return err
		}
		if written, err := r.writeNodeDisk(ctx, disk, dir, node); written || err != nil {
			return err
		}
		if err := image.NewExt4Disk(ctx, disk, dockerDiskLabel, dockerDiskMiB); err != nil {
			return err
		}
		r.p.say("node image: Docker loads it into a Docker disk in a VM (once per node image; minutes under TCG)")
		res, _, _, err := r.runEngine(ctx, k, initrd, work, []vm.Disk{{Path: disk}, {Path: node.Archive, Mode: vm.DiskReadOnly}},
			kind.EngineConfig{Load: []string{"/dev/vdb"}})
		if err != nil {
			return err
		}
		eng := res.engine
		if len(eng.Loaded) == 0 || !slices.Contains(eng.Loaded[0].Images, node.Tag) {
			return fmt.Errorf("the engine did not load %s: %+v", node.Tag, eng.Loaded)
		}
		return nil
	})
	if err != nil {
		return "", labErr("the kind form's Docker disk: %w", err)
	}
	return filepath.Join(dir, "docker.img"), nil
}

// writeNodeDisk writes the Docker disk with the node image on the host (image.NewDockerDisk),
// staging its tree in dir. It reports false, and no error, for an image that Docker must load
// itself, and says why in one line.
func (r *runner) writeNodeDisk(ctx context.Context, disk, dir string, node nodeimage.Node) (bool, error) {
	start := time.Now()
	staging := filepath.Join(dir, "docker-root")
	tags, err := image.NewDockerDisk(ctx, disk, dockerDiskLabel, dockerDiskMiB, node.Archive, staging)
	if rerr := image.RemoveTree(staging); err == nil && rerr != nil {
		err = fmt.Errorf("remove the Docker disk's staging tree: %w", rerr)
	}
	switch {
	case errors.Is(err, image.ErrNeedsDockerLoad):
		r.p.say("node image: not written on the host (%v): Docker loads it in a VM", err)
		return false, nil
	case err != nil:
		return false, err
	case !slices.Contains(tags, node.Tag):
		return false, fmt.Errorf("the Docker disk written on the host holds %q, not %s", tags, node.Tag)
	}
	r.p.say("node image: written into a Docker disk on the host in %.1f s", time.Since(start).Seconds())
	return true, nil
}

// dockerDiskFits checks that a Docker disk loaded with the node image archive fits in dir. The
// disk is sparse: it grows by what Docker writes, the archive's layers unpacked (about the
// archive's size). Twice that is asked for, to leave the host some room.
func dockerDiskFits(dir, archive string) error {
	st, err := os.Stat(archive)
	if err != nil {
		return fmt.Errorf("the node image: %w", err)
	}
	return image.EnsureFree(dir, 2*st.Size())
}
