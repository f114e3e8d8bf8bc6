package kernel

import (
	"fmt"
	"os"
	"strings"

	"github.com/nfslab/nfslab/lab/kernel/recipe"
)

// Feature is a kernel capability the lab needs, with the config options that provide it (any
// one of them, built in or as a module).
type Feature struct {
	What    string
	Options []string
}

// RequiredFeatures are what every cell needs from the kernel under test.
func RequiredFeatures() []Feature {
	return []Feature{
		{"initramfs", []string{"CONFIG_BLK_DEV_INITRD"}},
		{"devtmpfs", []string{"CONFIG_DEVTMPFS"}},
		{"tmpfs (the export)", []string{"CONFIG_TMPFS"}},
		{"virtio PCI (the host channel)", []string{"CONFIG_VIRTIO_PCI"}},
		{"virtio console (the host channel)", []string{"CONFIG_VIRTIO_CONSOLE"}},
		{"network namespaces (pods)", []string{"CONFIG_NET_NS"}},
		{"veth (pods)", []string{"CONFIG_VETH"}},
		{"bridge (the node)", []string{"CONFIG_BRIDGE"}},
		{"dummy device (service CIDR)", []string{"CONFIG_DUMMY"}},
		{"NFS client", []string{"CONFIG_NFS_FS"}},
		{"NFSv4 client", []string{"CONFIG_NFS_V4"}},
		{"NFSv4.1 client", []string{"CONFIG_NFS_V4_1"}},
		{"BPF syscall (socket-LB)", []string{"CONFIG_BPF_SYSCALL"}},
		{"cgroup BPF (socket-LB)", []string{"CONFIG_CGROUP_BPF"}},
		{"iptables NAT (kube-proxy)", []string{"CONFIG_IP_NF_NAT", "CONFIG_NFT_COMPAT"}},
	}
}

// KindFeatures are what the kind form needs on top of RequiredFeatures: a Docker engine on an
// ext4 disk, kind's nodes as its containers (cgroup v2 controllers, seccomp, br_netfilter), and
// kube-proxy's ipvs and nftables modes.
func KindFeatures() []Feature {
	return []Feature{
		{"virtio block device (the Docker disk)", []string{"CONFIG_VIRTIO_BLK"}},
		{"ext4 (the Docker disk)", []string{"CONFIG_EXT4_FS"}},
		{"overlayfs (Docker's overlay2 storage)", []string{"CONFIG_OVERLAY_FS"}},
		{"memory cgroup controller (containers)", []string{"CONFIG_MEMCG"}},
		{"pids cgroup controller (containers)", []string{"CONFIG_CGROUP_PIDS"}},
		{"cpuset cgroup controller (the kubelet)", []string{"CONFIG_CPUSETS"}},
		{"CPU cgroup controller with quotas (containers)", []string{"CONFIG_CFS_BANDWIDTH"}},
		{"device cgroup (containers)", []string{"CONFIG_CGROUP_DEVICE"}},
		{"seccomp filters (Docker's default profile)", []string{"CONFIG_SECCOMP_FILTER"}},
		{"POSIX message queues (containers' IPC namespaces)", []string{"CONFIG_POSIX_MQUEUE"}},
		{"bridge netfilter (Docker and pod bridges)", []string{"CONFIG_BRIDGE_NETFILTER"}},
		{"ipsets (kube-proxy ipvs mode)", []string{"CONFIG_IP_SET_HASH_IPPORT"}},
		{"IPVS (kube-proxy ipvs mode)", []string{"CONFIG_IP_VS_RR"}},
		{"nftables numgen (kube-proxy nftables mode)", []string{"CONFIG_NFT_NUMGEN"}},
		{"nftables fib (kube-proxy nftables mode)", []string{"CONFIG_NFT_FIB_INET"}},
		{"nftables reject in ip tables (kube-proxy nftables mode)", []string{"CONFIG_NFT_REJECT_IPV4"}},
	}
}

// CiliumFeatures are what real Cilium's agent needs on top of KindFeatures, as Cilium documents
// its base requirements and checks some at start: tc's ingress/clsact qdisc, BPF classifier and
// actions (its programs on each device), the BPF JIT and AF_ALG hashing; and what it was seen
// failing without in the VM: the XFRM netlink family, iptables' socket match and TPROXY target.
func CiliumFeatures() []Feature {
	return []Feature{
		{"tc ingress/clsact qdisc (Cilium's device programs)", []string{"CONFIG_NET_SCH_INGRESS"}},
		{"tc BPF classifier (Cilium's device programs)", []string{"CONFIG_NET_CLS_BPF"}},
		{"tc actions (Cilium's device programs)", []string{"CONFIG_NET_CLS_ACT"}},
		{"BPF JIT (Cilium)", []string{"CONFIG_BPF_JIT"}},
		{"AF_ALG hashes (Cilium)", []string{"CONFIG_CRYPTO_USER_API_HASH"}},
		{"XFRM netlink family (every netlink handle of Cilium's agent opens it)", []string{"CONFIG_XFRM_USER"}},
		{"iptables socket match (Cilium's static proxy rules)", []string{"CONFIG_NETFILTER_XT_MATCH_SOCKET"}},
		{"iptables TPROXY target (Cilium's static proxy rules)", []string{"CONFIG_NETFILTER_XT_TARGET_TPROXY"}},
	}
}

// MissingFeaturesError names what a kernel lacks.
type MissingFeaturesError struct {
	Kernel  string
	Config  string
	For     string // what needs them: "the lab", "the kind form"
	Missing []Feature
}

func (e *MissingFeaturesError) Error() string {
	parts := make([]string, len(e.Missing))
	for i, f := range e.Missing {
		parts[i] = fmt.Sprintf("%s (%s)", f.What, strings.Join(f.Options, " or "))
	}
	return fmt.Sprintf("kernel %s lacks what %s needs, according to %s: %s", e.Kernel, e.For, e.Config, strings.Join(parts, "; "))
}

// CheckConfig reads a kernel's .config and returns a *MissingFeaturesError listing every
// required feature it does not provide.
func CheckConfig(k Kernel) error {
	return CheckConfigFor(k, "the lab", RequiredFeatures())
}

// CheckConfigFor is CheckConfig for the features of what (e.g. KindFeatures, "the kind form").
func CheckConfigFor(k Kernel, what string, features []Feature) error {
	if k.Config == "" {
		return nil
	}
	data, err := os.ReadFile(k.Config)
	if err != nil {
		return fmt.Errorf("read the config of kernel %s: %w", k.Name, err)
	}
	opts, err := recipe.ParseConfig(data)
	if err != nil {
		return fmt.Errorf("parse the config of kernel %s (%s): %w", k.Name, k.Config, err)
	}
	set := map[string]string{}
	for _, o := range opts {
		set[o.Name] = o.Value
	}
	var missing []Feature
	for _, f := range features {
		ok := false
		for _, o := range f.Options {
			v := set[o]
			if v == "y" || (v == "m" && k.ModulesDir != "") {
				ok = true
			}
		}
		if !ok {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return &MissingFeaturesError{Kernel: k.Name, Config: k.Config, For: what, Missing: missing}
	}
	return nil
}
