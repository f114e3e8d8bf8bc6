package lab

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nfslab/nfslab/lab/cluster/kind"
	"github.com/nfslab/nfslab/lab/cluster/kind/nodeimage"
	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/datapath/cilium/build"
	"github.com/nfslab/nfslab/lab/datapath/cilium/chart"
	"github.com/nfslab/nfslab/lab/kernel"
	"github.com/nfslab/nfslab/lab/scenario"
)

// ciliumTimeout bounds Cilium's install in a new cluster, on top of clusterTimeout: under TCG
// the agent compiles its datapath with clang before it is ready (bpf_host alone took 6 min),
// the agent in the VM waits up to 25 minutes for that datapath, and the first pod's endpoint
// is compiled next (kind.WarmUp, or the first cell's server).
const ciliumTimeout = 45 * time.Minute

// ciliumMachine is the kind form for real Cilium: its kernel must also have what Cilium's agent
// needs.
func ciliumMachine() machineForm {
	m := kindMachine()
	m.name = "real Cilium in the kind form"
	m.memoryMB = ciliumMemoryMB
	m.features = func() []kernel.Feature { return append(kernel.KindFeatures(), kernel.CiliumFeatures()...) }
	return m
}

// checkCilium refuses, before anything is built or booted, a Cilium check that cannot work: an
// unknown datapath or version, a kube-proxy mode beside it, or a node image of the user's (it
// lacks Cilium's images). It fills in the default version, unless the user's images
// (Options.CiliumImage) are to say it (ciliumCheckImages).
func (c *MachineCheck) checkCilium(opts Options) error {
	if c.Cilium == "" {
		if c.CiliumVersion != "" {
			return &InputError{Err: fmt.Errorf("a Cilium version (%s) without a Cilium datapath: want one of %v", c.CiliumVersion, cilium.Datapaths())}
		}
		if opts.CiliumImage != "" {
			return &InputError{Err: fmt.Errorf("--cilium-image %q without a Cilium datapath: want one of %v", opts.CiliumImage, cilium.Datapaths())}
		}
		return nil
	}
	if !cilium.IsDatapath(c.Cilium) {
		return &InputError{Err: fmt.Errorf("%q is not a Cilium datapath: want one of %v", c.Cilium, cilium.Datapaths())}
	}
	if c.ProxyMode != "" {
		return &InputError{Err: fmt.Errorf("real Cilium (%s) replaces kube-proxy: a kube-proxy mode (%s) cannot go with it", c.Cilium, c.ProxyMode)}
	}
	if c.CiliumVersion == "" && opts.CiliumImage == "" {
		c.CiliumVersion = cilium.DefaultVersion()
	}
	if c.CiliumVersion != "" {
		if err := cilium.CheckVersion(c.CiliumVersion); err != nil {
			return &InputError{Err: err}
		}
	}
	if opts.NodeImage != "" && opts.NodeImage != OwnNodeImage {
		return &InputError{Err: fmt.Errorf("--node-image %q: real Cilium runs from nfslab's own node image, which carries its images", opts.NodeImage)}
	}
	return nil
}

// ciliumBinaries are a Cilium version's agent, operator and helpers, built into the cache when
// they are not there (many minutes the first time).
func (r *runner) ciliumBinaries(ctx context.Context, version string) (build.Binaries, error) {
	r.p.say("cilium: %s's binaries (cache %s)", version, r.cache.Dir)
	bins, err := build.Build(ctx, r.cache, r.opts.Log, version, func(line string) { r.p.say("cilium: %s", line) })
	var ve *cilium.VersionError
	switch {
	case errors.As(err, &ve):
		return build.Binaries{}, &InputError{Err: err}
	case err != nil:
		return build.Binaries{}, labErr("Cilium %s: %w", version, err)
	}
	return bins, nil
}

// ciliumInstall renders Cilium's chart on the host with nfslab's values for the datapath (the
// agent in the VM only applies the result): the images preloaded into nfslab's node image
// (nfslab's build, or the user's), the cluster's API server and pod network, and the VM's
// cgroup root where the datapath wants it.
func (r *runner) ciliumInstall(ctx context.Context, datapath, version string) (cilium.Install, error) {
	dir, err := chart.Fetch(ctx, r.opts.Log, r.cache, version)
	if err != nil {
		return cilium.Install{}, labErr("%w", err)
	}
	agent, operator := cilium.AgentImage(version), cilium.OperatorImage(version)
	if u := r.userCilium; u != nil {
		agent, operator = u.Agent, u.Operator
	}
	values, err := cilium.Required(datapath, cilium.Setup{
		Cluster: kind.ClusterName, PodCIDR: kind.PodCIDR, AgentImage: agent,
		OperatorImage: operator, CgroupRoot: cilium.NodeCgroupRoot,
	})
	if err != nil {
		return cilium.Install{}, &InputError{Err: err}
	}
	values = cilium.Merge(r.opts.CiliumValues, values)
	objs, err := chart.Render(dir, values, nodeimage.KubernetesVersion)
	if err != nil {
		return cilium.Install{}, labErr("Cilium %s (%s): %w", version, datapath, err)
	}
	in := cilium.Install{Datapath: datapath, Version: version, Values: values}
	for _, o := range objs {
		in.Objects = append(in.Objects, o.Object)
	}
	r.p.say("cilium: chart %s rendered for %s: %d objects", version, datapath, len(in.Objects))
	return in, nil
}

// ciliumWant is a Cilium datapath and version that kind cells of a run install.
type ciliumWant struct{ datapath, version string }

// ciliumWants lists the Cilium datapaths and versions of the cells, each once, in cell order.
func ciliumWants(groups [][]scenario.Cell) []ciliumWant {
	var out []ciliumWant
	for _, g := range groups {
		for _, c := range g {
			w := ciliumWant{c.Datapath, c.Cilium}
			if cilium.IsDatapath(c.Datapath) && !slices.Contains(out, w) {
				out = append(out, w)
			}
		}
	}
	return out
}

// ciliumVersions lists the Cilium versions of wants, each once.
func ciliumVersions(wants []ciliumWant) []string {
	var out []string
	for _, w := range wants {
		if !slices.Contains(out, w.version) {
			out = append(out, w.version)
		}
	}
	return out
}

// ciliumSetup builds the binaries of every Cilium version the run's cells install (node image
// extras: or takes the user's images instead) and renders the chart for every datapath and
// version (the agent's installs).
func (r *runner) ciliumSetup(ctx context.Context) (nodeimage.Extras, []cilium.Install, error) {
	extras := nodeimage.Extras{UserCilium: r.userCilium}
	var installs []cilium.Install
	var built []string
	for _, w := range r.cilium {
		if r.userCilium == nil && !slices.Contains(built, w.version) {
			bins, err := r.ciliumBinaries(ctx, w.version)
			if err != nil {
				return extras, nil, err
			}
			extras.Cilium = append(extras.Cilium, bins)
			built = append(built, w.version)
		}
		in, err := r.ciliumInstall(ctx, w.datapath, w.version)
		if err != nil {
			return extras, nil, err
		}
		installs = append(installs, in)
	}
	return extras, installs, nil
}
