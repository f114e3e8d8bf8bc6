package scenario

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nfslab/nfslab/lab/datapath"
	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/fault"
	"github.com/nfslab/nfslab/lab/nfs"
)

// form is what one cluster form runs: the values it has on each axis that depends on it. Every
// kernel boots either form; a combination of values the form lacks is not a cell.
type form struct {
	cluster                                string
	datapaths, protocols, versions, faults []string
	// lacks says, per matrix field, why a value of that field is missing from the form.
	lacks map[string]string
}

func formOf(cluster string) form {
	if cluster == ClusterKind {
		return form{
			cluster:   ClusterKind,
			datapaths: append(datapath.Names(), cilium.Datapaths()...),
			protocols: []string{ProtocolNFS},
			versions:  KindNFSVersions(),
			faults:    fault.KindNames(),
			lacks: map[string]string{
				"matrix.protocols": "the kind form serves NFS only",
				"matrix.nfs":       "NFSv3 needs rpcbind, which the kind form does not run yet",
				"matrix.faults":    "the kind form's faults go through the Kubernetes API",
			},
		}
	}
	return form{
		cluster:   ClusterNetns,
		datapaths: datapath.NetnsNames(),
		protocols: Protocols(),
		versions:  nfs.Versions(),
		faults:    fault.NetnsNames(),
		lacks: map[string]string{
			"matrix.datapaths": "the netns form emulates kube-proxy's iptables mode only",
			"matrix.faults":    "the netns form has no Kubernetes API to delete a pod through",
		},
	}
}

// where names the form in a sentence: "runs only <where>".
func (f form) where() string {
	if f.cluster == ClusterKind {
		return "on a kind cluster"
	}
	return "in the netns form"
}

// keep returns the part of m's datapaths, protocols, NFS versions and faults the form has.
func (f form) keep(m Matrix) Matrix {
	only := func(values, has []string) []string {
		var out []string
		for _, v := range values {
			if slices.Contains(has, v) {
				out = append(out, v)
			}
		}
		return out
	}
	return Matrix{
		Datapaths: only(m.Datapaths, f.datapaths),
		Protocols: only(m.Protocols, f.protocols),
		NFS:       only(m.NFS, f.versions),
		Faults:    only(m.Faults, f.faults),
	}
}

// formAxis is a matrix field whose values depend on the cluster form.
type formAxis struct {
	field  string
	values []string
	check  func(string) string // the value's own problem, reported elsewhere
	of     func(form) []string // the values a form has
}

func (s *Scenario) formAxes() []formAxis {
	axes := []formAxis{
		{"matrix.datapaths", s.Matrix.Datapaths, datapathProblem, func(f form) []string { return f.datapaths }},
		{"matrix.protocols", s.Matrix.Protocols, protocolProblem, func(f form) []string { return f.protocols }},
	}
	if slices.Contains(s.Matrix.Protocols, ProtocolNFS) {
		axes = append(axes, formAxis{"matrix.nfs", s.Matrix.NFS, nfsProblem, func(f form) []string { return f.versions }})
	}
	return append(axes, formAxis{"matrix.faults", s.Matrix.Faults, faultProblem, func(f form) []string { return f.faults }})
}

// listedForms returns the forms of the valid values of matrix.clusters.
func (s *Scenario) listedForms() []form {
	var listed []form
	for _, c := range s.Matrix.Clusters {
		if clusterProblem(c) == "" {
			listed = append(listed, formOf(c))
		}
	}
	return listed
}

// validateForms checks the matrix against the cluster forms it lists: every value must be one
// some listed form has, and a kernel too old for a kind cell's datapath is refused. Values
// that are invalid on their own are left to validateMatrix.
func (s *Scenario) validateForms(p *problems) {
	listed := s.listedForms()
	if len(listed) == 0 {
		return
	}
	for _, a := range s.formAxes() {
		for i, v := range a.values {
			if a.check(v) == "" {
				if msg := a.lackedBy(listed, v); msg != "" {
					p.add(fmt.Sprintf("%s[%d]", a.field, i), msg)
				}
			}
		}
	}
	s.validateKindKernels(p)
}

