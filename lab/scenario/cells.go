package scenario

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// Cells expands the matrix into its cells, in a stable order: kernel outermost, then datapath,
// NFS version and fault. Each cell expects the verdict of the first rule that matches it, else
// expect.default. After SelectCell, only the selected cell is returned, with Index 0 and the
// ID and expectation it has in the whole matrix. Call it on a validated scenario.
func (s *Scenario) Cells() []Cell {
	cells := s.allCells()
	if s.cell == "" {
		return cells
	}
	for _, c := range cells {
		if c.ID == s.cell {
			c.Index = 0
			return []Cell{c}
		}
	}
	return nil
}

// SelectCell narrows the scenario to the one cell with this ID (nfslab run --cell); apply
// Filter first, if at all. An unknown ID is an *Error about --cell that lists the valid IDs;
// on error s is unchanged.
func (s *Scenario) SelectCell(id string) error {
	cells := s.allCells()
	ids := make([]string, len(cells))
	for i, c := range cells {
		if c.ID == id {
			s.cell = id
			return nil
		}
		ids[i] = c.ID
	}
	const shown = 20
	list := ids[:min(len(ids), shown)]
	msg := fmt.Sprintf("no cell %q in scenario %s; its cells are:\n  %s", id, s.Name, strings.Join(list, "\n  "))
	if len(ids) > shown {
		msg += fmt.Sprintf("\n  … and %d more (nfslab matrix lists them all)", len(ids)-shown)
	}
	return &Error{Problems: []Problem{{Field: "--cell", Msg: msg}}}
}

// allCells expands the whole matrix, ignoring SelectCell.
func (s *Scenario) allCells() []Cell {
	labels, _ := kernelLabels(s.Matrix.Kernels)
	var cells []Cell
	for ki, k := range s.Matrix.Kernels {
		for _, d := range s.Matrix.Datapaths {
			for _, n := range s.Matrix.NFS {
				for _, f := range s.Matrix.Faults {
					cells = append(cells, Cell{
						Index:        len(cells),
						ID:           labels[ki] + "/" + d + "/" + n + "/" + f,
						Kernel:       k,
						Datapath:     d,
						NFS:          n,
						Fault:        f,
						Expected:     s.expected(k, labels[ki], d, n, f),
						MountOptions: slices.Clone(s.Mount.Options),
						VIP:          s.Service.VIP,
						Port:         s.Service.Port,
						NodeCIDR:     s.Topology.NodeCIDR,
						BackendA:     s.Topology.BackendA,
						BackendB:     s.Topology.BackendB,
						Timeouts:     s.Timeouts,

						NoEndpointWindow:  s.Failover.NoEndpointWindow,
						StaleEndpoint:     s.Failover.StaleEndpoint,
						SocketLBNoBackend: s.Failover.SocketLBNoBackend,
					})
				}
			}
		}
	}
	return cells
}

func (s *Scenario) expected(kernel, label, datapath, nfs, fault string) string {
	for _, r := range s.Expect.Rules {
		if r.Match.matches(kernel, label, datapath, nfs, fault) {
			return r.Verdict
		}
	}
	return s.Expect.Default
}

// matches reports whether a cell's axis values satisfy m. A kernel is matched by the value
// written in the matrix, by its cleaned path, or by its label in cell IDs.
func (m Match) matches(kernel, label, datapath, nfs, fault string) bool {
	kernelOK := m.Kernel == "" || m.Kernel == kernel || m.Kernel == label ||
		(IsKernelPath(m.Kernel) && IsKernelPath(kernel) && filepath.Clean(m.Kernel) == filepath.Clean(kernel))
	return kernelOK &&
		(m.Datapath == "" || m.Datapath == datapath) &&
		(m.NFS == "" || m.NFS == nfs) &&
		(m.Fault == "" || m.Fault == fault)
}

// Warnings lists things that are valid but probably not meant: rules that match no cell of
// the matrix (they apply once --kernel or --datapath brings the value in), and rules that
// only match cells an earlier rule already took.
func (s *Scenario) Warnings() []string {
	labels, _ := kernelLabels(s.Matrix.Kernels)
	var out []string
	taken := map[string]bool{}
	for i, r := range s.Expect.Rules {
		hit, fresh := false, false
		for ki, k := range s.Matrix.Kernels {
			for _, d := range s.Matrix.Datapaths {
				for _, n := range s.Matrix.NFS {
					for _, f := range s.Matrix.Faults {
						if !r.Match.matches(k, labels[ki], d, n, f) {
							continue
						}
						hit = true
						id := labels[ki] + "/" + d + "/" + n + "/" + f
						if !taken[id] {
							fresh = true
							taken[id] = true
						}
					}
				}
			}
		}
		switch {
		case !hit:
			out = append(out, fmt.Sprintf("expect.rules[%d] matches no cell of this matrix", i))
		case !fresh:
			out = append(out, fmt.Sprintf("expect.rules[%d] only matches cells that earlier rules already decide", i))
		}
	}
	return out
}

// Filter replaces the kernel and/or datapath axis with values given on the command line
// (--kernel, --datapath); a nil or empty list leaves that axis alone. The values are checked
// like the file's, and the whole scenario is validated again; on error s is unchanged.
func (s *Scenario) Filter(kernels, datapaths []string) error {
	next := *s
	var p problems
	if len(kernels) > 0 {
		axis(&p, "--kernel", kernels, kernelProblem)
		next.Matrix.Kernels = slices.Clone(kernels)
	}
	if len(datapaths) > 0 {
		axis(&p, "--datapath", datapaths, datapathProblem)
		next.Matrix.Datapaths = slices.Clone(datapaths)
	}
	if err := p.err(""); err != nil {
		return err
	}
	if err := next.Validate(); err != nil {
		return err
	}
	*s = next
	return nil
}
