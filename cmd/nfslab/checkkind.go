package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/nfslab/nfslab/lab"
	"github.com/nfslab/nfslab/lab/cluster/kind"
	"github.com/nfslab/nfslab/lab/cluster/kind/nodeimage"
	"github.com/nfslab/nfslab/lab/runstate"
)

// newCheckKindCmd is `nfslab kernel check-kind KERNEL`: can the kind form run on a kernel.
func newCheckKindCmd(stdout, stderr io.Writer, g *globals) *cobra.Command {
	var cacheDir, accel, output, proxyMode, nodeImage string
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
			rep, err := lab.CheckKindMachine(cmd.Context(), lab.Options{
				CacheDir: cacheDir, Accel: accel, Progress: progress, Style: g.style(progress), Log: g.logger(stderr), RunID: runID,
				NodeImage: nodeImage,
			}, args[0], lab.MachineCheck{NodeImage: cmd.Flags().Changed("node-image"), ProxyMode: proxyMode})
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
				if n := c.NFS; n != nil {
					fmt.Fprintf(stdout, "  NFS            %s:/export → pod %s (%s): mounted from the node in %.1f s, read back %v, /proc/mounts addr=%s\n",
						n.VIP, n.Pod, n.PodIP, n.MountSeconds, n.ReadBack, n.MountAddr)
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
	f.StringVar(&proxyMode, "cluster", "", "also create a kind cluster with this kube-proxy mode ("+strings.Join(kind.ProxyModes(), ", ")+") from the node image, wait for its node, mount nfs-ganesha behind a ClusterIP from the node, write and read a file, and delete it all (implies --node-image; many minutes under TCG)")
	f.StringVar(&nodeImage, "node-image", "", "also start Docker on a disk that holds a kind node image: alone, nfslab's own (Kubernetes "+nodeimage.KubernetesVersion+" from the Go module proxy, no registry; both cached, the first time takes many minutes); =ARCHIVE or =IMAGE, yours (a docker-archive, or an image reference the host's Docker has or pulls)")
	f.Lookup("node-image").NoOptDefVal = lab.OwnNodeImage
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
