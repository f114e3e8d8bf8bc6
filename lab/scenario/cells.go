package scenario

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nfslab/nfslab/lab/smb"
)

// Cells expands the matrix into its cells, in a stable order: kernel outermost, then datapath,
// protocol, version and fault. Each cell expects the verdict of the first rule that matches it, else
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

// combo is one combination of the matrix's axes.
type combo struct {
	kernel, label, datapath, protocol, version, fault string
}

func (c combo) id() string {
	return c.label + "/" + c.datapath + "/" + c.version + "/" + c.fault
}

// combos lists the matrix's combinations in cell order: kernel outermost, then datapath,
// protocol, its versions (NFS cells: matrix.nfs; an SMB cell: smb3) and fault.
func (s *Scenario) combos() []combo {
	labels, _ := kernelLabels(s.Matrix.Kernels)
	var out []combo
	for ki, k := range s.Matrix.Kernels {
		for _, d := range s.Matrix.Datapaths {
			for _, proto := range s.Matrix.Protocols {
				versions := s.Matrix.NFS
				if proto == ProtocolSMB {
					versions = []string{smb.Dialect}
				}
				for _, v := range versions {
					for _, f := range s.Matrix.Faults {
						out = append(out, combo{kernel: k, label: labels[ki], datapath: d, protocol: proto, version: v, fault: f})
					}
				}
			}
		}
	}
	return out
}

// allCells expands the whole matrix, ignoring SelectCell.
func (s *Scenario) allCells() []Cell {
	var cells []Cell
	for _, c := range s.combos() {
		cell := Cell{
			Index:        len(cells),
			ID:           c.id(),
			Kernel:       c.kernel,
			Datapath:     c.datapath,
			Protocol:     c.protocol,
			NFS:          c.version,
			Fault:        c.fault,
			Expected:     s.expected(c),
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
		}
		if c.protocol == ProtocolSMB {
			cell.MountOptions = slices.Clone(s.Mount.SMBOptions)
			cell.Port = smb.Port
		}
		cells = append(cells, cell)
	}
	return cells
}

func (s *Scenario) expected(c combo) string {
	for _, r := range s.Expect.Rules {
		if r.Match.matches(c) {
			return r.Verdict
		}
	}
	return s.Expect.Default
}

// matches reports whether a combination's axis values satisfy m. A kernel is matched by the
// value written in the matrix, by its cleaned path, or by its label in cell IDs.
func (m Match) matches(c combo) bool {
	kernelOK := m.Kernel == "" || m.Kernel == c.kernel || m.Kernel == c.label ||
		(IsKernelPath(m.Kernel) && IsKernelPath(c.kernel) && filepath.Clean(m.Kernel) == filepath.Clean(c.kernel))
	return kernelOK &&
		(m.Datapath == "" || m.Datapath == c.datapath) &&
		(m.Protocol == "" || m.Protocol == c.protocol) &&
		(m.NFS == "" || m.NFS == c.version) &&
		(m.Fault == "" || m.Fault == c.fault)
}

// Warnings lists things that are valid but probably not meant: rules that match no cell of
// the matrix (they apply once --kernel or --datapath brings the value in), and rules that
// only match cells an earlier rule already took.
func (s *Scenario) Warnings() []string {
	var out []string
	taken := map[string]bool{}
	combos := s.combos()
	for i, r := range s.Expect.Rules {
		hit, fresh := false, false
		for _, c := range combos {
			if !r.Match.matches(c) {
				continue
			}
			hit = true
			if id := c.id(); !taken[id] {
				fresh = true
				taken[id] = true
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
