package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/scenarios"
)

// githubMaxJobs is how many jobs one GitHub Actions matrix may generate.
const githubMaxJobs = 256

// matrixEntry is one cell as a CI job sees it.
type matrixEntry struct {
	ID string `json:"id"`
	// Slug is the ID made safe for file and artifact names ([A-Za-z0-9._-]), unique within
	// the matrix.
	Slug     string `json:"slug"`
	Scenario string `json:"scenario"` // the --scenario value that names the scenario
	Kernel   string `json:"kernel"`
	Cluster  string `json:"cluster"` // netns or kind: a kind cell takes minutes, not seconds
	Datapath string `json:"datapath"`
	Cilium   string `json:"cilium,omitempty"` // a real Cilium datapath's version
	NFS      string `json:"nfs"`
	Fault    string `json:"fault"`
	Expected string `json:"expected"`
}

func newMatrixCmd(stdout io.Writer) *cobra.Command {
	var ref, output string
	cmd := &cobra.Command{
		Use:   "matrix",
		Short: "Print a scenario's cells as JSON, for a CI system to run one cell per job (nfslab run --cell)",
		Long: `Print the cells of a scenario's matrix, with their IDs and axis values, for a CI system to fan
out: one job per cell runs ` + "`nfslab run --scenario S --cell ID`" + `, and a last job joins their
report directories with ` + "`nfslab report merge`" + `.

-o github prints one line, {"include":[{…},…]}, for a GitHub Actions strategy.matrix
(fromJSON of a job output); -o json prints {"scenario":…,"cells":[{…},…]}, indented. Each
cell has id, slug (the ID safe for artifact names), scenario, kernel, cluster (netns or
kind), datapath, cilium (a real Cilium datapath's version), nfs, fault and expected.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if output != "github" && output != "json" {
				return usageError{fmt.Errorf("-o %q: want github or json", output)}
			}
			s, err := scenario.Load(ref, scenarios.FS)
			if err != nil {
				return err
			}
			entries := matrixEntries(ref, s.Cells())
			if output == "github" {
				if len(entries) > githubMaxJobs {
					return usageError{fmt.Errorf("scenario %s has %d cells; a GitHub Actions matrix takes at most %d jobs: split the scenario", s.Name, len(entries), githubMaxJobs)}
				}
				return writeJSONLine(stdout, struct {
					Include []matrixEntry `json:"include"`
				}{entries})
			}
			b, err := json.MarshalIndent(struct {
				Scenario string        `json:"scenario"`
				Cells    []matrixEntry `json:"cells"`
			}{s.Name, entries}, "", "  ")
			if err != nil {
				return fmt.Errorf("print the matrix: %w", err)
			}
			_, err = fmt.Fprintf(stdout, "%s\n", b)
			return err
		},
	}
	cmd.Flags().StringVar(&ref, "scenario", "default", "built-in scenario name or path to a scenario file")
	cmd.Flags().StringVarP(&output, "output", "o", "json", "github (a strategy.matrix, one line) or json")
	return cmd
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("print the matrix: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// matrixEntries lists the cells for CI, with slugs made unique by their index where two IDs
// would otherwise share one.
func matrixEntries(ref string, cells []scenario.Cell) []matrixEntry {
	entries := make([]matrixEntry, 0, len(cells))
	count := map[string]int{}
	for _, c := range cells {
		count[slug(c.ID)]++
	}
	for i, c := range cells {
		sl := slug(c.ID)
		if count[sl] > 1 {
			sl += "-" + strconv.Itoa(i)
		}
		entries = append(entries, matrixEntry{
			ID: c.ID, Slug: sl, Scenario: ref, Kernel: c.Kernel, Cluster: c.Cluster, Datapath: c.Datapath, Cilium: c.Cilium, NFS: c.NFS, Fault: c.Fault, Expected: c.Expected,
		})
	}
	return entries
}

// slug keeps letters, digits, '.', '-' and '_' of id and turns anything else into '_'.
func slug(id string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			return r
		}
		return '_'
	}, id)
}
