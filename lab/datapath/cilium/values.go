package cilium

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Setup is what the values depend on: the kind cluster and the images nfslab provides.
type Setup struct {
	// Cluster is the kind cluster's name: the agent reaches the API server at
	// <Cluster>-control-plane:6443, since there is no kube-proxy to serve the kubernetes Service.
	Cluster string
	// PodCIDR is the cluster's pod network, routed natively between the nodes.
	PodCIDR string
	// AgentImage and OperatorImage are the images preloaded into the node (never pulled).
	AgentImage, OperatorImage string
	// CgroupRoot is where the VM's cgroup2 root is mounted in the node, for the datapaths that
	// attach there (VMRoot).
	CgroupRoot string
}

// APIServerPort is the port of kind's API server on its control-plane node.
const APIServerPort = 6443

// Required returns the Helm values nfslab sets for the datapath: the whole point of the cell
// (kube-proxy replacement, socket-LB, where its cgroup hooks attach), what a cluster without
// kube-proxy or a registry needs, and nothing a lab under TCG cannot afford (no Envoy, Hubble or
// health checking). A user's values file may not set any of them (Owned).
func Required(datapath string, s Setup) (map[string]any, error) {
	if !IsDatapath(datapath) {
		return nil, fmt.Errorf("%q is not a Cilium datapath (want %s)", datapath, orList(Datapaths()))
	}
	image := func(ref string) map[string]any {
		return map[string]any{"override": ref, "useDigest": false, "pullPolicy": "Never"}
	}
	socketLB := map[string]any{"enabled": datapath != NoSocketLB}
	if datapath == HostNSOnly {
		socketLB["hostNamespaceOnly"] = true
	}
	v := map[string]any{
		"kubeProxyReplacement":   fmt.Sprint(ReplacesKubeProxy(datapath)),
		"k8sServiceHost":         s.Cluster + "-control-plane",
		"k8sServicePort":         APIServerPort,
		"ipam":                   map[string]any{"mode": "kubernetes"},
		"routingMode":            "native",
		"ipv4NativeRoutingCIDR":  s.PodCIDR,
		"autoDirectNodeRoutes":   true,
		"envoy":                  map[string]any{"enabled": false},
		"l7Proxy":                false,
		"hubble":                 map[string]any{"enabled": false},
		"healthChecking":         false,
		"endpointHealthChecking": map[string]any{"enabled": false},
		"image":                  image(s.AgentImage),
		"operator":               map[string]any{"replicas": 1, "image": image(s.OperatorImage)},
		"socketLB":               socketLB,
		// Under TCG the agent compiles its datapath with clang for minutes before its health
		// endpoint answers: 30 minutes instead of Cilium's 10 before the kubelet restarts it.
		"startupProbe": map[string]any{"failureThreshold": 900, "periodSeconds": 2},
	}
	if VMRoot(datapath) {
		v["cgroup"] = map[string]any{"autoMount": map[string]any{"enabled": false}, "hostRoot": s.CgroupRoot}
	}
	return v, nil
}

// reserved are keys nfslab leaves at Cilium's default for some datapaths and sets for others: a
// user's file may not set them either, or the datapath would not be the one the cell names.
func reserved() []string {
	return []string{"cgroup.autoMount.enabled", "cgroup.hostRoot", "socketLB.hostNamespaceOnly"}
}

// Owned lists the dotted keys of the values nfslab owns for every Cilium datapath, sorted:
// those Required sets for any of them, and the reserved ones.
func Owned() []string {
	set := map[string]bool{}
	for _, k := range reserved() {
		set[k] = true
	}
	for _, d := range Datapaths() {
		v, _ := Required(d, Setup{})
		for _, k := range leaves(v, "") {
			set[k] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// leaves lists the dotted paths of the non-mapping values of v.
func leaves(v map[string]any, prefix string) []string {
	var out []string
	for k, x := range v {
		if m, ok := x.(map[string]any); ok {
			out = append(out, leaves(m, prefix+k+".")...)
			continue
		}
		out = append(out, prefix+k)
	}
	return out
}

// lookup reports whether the dotted key is set in v.
func lookup(v map[string]any, key string) bool {
	head, rest, nested := strings.Cut(key, ".")
	x, ok := v[head]
	if !ok || !nested {
		return ok
	}
	m, ok := x.(map[string]any)
	return ok && lookup(m, rest)
}
