package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nfslab/nfslab/lab"
	"github.com/nfslab/nfslab/lab/cluster/kind"
	"github.com/nfslab/nfslab/lab/cluster/kind/nodeimage"
	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/runstate"
)

// newCheckKindCmd is `nfslab kernel check-kind KERNEL`: can the kind form run on a kernel.
func newCheckKindCmd(stdout, stderr io.Writer, g *globals) *cobra.Command {
	var cacheDir, accel, output, proxyMode, nodeImage, ciliumVersion, ciliumImage string
	cmd := &cobra.Command{
		Use:   "check-kind KERNEL",
		Short: "Boot KERNEL as the kind form's machine (Docker on a disk in the VM) and report its engine",
		Long: `Checks that the kind form can run on KERNEL (debian-stock, a recipe name, or a bzImage path):
its config must have what Docker, kind's nodes and kube-proxy's iptables, ipvs and nftables modes
need (each missing feature is named, exit 2, nothing booted); then a VM boots it with the guest
root filesystem plus Docker and a fresh Docker disk, the agent starts dockerd there and runs one
container the way kind runs its nodes (privileged, private cgroup namespace) from an image made of
its own binary, and what the engine says about itself is printed (storage driver and backing
filesystem, cgroup version).

--cluster MODE also creates a kind cluster on it and mounts nfs-ganesha behind a ClusterIP from
the node: MODE is a kube-proxy mode, or a Cilium datapath (` + strings.Join(cilium.Datapaths(), ", ") + `):
real Cilium (--cilium-version, default ` + cilium.DefaultVersion() + `) replaces kube-proxy, installed from
its chart with that datapath's values; its agent compiles its datapath under TCG for minutes,
and building Cilium the first time takes longer still.

--node-image alone loads nfslab's own node image (built without a registry) onto the Docker
disk; --node-image=ARCHIVE or --node-image=IMAGE loads a node image of yours instead: a
docker-archive, or an image reference the host's Docker has or pulls (a value that cannot work
is exit 2, nothing booted).

Exit codes: 0 the engine came up; 2 bad input (unknown kernel, missing features, a node image
that cannot work); 3 the lab failed.`,
		Args: checkKindArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkAccel(accel); err != nil {
				return err
			}
			if output != "table" && output != "json" {
				return usageError{fmt.Errorf("-o %q: want table or json", output)}
			}
			cacheDir, err := cacheDirOrDefault(cacheDir)
			if err != nil {
				return err
			}
			runID := runstate.NewID(time.Now())
			release, err := registerRun(runID, "kernel check-kind", cacheDir, "")
			if err != nil {
				return err
			}
			defer release()
			progress := stdout
			if output == "json" {
				progress = stderr
			}
			check := lab.MachineCheck{NodeImage: cmd.Flags().Changed("node-image"), ProxyMode: proxyMode, CiliumVersion: ciliumVersion}
			switch {
			case cilium.IsDatapath(proxyMode):
				check.ProxyMode, check.Cilium = "", proxyMode
			case proxyMode != "" && !slices.Contains(kind.ProxyModes(), proxyMode):
				return usageError{fmt.Errorf("--cluster %q: want a kube-proxy mode (%s) or a Cilium datapath (%s)",
					proxyMode, strings.Join(kind.ProxyModes(), ", "), strings.Join(cilium.Datapaths(), ", "))}
			}
			rep, err := lab.CheckKindMachine(cmd.Context(), lab.Options{
				CacheDir: cacheDir, Accel: accel, Progress: progress, Style: g.style(progress), Log: g.logger(stderr), RunID: runID,
				NodeImage: nodeImage, CiliumImage: ciliumImage,
			}, args[0], check)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			e := rep.Engine
			fmt.Fprintf(stdout, "kernel %s (%s), %s: the kind form's machine is ready\n", rep.Kernel, rep.Release, rep.Accel)
			fmt.Fprintf(stdout, "  VM boot        %.1f s\n", rep.BootSeconds)
			fmt.Fprintf(stdout, "  Docker         %s, ready in %.1f s\n", e.ServerVersion, e.ReadySeconds)
			if rep.NodeImage != "" {
				fmt.Fprintf(stdout, "  node image     %s, on the Docker disk\n", rep.NodeImage)
			}
			fmt.Fprintf(stdout, "  storage        %s on %s\n", e.Driver, e.BackingFS)
			fmt.Fprintf(stdout, "  cgroups        v%s, %s driver\n", e.CgroupVersion, e.CgroupDriver)
			if c := e.Container; c != nil {
				fmt.Fprintf(stdout, "  container      privileged, private cgroupns (as kind's nodes): image %.1f s, run %.1f s\n", c.ImportSeconds, c.RunSeconds)
			}
			for _, w := range e.Warnings {
				fmt.Fprintf(stdout, "  engine warning %s\n", w)
			}
			if c := rep.Cluster; c != nil {
				fmt.Fprintf(stdout, "  kind cluster   %s (kube-proxy %s): created in %.1f s, node %s Ready at %.1f s, deleted in %.1f s\n",
					c.Name, c.ProxyMode, c.CreateSeconds, c.Node, c.ReadySeconds, c.DeleteSeconds)
				if ci := c.Cilium; ci != nil {
					fmt.Fprintf(stdout, "  Cilium         %s (%s): %d objects applied, agent and operator ready in %.1f s; KubeProxyReplacement: %s\n",
						ci.Version, ci.Datapath, ci.Objects, ci.ReadySeconds, ci.KubeProxyReplacement)
					fmt.Fprintf(stdout, "  VM root cgroup %s\n", ci.RootPrograms)
				}
				if n := c.NFS; n != nil {
					fmt.Fprintf(stdout, "  NFS            %s:/export → pod %s (%s): mounted from the node in %.1f s, read back %v, /proc/mounts addr=%s\n",
						n.VIP, n.Pod, n.PodIP, n.MountSeconds, n.ReadBack, n.MountAddr)
					if n.CiliumBackends != "" {
						fmt.Fprintf(stdout, "  Cilium's table %s → %s\n", n.VIP, n.CiliumBackends)
					}
				}
			}
			fmt.Fprintf(stdout, "  whole check    %.1f s\n", rep.Seconds)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cacheDir, "cache-dir", "", "artefact cache (default $NFSLAB_CACHE or ~/.cache/nfslab)")
	f.StringVar(&accel, "accel", "auto", "VM accelerator: auto (KVM when it works, else TCG), kvm or tcg")
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	f.StringVar(&proxyMode, "cluster", "", "also create a kind cluster with this kube-proxy mode ("+strings.Join(kind.ProxyModes(), ", ")+") or Cilium datapath ("+strings.Join(cilium.Datapaths(), ", ")+") from the node image, wait for its node, mount nfs-ganesha behind a ClusterIP from the node, write and read a file, and delete it all (implies --node-image; many minutes under TCG)")
	f.StringVar(&ciliumVersion, "cilium-version", "", "with a Cilium datapath in --cluster, the Cilium version (default "+cilium.DefaultVersion()+"; one of "+strings.Join(cilium.Versions(), ", ")+")")
	f.StringVar(&nodeImage, "node-image", "", "also start Docker on a disk that holds a kind node image: alone, nfslab's own (Kubernetes "+nodeimage.KubernetesVersion+" from the Go module proxy, no registry; both cached, the first time takes many minutes); =ARCHIVE or =IMAGE, yours (a docker-archive, or an image reference the host's Docker has or pulls)")
	f.Lookup("node-image").NoOptDefVal = lab.OwnNodeImage
	f.StringVar(&ciliumImage, "cilium-image", "", ciliumImageUsage+" (the version: --cilium-version, else the agent's tag)")
	return cmd
}

// checkKindArgs wants one kernel. A second argument after a bare --node-image is most likely
// the image meant for it, which that flag takes only after "=".
func checkKindArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 2 {
		if f := cmd.Flags().Lookup("node-image"); f.Changed && f.Value.String() == lab.OwnNodeImage {
			return usageError{fmt.Errorf("check-kind takes one kernel (got %q): a node image of yours goes after an \"=\", --node-image=ARCHIVE or --node-image=IMAGE", args)}
		}
	}
	return cobra.ExactArgs(1)(cmd, args)
}
