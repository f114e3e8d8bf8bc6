package scenario

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/nfslab/nfslab/lab/fault"
	"github.com/nfslab/nfslab/lab/kernel"
	"github.com/nfslab/nfslab/lab/verdict"
)

// Axis values the lab knows.
const (
	KernelDebianStock = "debian-stock"   // Debian's packaged 6.1 kernel (carries the fixes)
	KernelVulnerable  = "vulnerable-6.1" // the same source with the kernel_connect copies reverted

)

// The cluster forms a cell can run on.
const (
	// ClusterNetns is nfslab's own stand-in for a cluster: the pods are network namespaces of the
	// VM, and the lab itself programs the Service's datapath and replaces the endpoint.
	ClusterNetns = "netns"
	// ClusterKind is a real kind cluster in the VM: the real kube-proxy (or none, for socket-LB),
	// a Deployment, a Service and the EndpointSlices its controllers write.
	ClusterKind = "kind"
)

// Clusters lists the cluster forms.
func Clusters() []string { return []string{ClusterNetns, ClusterKind} }

// KindNFSVersions are the NFS versions the kind form mounts: NFSv4 only, as NFSv3 needs rpcbind,
// which the kind form does not run yet.
func KindNFSVersions() []string { return []string{"4.0", "4.1", "4.2"} }

// The protocols a scenario can mount.
const (
	ProtocolNFS = "nfs"
	ProtocolSMB = "smb"
)

// Protocols lists them.
func Protocols() []string { return []string{ProtocolNFS, ProtocolSMB} }

// Defaults applied by Parse to fields a file leaves empty.
const (
	DefaultVIP      = "10.96.0.50"
	DefaultPort     = 2049
	DefaultNodeCIDR = "10.0.0.1/24"
	DefaultBackendA = "10.0.0.11"
	DefaultBackendB = "10.0.0.12"
	DefaultCluster  = ClusterNetns
	DefaultNFS      = "4.1"
	DefaultFault    = fault.DeletePod
	// DefaultKindNodes is a kind cluster's node count unless kind.nodes says otherwise.
	DefaultKindNodes = 1
	DefaultExpect    = string(verdict.Recovered)
	DefaultRecovery  = 60 * time.Second
	// MaxNoEndpointWindow bounds failover.noEndpointWindow and failover.staleEndpoint.
	MaxNoEndpointWindow = 10 * time.Minute
	DefaultProbe        = 5 * time.Second
	DefaultSetup        = 30 * time.Second
	// DefaultKindSetup is the setup default of kind cells: under TCG emulation a pod takes 45–85 s
	// to start.
	DefaultKindSetup = 4 * time.Minute
	// DefaultCiliumSetup is the setup default of real Cilium's cells: before the first pod starts
	// the agent compiles that pod's datapath with clang, many minutes under TCG.
	DefaultCiliumSetup = 15 * time.Minute
)

// KnownKernels returns the kernel names a scenario may use besides a path to a kernel image:
// Debian's stock kernel lines and the recipes the lab knows how to build.
func KnownKernels() []string { return kernel.Names() }

// What socket-LB does with a connect to a VIP without endpoints.
const (
	NoBackendRefuse = "refuse"
	NoBackendPass   = "pass"
)

// IsKernelPath reports whether a kernel value names a file rather than a known kernel: it
// contains a slash, or its name starts or ends with bzImage or vmlinuz. Whether the file
// exists is checked by the runner, not here.
func IsKernelPath(k string) bool {
	if strings.ContainsAny(k, `/\`) {
		return true
	}
	for _, w := range []string{"bzImage", "vmlinuz"} {
		if strings.HasPrefix(k, w) || strings.HasSuffix(k, w) {
			return true
		}
	}
	return false
}

// MarshalJSON writes d as a Go duration string ("1m0s").
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a Go duration string ("60s", "1m30s"). Plain numbers are refused: a
// unit-less timeout is too easy to get wrong.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration such as \"60s\", got %s", b)
	}
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: want e.g. \"60s\" or \"1m30s\"", s)
	}
	return v, nil
}

// kernelLabels names each kernel in cell IDs: a known kernel by its name, a path by its file
// name, or by as many trailing path elements (joined with "_") as it takes to tell paths with
// the same file name apart. ok is false when two kernels cannot be told apart.
func kernelLabels(kernels []string) (labels []string, ok bool) {
	elems := make([][]string, len(kernels))
	depth := make([]int, len(kernels))
	labels = make([]string, len(kernels))
	for i, k := range kernels {
		if !IsKernelPath(k) {
			labels[i] = k
			continue
		}
		for _, e := range strings.Split(filepath.ToSlash(filepath.Clean(k)), "/") {
			if e != "" && e != "." {
				elems[i] = append(elems[i], e)
			}
		}
		if len(elems[i]) == 0 { // "/" or "."
			elems[i] = []string{k}
		}
		depth[i] = 1
		labels[i] = suffix(elems[i], 1)
	}
	for {
		count := map[string]int{}
		for _, l := range labels {
			count[l]++
		}
		grew, clash := false, false
		for i := range kernels {
			if count[labels[i]] < 2 {
				continue
			}
			clash = true
			if depth[i] > 0 && depth[i] < len(elems[i]) {
				depth[i]++
				labels[i] = suffix(elems[i], depth[i])
				grew = true
			}
		}
		if !clash {
			return labels, true
		}
		if !grew {
			return labels, false
		}
	}
}

func suffix(elems []string, n int) string { return strings.Join(elems[len(elems)-n:], "_") }

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// orList renders a, b or c.
func orList(vs []string) string {
	switch len(vs) {
	case 0:
		return ""
	case 1:
		return vs[0]
	}
	return strings.Join(vs[:len(vs)-1], ", ") + " or " + vs[len(vs)-1]
}

// suggest returns a known value close to v (same letters in another case, or at most two
// edits away), for "did you mean" hints.
func suggest(v string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if strings.EqualFold(k, v) {
			return k
		}
		if d := editDistance(strings.ToLower(v), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func didYouMean(v string, known []string) string {
	if s := suggest(v, known); s != "" {
		return fmt.Sprintf(" (did you mean %q?)", s)
	}
	return ""
}

// editDistance is the Levenshtein distance, capped for long inputs.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > 64 || len(rb) > 64 {
		return 64
	}
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
