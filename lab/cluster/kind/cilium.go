package kind

import (
	"context"
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/nfslab/nfslab/lab/datapath"
	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/event"
)

// checkCilium refuses a Cilium cluster that cannot be one: kube-proxy beside Cilium's
// replacement, no objects to apply, or an agent at the VM's root cgroup on several nodes (their
// programs would stack there).
func checkCilium(cfg ClusterConfig) error {
	ci := cfg.Cilium
	if ci == nil {
		return nil
	}
	if !cilium.IsDatapath(ci.Datapath) {
		return fmt.Errorf("unknown Cilium datapath %q: want one of %v", ci.Datapath, cilium.Datapaths())
	}
	if cfg.ProxyMode != "none" {
		return fmt.Errorf("real Cilium (%s) replaces kube-proxy: the cluster's kube-proxy mode must be none, not %q", ci.Datapath, cfg.ProxyMode)
	}
	if len(ci.Objects) == 0 {
		return fmt.Errorf("real Cilium %s (%s): no objects to apply", ci.Version, ci.Datapath)
	}
	if cilium.SharesRootCgroup(ci.Datapath) && cfg.nodes() > 1 {
		return fmt.Errorf("the Cilium datapath %s attaches at the VM's root cgroup, which every node shares: a cluster of one node only", ci.Datapath)
	}
	return nil
}

// installCilium applies Cilium's objects to the new cluster, waits for its agent and operator,
// and records what the agent says of itself and which programs are effective at the VM's root
// cgroup in obs.
func installCilium(ctx context.Context, kubeconfig string, c kubernetes.Interface, in cilium.Install, obs *event.CiliumObs, say func(string)) error {
	cfg, err := restConfig(kubeconfig)
	if err != nil {
		return err
	}
	start := time.Now()
	n, err := cilium.Apply(ctx, cfg, in.Objects)
	obs.Objects = n
	if err != nil {
		return err
	}
	if say != nil {
		say(fmt.Sprintf("cilium: %s (%s) applied, %d objects; waiting for the agent (it compiles its datapath first)", in.Version, in.Datapath, n))
	}
	if err := cilium.WaitReady(ctx, c, say); err != nil {
		return fmt.Errorf("%w; the agent's log ended: %s", err, agentLogTail(ctx))
	}
	obs.ReadySeconds = time.Since(start).Seconds()
	st, err := cilium.AgentStatus(ctx, nodeExec(controlPlaneNode))
	if err != nil {
		return err
	}
	obs.Status, obs.KubeProxyReplacement = st.Text, st.KubeProxyReplacement
	if obs.RootPrograms, err = datapath.EffectiveAt(vmCgroupRoot); err != nil {
		return fmt.Errorf("read the programs at the VM's root cgroup: %w", err)
	}
	if say != nil {
		say(fmt.Sprintf("cilium: ready in %.0f s; KubeProxyReplacement: %s; %s", obs.ReadySeconds, obs.KubeProxyReplacement, obs.RootPrograms))
	}
	return nil
}

// vmCgroupRoot is the VM's cgroup2 root, as the agent in the VM sees it.
const vmCgroupRoot = "/sys/fs/cgroup"

// nodeExec runs commands in a node's container.
func nodeExec(node string) cilium.NodeExec {
	return func(ctx context.Context, args ...string) ([]byte, error) {
		return Docker(ctx, append([]string{"exec", node}, args...)...)
	}
}

// agentLogTail is the end of the Cilium agent's log on the control-plane node, for an error.
func agentLogTail(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	out, err := Docker(ctx, "exec", controlPlaneNode, "sh", "-c",
		"tail -n 15 /var/log/pods/kube-system_cilium-*/*/*.log 2>&1 | cut -c1-400")
	if err != nil {
		return err.Error()
	}
	return lastOf(string(out), 20)
}

// ciliumServices is the Cilium agent's service table (cilium-dbg service list), for an error.
func ciliumServices(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	out, err := cilium.AgentExec(ctx, nodeExec(controlPlaneNode), "cilium-dbg", "service", "list")
	if err != nil {
		return err.Error()
	}
	return lastOf(out, 20)
}
