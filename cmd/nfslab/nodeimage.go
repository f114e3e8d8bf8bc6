package main

import (
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/nfslab/nfslab/lab"
	"github.com/nfslab/nfslab/lab/cluster/kind/nodeimage"
	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/datapath/cilium/build"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/runstate"
)

// newNodeImageCmd is `nfslab node-image build`: nfslab's own kind node image into the cache,
// ahead of the first kind run (a CI job warming its cache, or make test building it on idle CPU
// while the tests that do not need it run).
func newNodeImageCmd(stdout, stderr io.Writer, g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "node-image", Short: "nfslab's own kind node image, built without a registry"}
	var (
		cacheDir     string
		downloadOnly bool
		ciliums      []string
	)
	buildCmd := &cobra.Command{
		Use:   "build",
		Short: "Build the kind node image into the cache (compiles Kubernetes: the first build takes many minutes)",
		Long: `Builds what a kind run would build before its first cluster: the Kubernetes commands and etcd
compiled from the Go module proxy, the node's Debian userland, the control plane's component
images, written as a docker-archive. Nothing is booted. Cached by its inputs: a second build
prints the cached image at once.

--cilium VERSION (repeatable) builds that Cilium version first (as nfslab cilium build) and
preloads its agent and operator images into the node's containerd: a node image of its own,
for the Cilium datapaths.

--download-only fetches the Go modules Kubernetes and etcd are built from into Go's module
cache and stops: a later build starts compiling at once (make test fetches them this way while
the kernel compiles).

Exit codes: 0 built or cached; 2 a Cilium version nfslab cannot build; 3 the build failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var versions []string // once each, in the order given
			for _, v := range ciliums {
				if err := cilium.CheckVersion(v); err != nil {
					return usageError{fmt.Errorf("--cilium: %w", err)}
				}
				if !slices.Contains(versions, v) {
					versions = append(versions, v)
				}
			}
			if downloadOnly {
				start := time.Now()
				if err := nodeimage.DownloadSources(cmd.Context()); err != nil {
					return &lab.LabError{Err: err}
				}
				fmt.Fprintf(stdout, "Go modules of the node image's commands downloaded (%.0f s)\n", time.Since(start).Seconds())
				return nil
			}
			cacheDir, err := cacheDirOrDefault(cacheDir)
			if err != nil {
				return err
			}
			release, err := registerRun(runstate.NewID(time.Now()), "node-image build", cacheDir, "")
			if err != nil {
				return err
			}
			defer release()
			start := time.Now()
			progress := func(line string) { fmt.Fprintf(stdout, "[%6.1fs] %s\n", time.Since(start).Seconds(), line) }
			cache := image.Cache{Dir: cacheDir}
			var extras nodeimage.Extras
			for _, v := range versions {
				b, err := build.Build(cmd.Context(), cache, g.logger(stderr), v, progress)
				if err != nil {
					return &lab.LabError{Err: err}
				}
				extras.Cilium = append(extras.Cilium, b)
			}
			node, err := nodeimage.BuildNode(cmd.Context(), cache, g.logger(stderr), extras, progress)
			if err != nil {
				return &lab.LabError{Err: fmt.Errorf("build the kind node image: %w", err)}
			}
			fmt.Fprintf(stdout, "node image %s (%.0f s)\n  %s\n", node.Tag, time.Since(start).Seconds(), node.Archive)
			return nil
		},
	}
	buildCmd.Flags().StringVar(&cacheDir, "cache-dir", "", "artefact cache (default $NFSLAB_CACHE or ~/.cache/nfslab)")
	buildCmd.Flags().StringArrayVar(&ciliums, "cilium", nil, "a Cilium version whose images the node image preloads (repeatable)")
	buildCmd.Flags().BoolVar(&downloadOnly, "download-only", false, "only download the Go modules Kubernetes and etcd are built from")
	cmd.AddCommand(buildCmd)
	return cmd
}
