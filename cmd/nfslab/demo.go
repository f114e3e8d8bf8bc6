package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/nfslab/nfslab/lab"
	"github.com/nfslab/nfslab/lab/agent"
	"github.com/nfslab/nfslab/lab/runstate"
)

func newDemoCmd(stdout, stderr io.Writer, g *globals) *cobra.Command {
	var (
		sel  selection
		cell string
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Bring one cell's lab up and hand you a shell on its node; the fault and the replacement come when you say",
		Long: `Bring one cell's lab up in a VM and hand you a shell on its node (the VM's root namespaces,
where the mount is: mount, ls, ss -tn, dmesg work as typed). The lab stops before the fault:
type ` + "`nfslab-next`" + ` in the shell, or press ` + agent.NextKeyName + `, to kill backend A, and again to bring
backend B up; the probes and the verdict follow as in nfslab run. Meanwhile the lab's events
(steps, what kernel_connect was handed, what the socket-LB hook rewrote, sockets, probes, the
verdict) appear between the shell's lines, marked [nfslab]. Leaving the shell (exit or Ctrl-D,
or ` + agent.LeaveKeyName + ` when a command hangs on the mount) tears everything down, as after a run.

The cell is the one --cell names, else the first of the selection (--scenario, --kernel,
--datapath). Exit code as for run: 0 the cell got its expected verdict, 1 it did not (or you
left before the verdict), 2 bad input, 3 the lab could not run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := sel.load()
			if err != nil {
				return err
			}
			total := len(s.Cells())
			if total == 0 {
				return usageError{errors.New("the selection has no cell")}
			}
			which := ""
			if !cmd.Flags().Changed("cell") {
				cell = s.Cells()[0].ID
				if total > 1 {
					which = fmt.Sprintf(" (the first of the %d selected; --cell picks another)", total)
				}
			}
			if err := s.SelectCell(cell); err != nil {
				return err
			}
			if err := sel.checkKernels(s); err != nil {
				return err
			}
			out, ok := stdout.(*os.File)
			if !ok {
				return usageError{errors.New("nfslab demo writes to a terminal (or a file), not to a buffer")}
			}
			// All input is valid: from here on, things are created.
			cacheDir, err := sel.cache()
			if err != nil {
				return err
			}
			runID := runstate.NewID(time.Now())
			release, err := registerRun(runID, "demo", cacheDir, "")
			if err != nil {
				return err
			}
			defer release()
			// Closing the terminal ends the demo like an interrupt: everything is removed.
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGHUP)
			defer stop()
			fmt.Fprintf(stdout, "nfslab: demo %s: cell %s%s\n", runID, cell, which)
			rc, err := lab.Demo(ctx, lab.DemoOptions{
				Options: lab.Options{
					Scenario: s, CacheDir: cacheDir, Accel: sel.accel, Style: g.style(stdout), Log: g.logger(stderr), RunID: runID,
				},
				In: os.Stdin, Out: out, Term: os.Getenv("TERM"),
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "nfslab: demo %s done: %s %s (expected %s); the lab is torn down\n", runID, rc.ID, rc.Verdict, rc.Expected)
			if !rc.Pass {
				return exitError{exitMismatch}
			}
			return nil
		},
	}
	f := cmd.Flags()
	sel.addFlags(f)
	f.StringVar(&cell, "cell", "", "the cell to show (kernel/datapath/nfs/fault, as nfslab matrix lists them); default: the first of the selection")
	return cmd
}

func newDemoNextCmd(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:    agent.DemoNextCommand,
		Short:  "Take the demo's next step (nfslab-next in the demo's shell)",
		Hidden: true,
		RunE: func(_ *cobra.Command, args []string) error {
			return agent.DemoNextMain(stdout, args)
		},
	}
}
