package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/scenario"
)

// ciliumImageUsage is --cilium-image's help.
const ciliumImageUsage = "Cilium's agent and operator images to run instead of nfslab's build: a docker-archive of both " +
	"(docker save -o cilium.tar quay.io/cilium/cilium:V quay.io/cilium/operator-generic:V) or the agent's image reference " +
	"the host's Docker has or pulls (its operator: operator-generic, same path and tag); the Cilium cells must be of one version, " +
	"the images' own. Unverified here (no registry); a release's agent may give up compiling its datapath under TCG (its 300 s limits)"

// checkCiliumValues checks --cilium-values FILE before anything is created, and returns its
// values: a YAML mapping of Helm values that sets none of those nfslab owns for the run's Cilium
// datapaths, and a run that has a Cilium datapath for it to apply to. Every problem is bad input
// (exit 2).
func checkCiliumValues(file string, s *scenario.Scenario) (map[string]any, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, usageError{fmt.Errorf("--cilium-values: %w", err)}
	}
	var datapaths []string
	for _, c := range s.Cells() {
		if cilium.IsDatapath(c.Datapath) && !slices.Contains(datapaths, c.Datapath) {
			datapaths = append(datapaths, c.Datapath)
		}
	}
	vals, err := cilium.ParseValues(file, data, datapaths)
	if err != nil {
		return nil, usageError{err}
	}
	if len(datapaths) == 0 {
		return nil, usageError{fmt.Errorf("--cilium-values %s: the run has no Cilium datapath (%s), so no values apply; remove the flag",
			file, strings.Join(cilium.Datapaths(), ", "))}
	}
	return vals, nil
}
