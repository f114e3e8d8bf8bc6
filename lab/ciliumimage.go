package lab

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nfslab/nfslab/lab/cluster/kind/nodeimage"
	"github.com/nfslab/nfslab/lab/datapath/cilium"
)

// userCiliumImages resolves Options.CiliumImage before anything is created (no VM, no work
// directory): nil without it. versions are the run's Cilium versions: one, whose chart is
// rendered for the images, and which must be theirs when their tag names a version. What
// cannot work is an *InputError naming the flag and the value.
func userCiliumImages(ctx context.Context, opts Options, versions []string, p *progress) (*nodeimage.CiliumImages, error) {
	if opts.CiliumImage == "" {
		return nil, nil
	}
	switch {
	case len(versions) == 0:
		return nil, badCiliumImage(opts, "Cilium's images, and the run has no Cilium cell (want one of the datapaths %v on a kind cluster)", cilium.Datapaths())
	case len(versions) > 1:
		return nil, badCiliumImage(opts, "the images of one Cilium, and the run's Cilium cells are of %d versions (%s): keep one (--cell, or cilium.versions in the scenario)", len(versions), strings.Join(versions, ", "))
	}
	if err := versionMatches(opts, nodeimage.ReferenceVersion(opts.CiliumImage), versions[0]); err != nil {
		return nil, err // before Docker pulls the wrong images
	}
	imgs, err := resolveCiliumImages(ctx, opts, p)
	if err != nil {
		return nil, err
	}
	if err := imagesOfVersion(opts, imgs, versions[0], p); err != nil {
		return nil, err
	}
	return imgs, nil
}

// ciliumCheckImages resolves the user's images of Cilium for nfslab kernel check-kind (nil
// without them), after checkCilium: without a version given, the check takes the images' own
// (when their tag says one nfslab has the chart of), else the default.
func (c *MachineCheck) ciliumCheckImages(ctx context.Context, opts Options, p *progress) (*nodeimage.CiliumImages, error) {
	if c.Cilium == "" || opts.CiliumImage == "" {
		return nil, nil
	}
	if c.CiliumVersion != "" {
		if err := versionMatches(opts, nodeimage.ReferenceVersion(opts.CiliumImage), c.CiliumVersion); err != nil {
			return nil, err // before Docker pulls the wrong images
		}
	}
	imgs, err := resolveCiliumImages(ctx, opts, p)
	if err != nil {
		return nil, err
	}
	if c.CiliumVersion == "" {
		c.CiliumVersion = cilium.DefaultVersion()
		if v := imgs.Version(); v != "" && cilium.CheckVersion(v) == nil {
			c.CiliumVersion = v
		}
	}
	if err := imagesOfVersion(opts, imgs, c.CiliumVersion, p); err != nil {
		return nil, err
	}
	return imgs, nil
}

// resolveCiliumImages reads (or, for an image reference, saves from the host's Docker) the
// images Options.CiliumImage names.
func resolveCiliumImages(ctx context.Context, opts Options, p *progress) (*nodeimage.CiliumImages, error) {
	cache, err := cacheOf(opts)
	if err != nil {
		return nil, err
	}
	imgs, err := nodeimage.UserCilium(ctx, cache, opts.Log, opts.CiliumImage, func(line string) { p.say("%s", line) })
	var unusable *nodeimage.UnusableError
	switch {
	case errors.As(err, &unusable):
		return nil, badCiliumImage(opts, "%v", unusable.Err)
	case err != nil:
		return nil, labErr("--cilium-image %q: %w", opts.CiliumImage, err)
	}
	return &imgs, nil
}

// imagesOfVersion refuses images whose tag names another version than the chart's, and says
// which images run with which chart.
func imagesOfVersion(opts Options, imgs *nodeimage.CiliumImages, version string, p *progress) error {
	if err := versionMatches(opts, imgs.Version(), version); err != nil {
		return err
	}
	p.say("cilium: the images %s and %s (--cilium-image), with the chart of %s", imgs.Agent, imgs.Operator, version)
	return nil
}

// versionMatches refuses images of version imagesVersion ("" when unknown) for a Cilium of
// version.
func versionMatches(opts Options, imagesVersion, version string) error {
	if imagesVersion != "" && imagesVersion != version {
		return badCiliumImage(opts, "its agent is %s and the Cilium to install is %s: the chart must be the images' version", imagesVersion, version)
	}
	return nil
}

// badCiliumImage is the *InputError of a --cilium-image that cannot work.
func badCiliumImage(opts Options, format string, a ...any) error {
	return &InputError{Err: fmt.Errorf("--cilium-image %q: %s", opts.CiliumImage, fmt.Sprintf(format, a...))}
}
