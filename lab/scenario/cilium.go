package scenario

import (
	"fmt"
	"slices"

	"github.com/nfslab/nfslab/lab/datapath/cilium"
)

// CiliumVersions are the Cilium releases the scenario's Cilium cells install, one cell each:
// cilium.versions, else the newest nfslab can build.
func (s *Scenario) CiliumVersions() []string {
	if len(s.Cilium.Versions) > 0 {
		return s.Cilium.Versions
	}
	return []string{cilium.DefaultVersion()}
}

// validateCilium checks the Cilium datapaths as they will run: versions nfslab can build, each
// once, and the datapaths whose socket-LB attaches at the VM's root cgroup on a one-node
// cluster (the kind form alone is validateForms').
func (s *Scenario) validateCilium(p *problems) {
	var used []int
	for i, d := range s.Matrix.Datapaths {
		if cilium.IsDatapath(d) {
			used = append(used, i)
		}
	}
	if len(s.Cilium.Versions) > 0 && len(used) == 0 {
		p.add("cilium.versions", fmt.Sprintf("apply to Cilium datapaths, and matrix.datapaths is %v: add one (%s), or remove cilium.versions",
			s.Matrix.Datapaths, orList(cilium.Datapaths())))
	}
	if len(s.Cilium.Versions) > 0 {
		axis(p, "cilium.versions", s.Cilium.Versions, ciliumVersionProblem)
	}
	if n := s.kindNodes(); n > 1 && slices.Contains(s.Matrix.Clusters, ClusterKind) {
		for _, i := range used {
			if d := s.Matrix.Datapaths[i]; cilium.SharesRootCgroup(d) {
				p.add("kind.nodes", fmt.Sprintf("%d: matrix.datapaths[%d] %q attaches Cilium's socket-LB at the VM's root cgroup, which every node shares: two agents there would stack their programs; use kind.nodes: 1, or %s",
					n, i, d, cilium.KindCgroup))
			}
		}
	}
}

// ciliumVersionProblem describes why v is not a Cilium version nfslab can build ("" if it is).
func ciliumVersionProblem(v string) string {
	if err := cilium.CheckVersion(v); err != nil {
		return err.Error()
	}
	return ""
}

// ciliumVersionsOf are the Cilium versions a cell of datapath d takes: the scenario's, for a
// Cilium datapath; one empty version for any other.
func (s *Scenario) ciliumVersionsOf(d string) []string {
	if cilium.IsDatapath(d) {
		return s.CiliumVersions()
	}
	return []string{""}
}
