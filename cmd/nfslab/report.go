package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nfslab/nfslab/lab"
	"github.com/nfslab/nfslab/reports"
)

func newReportCmd(stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "report", Short: "Work with finished runs' reports: merge cells run apart"}
	var (
		out          string
		allowPartial bool
	)
	merge := &cobra.Command{
		Use:   "merge DIR…",
		Short: "Merge the result.json of cells run apart (other machines, one CI job per cell) into one set of reports",
		Long: `Merge the results of cells of one scenario that ran apart — on other machines, or one CI job
per cell (nfslab run --cell) — into one set of reports: result.json, summary.md, report.html and
junit.xml, as if the cells had run together.

Each DIR is a run's report directory, a result.json file, or a directory whose subdirectories
hold report directories (as CI artifacts are downloaded), read in name order. Cells keep the
order of the DIRs. It is bad input (exit 2) when a result is not of this nfslab's result
schema, when the results are of different scenarios or of different contents of one (another
version of the file, other --kernel/--cluster/--datapath), when a result holds no cell, or when
one cell ID is in two results — the message names both files: merge does not pick between two
verdicts of one cell.

Every result lists all the cells of its scenario: a cell that no result holds (a job that
crashed before writing its result, an artifact that was not uploaded) is missing, and fails the
merge (exit 1, naming it) unless --allow-partial says a subset was meant; the summary then
lists the cells not run. Each cell's pass is computed again from its verdict, its reason code
and the scenario's expectation.

Exit codes are those of nfslab run: 0 every cell of the scenario is there and got its expected
verdict (and every merged run passed), 1 some did not or are missing, 2 bad input, 3 the lab
itself failed in a cell (a setup step, the VM), or the reports could not be written.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			srcs, err := reports.ReadSources(args)
			if err != nil {
				return usageError{err}
			}
			if out == "" {
				out = filepath.Join("reports", "merged-"+time.Now().UTC().Format("20060102-150405"))
			}
			for _, s := range srcs {
				if sameDir(filepath.Dir(s.Path), out) {
					return usageError{fmt.Errorf("--out %s holds %s, one of the results being merged: write the merge elsewhere", out, s.Path)}
				}
			}
			res, err := reports.Merge(srcs, reports.MergeOptions{AllowPartial: allowPartial})
			if err != nil {
				return usageError{err}
			}
			if err := writeReports(out, res); err != nil {
				return &lab.LabError{Err: err}
			}
			fmt.Fprintf(stdout, "merged %d result(s), %d cell(s)\n\n", len(srcs), len(res.Cells))
			reports.Summary(stdout, res)
			fmt.Fprintf(stdout, "\nreports: %s\n", out)
			return verdictGate(res)
		},
	}
	merge.Flags().StringVar(&out, "out", "", "where the merged reports go (default reports/merged-<time>)")
	merge.Flags().BoolVar(&allowPartial, "allow-partial", false, "accept that some of the scenario's cells have no result (a deliberate subset): they are listed as not run instead of failing the merge")
	cmd.AddCommand(merge)
	return cmd
}

// sameDir reports whether two paths name the same directory, as far as their absolute forms
// tell.
func sameDir(a, b string) bool {
	absA, errA := filepath.Abs(a)
	absB, errB := filepath.Abs(b)
	return errA == nil && errB == nil && absA == absB
}

// verdictGate is the exit status a finished result gates on: a lab error (exit 3) when the lab
// itself failed in a cell, whatever its expectation; exit 1 when the result did not pass (a cell
// did not get its expected verdict, or is missing from a merge); else nil (exit 0).
func verdictGate(res *reports.Result) error {
	var failed []string
	for _, c := range res.Cells {
		if reports.LabFailed(c) {
			failed = append(failed, c.ID+" ("+c.ReasonCode+")")
		}
	}
	if len(failed) > 0 {
		return &lab.LabError{Err: fmt.Errorf("the lab itself failed in %d cell(s), which got no verdict about the system under test: %s", len(failed), strings.Join(failed, ", "))}
	}
	if !res.Pass { // Merge fails a result with missing cells; the summary names them
		return exitError{exitMismatch}
	}
	return nil
}
