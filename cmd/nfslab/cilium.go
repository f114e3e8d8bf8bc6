package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/nfslab/nfslab/lab"
	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/datapath/cilium/build"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/runstate"
)

// newCiliumCmd is `nfslab cilium`: real Cilium's pieces, built without a registry.
func newCiliumCmd(stdout, stderr io.Writer, g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "cilium", Short: "Real Cilium, built from its Go module; its datapaths run in the kind form (nfslab run --scenario cilium)"}
	var (
		cacheDir string
		version  string
	)
	b := &cobra.Command{
		Use:   "build",
		Short: "Build a Cilium version's agent, operator and helpers into the cache",
		Long: `Compiles Cilium's agent (cilium-agent), cilium-dbg, cilium-cni, cilium-health and its
responder, cilium-mount, cilium-sysctlfix and the generic operator from Cilium's Go module,
fetched through the Go module proxy (about 1 GB of modules the first time), and keeps them in
the cache with the datapath's C sources and the chart's init scripts. Nothing is booted. A
second build of the same version prints the cached one at once.

Only versions whose whole module graph the proxy serves can be built: ` + fmt.Sprint(cilium.Versions()) + `.

Exit codes: 0 built or cached; 2 a version nfslab cannot build; 3 the build failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cilium.CheckVersion(version); err != nil {
				return usageError{fmt.Errorf("--version: %w", err)}
			}
			cacheDir, err := cacheDirOrDefault(cacheDir)
			if err != nil {
				return err
			}
			release, err := registerRun(runstate.NewID(time.Now()), "cilium build", cacheDir, "")
			if err != nil {
				return err
			}
			defer release()
			start := time.Now()
			bins, err := build.Build(cmd.Context(), image.Cache{Dir: cacheDir}, g.logger(stderr), version, func(line string) {
				fmt.Fprintf(stdout, "[%6.1fs] %s\n", time.Since(start).Seconds(), line)
			})
			var ve *cilium.VersionError
			switch {
			case errors.As(err, &ve):
				return usageError{err}
			case err != nil:
				return &lab.LabError{Err: err}
			}
			fmt.Fprintf(stdout, "Cilium %s (%.0f s)\n  %s\n", bins.Version, time.Since(start).Seconds(), bins.Root())
			return nil
		},
	}
	b.Flags().StringVar(&cacheDir, "cache-dir", "", "artefact cache (default $NFSLAB_CACHE or ~/.cache/nfslab)")
	b.Flags().StringVar(&version, "version", cilium.DefaultVersion(), "the Cilium version")
	cmd.AddCommand(b)
	return cmd
}
