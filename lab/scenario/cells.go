package scenario

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/smb"
)

// Cells expands the matrix into its cells, in a stable order: kernel outermost, then cluster,
// datapath, Cilium version, protocol, version and fault; a combination its cluster form lacks is left out. Each cell expects the verdict (and the reason, if the rule names one) of the first rule that matches it, else
// expect.default. After SelectCell, only the selected cell is returned, with Index 0 and the
// ID and expectation it has in the whole matrix. Call it on a validated scenario.
func (s *Scenario) Cells() []Cell {
	cells := s.AllCells()
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
	cells := s.AllCells()
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

// Hash identifies the scenario's contents: "sha256:" and the hex digest of its JSON form, with
// the defaults applied and after Filter (SelectCell does not change it). Runs of one scenario
// file with the same --kernel, --cluster and --datapath have the same hash, whichever cell each
// ran; a change to the file (an expectation, a timeout, the matrix) changes it.
// It is "" if the scenario cannot be encoded, which a parsed scenario always can: a result
// without a hash is one nfslab report merge refuses.
func (s *Scenario) Hash() string {
	b, err := json.Marshal(s)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// combo is one combination of the matrix's axes.
type combo struct {
	kernel, label, cluster, datapath, protocol, version, fault string
	cilium                                                     string // a Cilium datapath's version
}

// id is kernel/datapath/version/fault for a netns cell (as before kind cells existed), and
// kernel/kind/datapath/version/fault for a kind cell; a Cilium datapath is written with its
// Cilium version, as cilium@v1.19.7.
func (c combo) id() string {
	id := c.label + "/"
	if c.cluster != ClusterNetns {
		id += c.cluster + "/"
	}
	d := c.datapath
	if c.cilium != "" {
		d += "@" + c.cilium
	}
	return id + d + "/" + c.version + "/" + c.fault
}

// combos lists the matrix's combinations in cell order: kernel outermost, then cluster,
// datapath, its Cilium versions (a Cilium datapath), protocol, its versions (NFS cells:
// matrix.nfs; an SMB cell: smb3) and fault, each axis narrowed to the values the cluster's form
// has.
func (s *Scenario) combos() []combo {
	labels, _ := kernelLabels(s.Matrix.Kernels)
	var out []combo
	for ki, k := range s.Matrix.Kernels {
		for _, cl := range s.Matrix.Clusters {
			m := formOf(cl).keep(s.Matrix)
			for _, d := range m.Datapaths {
				for _, cv := range s.ciliumVersionsOf(d) {
					for _, proto := range m.Protocols {
						versions := m.NFS
						if proto == ProtocolSMB {
							versions = []string{smb.Dialect}
						}
						for _, v := range versions {
							for _, f := range m.Faults {
								out = append(out, combo{kernel: k, label: labels[ki], cluster: cl, datapath: d, cilium: cv, protocol: proto, version: v, fault: f})
							}
						}
					}
				}
			}
		}
	}
	return out
}

// AllCells expands the whole matrix, ignoring SelectCell: the cells a run of the scenario is
// expected to have, whichever of them one run ran.
func (s *Scenario) AllCells() []Cell {
	var cells []Cell
	for _, c := range s.combos() {
		cell := Cell{
			Index:        len(cells),
			ID:           c.id(),
			Kernel:       c.kernel,
			Cluster:      c.cluster,
			Datapath:     c.datapath,
			Protocol:     c.protocol,
			NFS:          c.version,
			Fault:        c.fault,
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
		cell.Expected, cell.ExpectedReason = s.expected(c)
		if c.cluster == ClusterKind {
			cell.Nodes = s.kindNodes()
		}
		cell.Cilium = c.cilium
		if c.protocol == ProtocolSMB {
			cell.MountOptions = slices.Clone(s.Mount.SMBOptions)
			cell.Port = smb.Port
		}
		if cell.Timeouts.Setup.Duration == 0 {
			cell.Timeouts.Setup.Duration = DefaultSetup
			switch {
			case cilium.IsDatapath(c.datapath):
				cell.Timeouts.Setup.Duration = DefaultCiliumSetup
			case c.cluster == ClusterKind:
				cell.Timeouts.Setup.Duration = DefaultKindSetup
			}
		}
		cells = append(cells, cell)
	}
	return cells
}

// expected is the verdict and the reason code the first matching rule gives, else the default
// verdict, with no reason required.
func (s *Scenario) expected(c combo) (verdict, reason string) {
	for _, r := range s.Expect.Rules {
		if r.Match.matches(c) {
			return r.Verdict, r.Reason
		}
	}
	return s.Expect.Default, ""
}

// matches reports whether a combination's axis values satisfy m. A kernel is matched by the
// value written in the matrix, by its cleaned path, or by its label in cell IDs.
func (m Match) matches(c combo) bool {
	kernelOK := m.Kernel == "" || m.Kernel == c.kernel || m.Kernel == c.label ||
		(IsKernelPath(m.Kernel) && IsKernelPath(c.kernel) && filepath.Clean(m.Kernel) == filepath.Clean(c.kernel))
	return kernelOK &&
		(m.Cluster == "" || m.Cluster == c.cluster) &&
		(m.Datapath == "" || m.Datapath == c.datapath) &&
		(m.Protocol == "" || m.Protocol == c.protocol) &&
		(m.NFS == "" || m.NFS == c.version) &&
		(m.Fault == "" || m.Fault == c.fault) &&
		(m.Cilium == "" || m.Cilium == c.cilium)
}

// Warnings lists things that are valid but probably not meant: rules that match no cell of
// the matrix (they apply once --kernel, --cluster or --datapath brings the value in), and rules that
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

// Override holds the axes given on the command line, each replacing the matrix's list; a nil
// or empty list leaves that axis alone.
type Override struct {
	Kernels   []string // --kernel
	Clusters  []string // --cluster
	Datapaths []string // --datapath
}

// Filter replaces the kernel, cluster and datapath axes with the values given on the command
// line. The values are checked like the file's, and the whole scenario is validated again; on
// error s is unchanged.
func (s *Scenario) Filter(o Override) error {
	next := *s
	var p problems
	for _, a := range []struct {
		flag   string
		values []string
		check  func(string) string
		axis   *[]string
	}{
		{"--kernel", o.Kernels, kernelProblem, &next.Matrix.Kernels},
		{"--cluster", o.Clusters, clusterProblem, &next.Matrix.Clusters},
		{"--datapath", o.Datapaths, datapathProblem, &next.Matrix.Datapaths},
	} {
		if len(a.values) > 0 {
			axis(&p, a.flag, a.values, a.check)
			*a.axis = slices.Clone(a.values)
		}
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
