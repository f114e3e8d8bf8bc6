// Package cilium is real Cilium as a datapath of the kind form (issue #16): Cilium's own agent in
// the kind cluster, installed from its Helm chart, in place of kube-proxy or nfslab's socket-LB.
//
//   - the datapaths' names and what each one means (Datapaths, VMRoot, SharesRootCgroup), and
//     which programs each must leave at the VM's root cgroup (CheckRootPrograms);
//   - the Cilium versions nfslab can build (Versions, CheckVersion), kept here and nowhere else;
//   - the Helm values nfslab owns for each datapath (Required) and a user's values file, checked
//     against them (ParseValues) and merged under them (Merge);
//   - in chart/, the chart of a version, fetched through the Go module proxy and cached, and
//     rendered client-side into the manifests an install applies;
//   - in build/, the agent, operator and helpers of a version compiled from its Go module; the
//     kind node image preloads their images (lab/cluster/kind/nodeimage, Extras);
//   - the install, run by the agent in the VM on a new kind cluster (lab/cluster/kind): the
//     rendered objects applied with server-side apply (Apply), the wait for the agent to come up
//     (WaitReady) and for its datapath (WaitDatapath), and what it then says of itself and of a
//     service (AgentStatus, ServiceBackends).
//
// A scenario's kind cells with one of these datapaths run on such a cluster, one cluster per
// datapath and version (lab/agent).
package cilium

import (
	"fmt"
	"slices"
	"strings"
)

// The Cilium datapaths. Three replace kube-proxy with Cilium's (kubeProxyReplacement), which
// always turns socket-LB on (Cilium's agent sets bpf-lb-sock whatever socketLB.enabled says);
// the fourth, Cilium without socket-LB, is Cilium beside kube-proxy.
const (
	// VMRootSocketLB is the cilium/cilium#21541 setup: socket-LB attached at the VM's root
	// cgroup (cgroup.hostRoot is the VM's cgroup2 root, mounted into the node), so that it sees
	// the sockets the kernel opens for NFS.
	VMRootSocketLB = "cilium"
	// KindCgroup is Cilium's own cgroup handling in kind: the agent mounts cgroup2 itself
	// (cgroup.autoMount) inside the node container, below the VM's root.
	KindCgroup = "cilium-kind-cgroup"
	// NoSocketLB is Cilium as the cluster's network beside kube-proxy (iptables mode), without
	// its kube-proxy replacement and socket-LB (kubeProxyReplacement=false,
	// socketLB.enabled=false): the node's traffic to a ClusterIP is translated per packet by
	// kube-proxy, as in the setups where #21541's NFS mounts worked.
	NoSocketLB = "cilium-no-socket-lb"
	// HostNSOnly is socket-LB in the host network namespace only
	// (socketLB.hostNamespaceOnly=true, as for Istio), at the VM's root cgroup.
	HostNSOnly = "cilium-hostns-only"
)

// Datapaths lists the Cilium datapaths.
func Datapaths() []string { return []string{VMRootSocketLB, KindCgroup, NoSocketLB, HostNSOnly} }

// IsDatapath reports whether name is one of the Cilium datapaths.
func IsDatapath(name string) bool { return slices.Contains(Datapaths(), name) }

// ReplacesKubeProxy reports whether the datapath's Cilium replaces kube-proxy (the cluster has
// none); the others run beside kube-proxy in iptables mode.
func ReplacesKubeProxy(datapath string) bool { return IsDatapath(datapath) && datapath != NoSocketLB }

// KubeProxyMode is the kube-proxy mode of a cluster with the Cilium datapath: "none" where
// Cilium replaces it, else "iptables" (kube-proxy's default).
func KubeProxyMode(datapath string) string {
	if ReplacesKubeProxy(datapath) {
		return "none"
	}
	return "iptables"
}

// VMRoot reports whether the datapath's agent is given the VM's cgroup2 root
// (cgroup.hostRoot) rather than mounting cgroup2 itself.
func VMRoot(datapath string) bool { return IsDatapath(datapath) && datapath != KindCgroup }

// SharesRootCgroup reports whether the datapath's agent attaches socket-LB programs at the
// VM's root cgroup, which every node container shares: two agents there would stack their
// programs, so such a datapath runs on a one-node cluster only.
func SharesRootCgroup(datapath string) bool {
	return datapath == VMRootSocketLB || datapath == HostNSOnly
}

// Versions lists the Cilium versions nfslab can build, newest first: those whose whole module
// graph the Go module proxy serves. (v1.20.x and v1.18.4–v1.18.11 replace modules with forks
// the proxy does not serve.) This is the one list of them.
func Versions() []string { return []string{"v1.19.7", "v1.18.3", "v1.17.8", "v1.15.19"} }

// DefaultVersion is the newest version nfslab can build.
func DefaultVersion() string { return Versions()[0] }

// VersionError is a Cilium version nfslab cannot build: bad input.
type VersionError struct{ Version string }

func (e *VersionError) Error() string {
	hint := ""
	if !strings.HasPrefix(e.Version, "v") && slices.Contains(Versions(), "v"+e.Version) {
		hint = fmt.Sprintf(" (did you mean %q?)", "v"+e.Version)
	}
	return fmt.Sprintf("%q is not a Cilium version nfslab can build%s: want %s (the versions whose modules the Go module proxy serves)",
		e.Version, hint, orList(Versions()))
}

// CheckVersion returns a *VersionError, which names the versions nfslab can build, when v is not
// one of them.
func CheckVersion(v string) error {
	if slices.Contains(Versions(), v) {
		return nil
	}
	return &VersionError{Version: v}
}

// orList renders a, b or c.
func orList(vs []string) string {
	if len(vs) < 2 {
		return strings.Join(vs, "")
	}
	return strings.Join(vs[:len(vs)-1], ", ") + " or " + vs[len(vs)-1]
}

// AgentImage and OperatorImage are the references of a version's images in nfslab's node
// image, where they are preloaded (the chart's image.override and operator.image.override):
// nothing is pulled.
func AgentImage(version string) string    { return "nfslab.local/cilium:" + version }
func OperatorImage(version string) string { return "nfslab.local/cilium-operator-generic:" + version }

// rootProgramPrefix begins the names of Cilium's socket-LB programs as the kernel reports them
// (cil_sock4_connect, cil_sock4_sendmsg, …; truncated to 15 characters).
const rootProgramPrefix = "cil_sock"

// CheckRootPrograms checks the names of the sock_addr programs effective at the VM's root cgroup
// against the datapath: Cilium's socket-LB there alone for the datapaths that attach it there
// (SharesRootCgroup), and no program at all for the others — socket-LB off, or attached at the
// node container's cgroup (KindCgroup), below the root, where the kernel's own sockets are not.
func CheckRootPrograms(datapath string, names []string) error {
	var cil, other []string
	for _, n := range names {
		if strings.HasPrefix(n, rootProgramPrefix) {
			cil = append(cil, n)
		} else {
			other = append(other, n)
		}
	}
	switch {
	case len(other) > 0:
		return fmt.Errorf("programs other than Cilium's are in effect at the VM's root cgroup: %s", strings.Join(other, ", "))
	case SharesRootCgroup(datapath) && len(cil) == 0:
		return fmt.Errorf("%s attaches Cilium's socket-LB at the VM's root cgroup, and no program of Cilium's is in effect there", datapath)
	case !SharesRootCgroup(datapath) && len(cil) > 0:
		return fmt.Errorf("%s must leave the VM's root cgroup alone, and Cilium's %s are in effect there", datapath, strings.Join(cil, ", "))
	}
	return nil
}
