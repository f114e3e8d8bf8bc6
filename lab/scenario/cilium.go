package scenario

import (
	"fmt"
	"slices"

	"github.com/nfslab/nfslab/lab/datapath/cilium"
)

// CiliumVersion is the Cilium release the scenario's Cilium cells install: cilium.version, else
// the newest nfslab can build.
func (s *Scenario) CiliumVersion() string {
	if s.Cilium.Version != "" {
		return s.Cilium.Version
	}
	return cilium.DefaultVersion()
}

// validateCilium checks the Cilium datapaths as they will run: a version nfslab can build, and
// the ones whose socket-LB attaches at the VM's root cgroup on a one-node cluster (the kind form
// alone is validateForms').
func (s *Scenario) validateCilium(p *problems) {
	var used []int
	for i, d := range s.Matrix.Datapaths {
		if cilium.IsDatapath(d) {
			used = append(used, i)
		}
	}
	if v := s.Cilium.Version; v != "" {
		if len(used) == 0 {
			p.add("cilium.version", fmt.Sprintf("applies to Cilium datapaths, and matrix.datapaths is %v: add one (%s), or remove cilium.version",
				s.Matrix.Datapaths, orList(cilium.Datapaths())))
		} else if err := cilium.CheckVersion(v); err != nil {
			p.add("cilium.version", err.Error())
		}
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
