// Command nfslab reproduces how NFS mounts behave when the NFS server behind a Kubernetes
// ClusterIP is replaced, on a chosen kernel and datapath, and reports a verdict.
//
// Exit codes: 0 every cell got its expected verdict; 1 some cell did not; 2 bad input (usage, a
// malformed or invalid scenario); 3 the lab itself could not run.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/nfslab/nfslab/lab"
	"github.com/nfslab/nfslab/lab/agent"
	"github.com/nfslab/nfslab/lab/kernel"
	"github.com/nfslab/nfslab/lab/kernel/recipe"
	"github.com/nfslab/nfslab/lab/runstate"
	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/reports"
	"github.com/nfslab/nfslab/scenarios"
)

// Exit codes.
const (
	exitPass     = 0
	exitMismatch = 1
	exitUsage    = 2
	exitLab      = 3
)

// usageError marks bad input: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitError carries an exit code decided by a command (e.g. 1 for a verdict mismatch).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func main() {
	if os.Getpid() == 1 && len(os.Args) == 2 && os.Args[1] == "agent" {
		// Inside the VM as its init (the kernel's command line ends in "-- agent"). Only then:
		// nfslab is also PID 1 of the containers the kind form's machine runs from its binary,
		// where becoming the agent would power the whole VM off.
		agent.RunInit(context.Background(), slog.New(slog.NewTextHandler(os.Stderr, nil)))
		return
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitPass
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintf(stderr, "nfslab: %v\n", err)
	var ue usageError
	var se *scenario.Error
	var ie *lab.InputError
	var le *lab.LabError
	switch {
	case errors.As(err, &ue), errors.As(err, &se), errors.As(err, &ie):
		return exitUsage
	case errors.As(err, &le):
		return exitLab
	case ctx.Err() != nil:
		return exitLab
	default:
		// cobra's own flag and argument errors
		return exitUsage
	}
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "nfslab",
		Short:         "Reproduce NFS failover behind a ClusterIP on a chosen kernel and datapath",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	g := &globals{}
	g.register(root)
	root.AddCommand(newRunCmd(stdout, stderr, g), newScenariosCmd(stdout), newAgentCmd(), newProbeCmd(), newPodExecCmd(), newNodeNSCmd(stderr), newKernelCmd(stdout, stderr, g), newNodeImageCmd(stdout, stderr, g), newCiliumCmd(stdout, stderr, g), newCleanupCmd(stdout, g), newCacheCmd(stdout, g), newDoctorCmd(stdout), newReportCmd(stdout), newMatrixCmd(stdout), newDemoCmd(stdout, stderr, g), newDemoNextCmd(stdout))
	return root
}

