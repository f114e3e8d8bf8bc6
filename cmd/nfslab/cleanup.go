package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/nfslab/nfslab/lab"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/runstate"
	"github.com/nfslab/nfslab/lab/tty"
)

func newCleanupCmd(stdout io.Writer, g *globals) *cobra.Command {
	var (
		cacheDir string
		dryRun   bool
	)
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove what killed nfslab runs left behind (processes, work directories, interrupted cache builds)",
		Long: `Remove what killed nfslab runs left on this host: processes they started (qemu, kernel
builds), their work directories (nfslab-run-<id>-* in the temp directory), cache builds that
were interrupted and locks nobody holds. Every run records itself while it is alive (in
$NFSLAB_RUN_DIR, else /run/nfslab for root); only what belongs to a recorded run whose process
is gone is removed, so a running nfslab is never disturbed. What cannot be attributed to a run
is listed and left alone. Finished cache entries are not touched: nfslab cache prune removes those.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cacheDir, err := cacheDirOrDefault(cacheDir)
			if err != nil {
				return err
			}
			c := runstate.Cleaner{
				Registry:   runstate.Registry{Dir: runstate.DefaultDir()},
				TempDirs:   []string{os.TempDir()},
				CacheDirs:  []string{cacheDir},
				RemoveTree: image.RemoveTree,
			}
			return cleanup(cmd.Context(), stdout, g, c, dryRun)
		},
	}
	cmd.Flags().StringVar(&cacheDir, "cache-dir", "", "artefact cache to look in (default $NFSLAB_CACHE or ~/.cache/nfslab; the caches of recorded runs are searched too)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only list what would be removed")
	return cmd
}

// cleanup prints what it removes (or would remove) and what it leaves alone. It fails (exit 3)
// when something could not be removed.
func cleanup(ctx context.Context, stdout io.Writer, g *globals, c runstate.Cleaner, dryRun bool) error {
	snap, err := c.Snapshot()
	if err != nil && snap.Procs == nil {
		return &lab.LabError{Err: fmt.Errorf("cleanup: %w", err)}
	}
	if err != nil {
		fmt.Fprintf(stdout, "warning: %v\n", err)
	}
	plan := runstate.Decide(snap)
	st := g.style(stdout)
	failed := 0
	if dryRun {
		for _, it := range plan.Remove {
			fmt.Fprintf(stdout, "%s %s\n", st.Paint(tty.Yellow, "would remove"), it)
		}
	} else {
		ctx, cancel := context.WithTimeout(ctx, runstate.WaitBudget)
		defer cancel()
		for _, r := range c.Apply(ctx, plan) {
			if r.Err != nil {
				fmt.Fprintf(stdout, "%s %s: %v\n", st.Paint(tty.Red, "could not remove"), r.Item, r.Err)
				failed++
				continue
			}
			fmt.Fprintf(stdout, "%s %s\n", st.Paint(tty.Green, "removed"), r.Item)
		}
	}
	for _, it := range plan.Keep {
		fmt.Fprintf(stdout, "%s %s\n", st.Paint(tty.Dim, "left alone"), it)
	}
	if len(plan.Remove) == 0 {
		fmt.Fprintln(stdout, "nothing to clean up")
	}
	if failed > 0 {
		return &lab.LabError{Err: fmt.Errorf("cleanup: %d item(s) could not be removed", failed)}
	}
	return nil
}

// registerRun records this process as the owner of run id in the run registry (refusing a
// report directory a live run writes to), marks every process it will start with the run ID
// (runstate.EnvVar, inherited through the environment), and returns the function that removes
// the record at the end.
func registerRun(id, command, cacheDir, reportDir string) (func() error, error) {
	if reportDir != "" {
		abs, err := filepath.Abs(reportDir)
		if err != nil {
			return nil, usageError{fmt.Errorf("--report-dir %s: %w", reportDir, err)}
		}
		reportDir = abs
	}
	if cacheDir != "" {
		if abs, err := filepath.Abs(cacheDir); err == nil {
			cacheDir = abs
		}
	}
	release, err := runstate.Registry{Dir: runstate.DefaultDir()}.Register(runstate.Record{
		ID: id, Command: command, Started: time.Now(), TempDir: os.TempDir(), CacheDir: cacheDir, ReportDir: reportDir,
	})
	var inUse *runstate.InUseError
	switch {
	case errors.As(err, &inUse):
		return nil, usageError{err}
	case err != nil:
		return nil, &lab.LabError{Err: err}
	}
	if err := os.Setenv(runstate.EnvVar, id); err != nil {
		release()
		return nil, &lab.LabError{Err: fmt.Errorf("mark the run's processes: %w", err)}
	}
	return release, nil
}