// validateNotEmpty refuses a matrix whose every value some listed form has, but no form has a
// whole combination of them (kube-proxy-ipvs with node-crash, say). Call it only on axes
// without other problems.
func (s *Scenario) validateNotEmpty(p *problems) {
	if len(s.combos()) > 0 {
		return
	}
	var why []string
	for _, f := range s.listedForms() {
		field, has := f.empty(s.Matrix)
		why = append(why, fmt.Sprintf("%s none of %s runs (it has %s)", f.where(), field, strings.Join(has, ", ")))
	}
	p.add("matrix", "expands to no cell: "+strings.Join(why, "; "))
}

// lackedBy returns why no listed form runs v, or "" when one does.
func (a formAxis) lackedBy(listed []form, v string) string {
	var reasons []string
	for _, f := range listed {
		if slices.Contains(a.of(f), v) {
			return ""
		}
		if r := f.lacks[a.field]; r != "" && !slices.Contains(reasons, r) {
			reasons = append(reasons, r)
		}
	}
	why := ""
	if len(reasons) > 0 {
		why = " (" + strings.Join(reasons, "; ") + ")"
	}
	for _, c := range Clusters() {
		if f := formOf(c); slices.Contains(a.of(f), v) {
			return fmt.Sprintf("%q runs only %s%s: add %s to matrix.clusters", v, f.where(), why, c)
		}
	}
	return fmt.Sprintf("%q runs in no cluster form%s", v, why)
}

// empty names the first axis on which the form keeps none of m's values, and the values it has
// there.
func (f form) empty(m Matrix) (field string, has []string) {
	k := f.keep(m)
	switch {
	case len(k.Datapaths) == 0:
		return "matrix.datapaths", f.datapaths
	case len(k.Protocols) == 0:
		return "matrix.protocols", f.protocols
	case len(k.Faults) == 0:
		return "matrix.faults", f.faults
	}
	return "matrix.nfs", f.versions // only NFS is left, and none of its versions
}

// MinNFTablesKernel is the oldest Linux line kube-proxy's nftables mode runs on: kube-proxy
// refuses the mode on an older node (k8s.io/kubernetes pkg/util/kernel's
// NFTablesKubeProxyKernelVersion, checked in pkg/proxy/nftables/supported.go).
const MinNFTablesKernel = "5.13"

// validateKindKernels refuses kernels too old for kube-proxy-nftables when the matrix has it on
// a kind cluster. Kernels given as a path are left to the cell, whose kube-proxy refuses the
// mode itself.
func (s *Scenario) validateKindKernels(p *problems) {
	j := slices.Index(s.Matrix.Datapaths, datapath.KubeProxyNFTables)
	if j < 0 || !slices.Contains(s.Matrix.Clusters, ClusterKind) {
		return
	}
	for i, k := range s.Matrix.Kernels {
		if line, ok := kernelLine(k); ok && lineBefore(line, MinNFTablesKernel) {
			p.add(fmt.Sprintf("matrix.kernels[%d]", i), fmt.Sprintf("%q is Linux %s, and %s (matrix.datapaths[%d]) on a kind cluster needs Linux %s or later: use a newer kernel, or drop %s",
				k, line, datapath.KubeProxyNFTables, j, MinNFTablesKernel, datapath.KubeProxyNFTables))
		}
	}
}

// kernelLine is the Linux line ("5.10") of a kernel the lab knows, read from its name: every
// known kernel but Debian 12's default names its line last ("vulnerable-5.10",
// "debian-stock-6.12"). ok is false for a path, and for a name without a line.
func kernelLine(k string) (line string, ok bool) {
	if !contains(KnownKernels(), k) {
		return "", false
	}
	i := strings.LastIndexByte(k, '-')
	if i < 0 {
		return "", false
	}
	line = k[i+1:]
	if _, _, ok := parseLine(line); !ok {
		return "", false
	}
	return line, true
}

// parseLine reads "major.minor".
func parseLine(line string) (major, minor int, ok bool) {
	a, b, found := strings.Cut(line, ".")
	if !found {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(a)
	minor, err2 := strconv.Atoi(b)
	return major, minor, err1 == nil && err2 == nil
}

// lineBefore reports whether Linux line a is older than b; both are "major.minor".
func lineBefore(a, b string) bool {
	am, an, _ := parseLine(a)
	bm, bn, _ := parseLine(b)
	return am < bm || (am == bm && an < bn)
}