func newRunCmd(stdout, stderr io.Writer, g *globals) *cobra.Command {
	var (
		sel          selection
		cell         string
		reportDir    string
		parallel     int
		keep         bool
		nodeImage    string
		ciliumValues string
		ciliumImage  string
		noSnapshot   bool
		cellSnaps    bool
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run a scenario (the built-in default when none is given) and report verdicts",
		Args:  runArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := sel.load()
			if err != nil {
				return err
			}
			if cellSnaps && (noSnapshot || keep) {
				return usageError{errors.New("--cell-snapshots takes and restores snapshots: not with --no-snapshot or --keep")}
			}
			if parallel < 0 {
				return usageError{fmt.Errorf("--parallel %d: want 0 (as many as the cores allow) or more", parallel)}
			}
			if cmd.Flags().Changed("cell") {
				if err := s.SelectCell(cell); err != nil {
					return err
				}
			}
			if err := sel.checkKernels(s); err != nil {
				return err
			}
			var userValues map[string]any
			if ciliumValues != "" {
				if userValues, err = checkCiliumValues(ciliumValues, s); err != nil {
					return err
				}
			}
			// All input is valid: from here on, things are created.
			cacheDir, err := sel.cache()
			if err != nil {
				return err
			}
			runID := runstate.NewID(time.Now())
			if reportDir == "" {
				reportDir = filepath.Join("reports", runID)
			}
			release, err := registerRun(runID, "run", cacheDir, reportDir)
			if err != nil {
				return err
			}
			defer release()
			fmt.Fprintf(stdout, "nfslab: run %s: scenario %s, %d cell(s), reports in %s\n", runID, s.Name, len(s.Cells()), reportDir)
			res, runErr := lab.Run(cmd.Context(), lab.Options{
				Scenario: s, CacheDir: cacheDir, Accel: sel.accel, Progress: stdout, Style: g.style(stdout), Log: g.logger(stderr),
				ArtifactDir: reportDir, Parallel: parallel, RunID: runID,
				Keep: keep, Kept: func(k lab.KeptCluster) { sayKept(stdout, reportDir, runID, k) },
				NodeImage: nodeImage, NoSnapshot: noSnapshot, CellSnapshots: cellSnaps, CiliumValues: userValues, CiliumImage: ciliumImage,
			})
			res.RunID = runID
			var inputErr *lab.InputError
			if errors.As(runErr, &inputErr) {
				return runErr // bad input found late: no report
			}
			if err := writeReports(reportDir, res); err != nil {
				return errors.Join(runErr, &lab.LabError{Err: err})
			}
			fmt.Fprintln(stdout)
			reports.Summary(stdout, res)
			fmt.Fprintf(stdout, "\nreport: %s\n", filepath.Join(reportDir, "result.json"))
			if runErr != nil {
				return runErr
			}
			return verdictGate(res)
		},
	}
	f := cmd.Flags()
	sel.addFlags(f)
	f.StringVar(&cell, "cell", "", "run only the cell with this ID (kernel/datapath/nfs/fault, or kernel/kind/datapath/nfs/fault for a kind cell, as nfslab matrix lists them)")
	f.StringVar(&reportDir, "report-dir", "", "where the reports (result.json, summary.md, report.html, junit.xml) go (default reports/<run-id>)")
	f.IntVar(&parallel, "parallel", 0, "VMs (kernels) to run at once; 0: one per host core, as far as memory allows (2 GiB each); for kind cells one per two cores (6 GiB each, 10 with Cilium)")
	f.BoolVar(&keep, "keep", false, "after the cells, keep the kind cluster (its VM, the cells' workloads) up until Ctrl-C, its API server forwarded to the host's loopback; kind cells on one kernel")
	f.StringVar(&nodeImage, "node-image", "", "the kind cells' node image: a docker-archive (docker save -o node.tar IMAGE) or an image reference the host's Docker has or pulls, e.g. kindest/node:TAG (Kubernetes v1.36 or later); default (or "+lab.OwnNodeImage+"): nfslab's own, built without a registry")
	f.BoolVar(&noSnapshot, "no-snapshot", false, "boot every VM cold: restore no snapshot and take none (under TCG a VM is otherwise restored from the cache's snapshot of the same kernel and machine — booted, or for the kind form with its cluster ready — or brought there and snapshotted)")
	f.BoolVar(&cellSnaps, "cell-snapshots", false, "also snapshot each cell right before its fault (set up, mounted: under 0.2 GiB for a netns cell, about 2 GiB for a kind cell, 4.6 with Cilium), and start each cell of a later run of the same cells from its own (under TCG)")
	f.StringVar(&ciliumValues, "cilium-values", "", "a Helm values file for the Cilium datapaths' chart, under nfslab's own values (it may not set those); checked before anything starts")
	f.StringVar(&ciliumImage, "cilium-image", "", ciliumImageUsage)
	return cmd
}

// sayKept writes the reports of the cells so far and tells the user how to reach the kept cluster.
func sayKept(stdout io.Writer, reportDir, runID string, k lab.KeptCluster) {
	k.Result.RunID = runID
	if err := writeReports(reportDir, k.Result); err != nil {
		fmt.Fprintf(stdout, "kept: writing the reports failed: %v\n", err)
	}
	fmt.Fprintln(stdout)
	reports.Summary(stdout, k.Result)
	fmt.Fprintf(stdout, "\nkept: the VM of kernel %s and its kind cluster (kube-proxy %s) stay up until Ctrl-C.\n", k.Kernel, k.ProxyMode)
	fmt.Fprintf(stdout, "  kubeconfig: %s (API server forwarded to %s, on this host's loopback only)\n", k.Kubeconfig, k.Server)
	fmt.Fprintf(stdout, "  try:        kubectl --kubeconfig %s get pods,svc,endpointslices -A\n", k.Kubeconfig)
}

func writeReports(dir string, res *reports.Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create report directory %s: %w", dir, err)
	}
	for _, write := range []func(string, *reports.Result) error{reports.WriteJSON, reports.WriteMarkdown, reports.WriteHTML, reports.WriteJUnit} {
		if err := write(dir, res); err != nil {
			return err
		}
	}
	return nil
}

func newScenariosCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "scenarios",
		Short: "List the built-in scenarios",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			list, err := scenario.Builtins(scenarios.FS)
			if err != nil {
				return err
			}
			for _, s := range list {
				fmt.Fprintf(stdout, "%-12s %s\n", s.Name, s.Description)
			}
			return nil
		},
	}
}

func newAgentCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "agent",
		Short:  "Run as the in-VM agent (PID 1 of the lab VM)",
		Hidden: true,
		Args:   cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if os.Getpid() != 1 {
				return usageError{errors.New("the agent runs only as PID 1 of the lab VM (it mounts, powers off, …)")}
			}
			agent.RunInit(cmd.Context(), slog.New(slog.NewTextHandler(os.Stderr, nil)))
			return nil
		},
	}
}

func newProbeCmd() *cobra.Command {
	return &cobra.Command{
		Use:    agent.ProbeCommand + " DIR SEQ [baseline]",
		Short:  "Run one I/O probe (the agent's child process)",
		Hidden: true,
		Args:   cobra.RangeArgs(2, 3),
		RunE: func(_ *cobra.Command, args []string) error {
			return agent.ProbeMain(args)
		},
	}
}

func newNodeNSCmd(stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:                agent.NodeNSCommand + " PID mount|umount …",
		Short:              "Mount or unmount in a kind node's namespaces (the agent's child)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			if err := agent.NodeNSMain(args); err != nil {
				fmt.Fprintf(stderr, "%v\n", err)
				return exitError{code: agent.NodeNSExitCode(err)}
			}
			return nil
		},
	}
}

func newPodExecCmd() *cobra.Command {
	return &cobra.Command{
		Use:                agent.PodExecCommand + " PROGRAM [ARG…]",
		Short:              "Start a pod's process without the node's NFS mounts (the agent's child)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			return agent.PodExecMain(args)
		},
	}
}

func newKernelCmd(stdout, stderr io.Writer, g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "kernel", Short: "Kernels under test: list the recipes, build one, check one for the kind form"}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the kernels a scenario can name",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			for _, l := range kernel.StockLines() {
				fmt.Fprintf(stdout, "%-17s %s\n", l.Name, l.Description)
			}
			for _, name := range recipe.Names() {
				r, err := recipe.Lookup(name)
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "%-17s %s\n", name, r.Description)
			}
			fmt.Fprintf(stdout, "%-17s %s\n", "PATH", "any bzImage with what the lab needs built in")
			return nil
		},
	})
	var cacheDir string
	build := &cobra.Command{
		Use:   "build RECIPE",
		Short: "Build a kernel recipe into the cache (runs make; the first build takes minutes)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := recipe.Lookup(args[0])
			if err != nil {
				return usageError{err}
			}
			if err := recipe.CheckBuildTools(); err != nil {
				return &lab.LabError{Err: err}
			}
			cacheDir, err := cacheDirOrDefault(cacheDir)
			if err != nil {
				return err
			}
			release, err := registerRun(runstate.NewID(time.Now()), "kernel build", cacheDir, "")
			if err != nil {
				return err
			}
			defer release()
			log := g.logger(stderr)
			start := time.Now()
			b, err := recipe.Build(cmd.Context(), r, cacheDir, log, func(line string) {
				fmt.Fprintf(stdout, "[%6.1fs] %s\n", time.Since(start).Seconds(), line)
			})
			if err != nil {
				return &lab.LabError{Err: fmt.Errorf("build kernel %s: %w", r.Name, err)}
			}
			how := fmt.Sprintf("built in %s", b.Duration.Round(time.Second))
			if b.Cached {
				how = "already built (cached)"
			}
			fmt.Fprintf(stdout, "kernel %s: %s, release %s\n  %s\n", r.Name, how, b.Release, b.BzImage)
			return nil
		},
	}
	build.Flags().StringVar(&cacheDir, "cache-dir", "", "artefact cache (default $NFSLAB_CACHE or ~/.cache/nfslab)")
	cmd.AddCommand(build, newCheckKindCmd(stdout, stderr, g))
	return cmd
}
