package kind

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/nfslab/nfslab/lab/datapath"
	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/socklb"
)

// checkCilium refuses a Cilium cluster that cannot be one: kube-proxy beside Cilium's
// replacement (or none where Cilium runs beside it), no objects to apply, or an agent at the VM's root cgroup on several nodes (their
// programs would stack there).
func checkCilium(cfg ClusterConfig) error {
	ci := cfg.Cilium
	if ci == nil {
		return nil
	}
	if !cilium.IsDatapath(ci.Datapath) {
		return fmt.Errorf("unknown Cilium datapath %q: want one of %v", ci.Datapath, cilium.Datapaths())
	}
	if want := cilium.KubeProxyMode(ci.Datapath); cfg.ProxyMode != want {
		return fmt.Errorf("real Cilium (%s): the cluster's kube-proxy mode must be %s, not %q", ci.Datapath, want, cfg.ProxyMode)
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
	dctx, cancel := context.WithTimeout(ctx, datapathTimeout)
	err = cilium.WaitDatapath(dctx, nodeExec(controlPlaneNode), say)
	cancel()
	if err != nil {
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

// datapathTimeout bounds the wait for the agent's datapath once the agent says it is ready:
// under TCG clang compiles its host programs for minutes (bpf_host alone took 6 min 14 s).
const datapathTimeout = 25 * time.Minute

// vmCgroupRoot is the VM's cgroup2 root, as the agent in the VM sees it.
const vmCgroupRoot = "/sys/fs/cgroup"

// nodeExec runs commands in a node's container.
func nodeExec(node string) cilium.NodeExec {
	return func(ctx context.Context, args ...string) ([]byte, error) {
		return Docker(ctx, append([]string{"exec", node}, args...)...)
	}
}

// agentLogTail is what the Cilium agent container's logs on the control-plane node say on an
// error: their last error and fatal lines (which name why the agent exited), then the last lines
// of its newest log (kubelet keeps the previous run's log beside the current one).
func agentLogTail(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	const logs = "/var/log/pods/kube-system_cilium-*/cilium-agent/*.log"
	out, err := Docker(ctx, "exec", controlPlaneNode, "sh", "-c",
		"grep -h -i -E 'level=(error|fatal)|compiled|timeout|deadline' "+logs+" 2>/dev/null | tail -n 5 | cut -c1-400; "+
			"echo ...; tail -q -n 3 $(ls -t "+logs+" 2>/dev/null | head -1) 2>&1 | cut -c1-300")
	if err != nil {
		return err.Error()
	}
	return lastOf(string(out), 9)
}

// ciliumPodWhy adds to err, about a pod that did not get ready under real Cilium, what the
// agent says: its endpoints (a pod's network is its endpoint's program, compiled by the agent
// when the pod starts) and the end of its log.
func ciliumPodWhy(ctx context.Context, err error) error {
	return fmt.Errorf("%w; Cilium's endpoints: %s; the agent's log: %s", err, agentSays(ctx, 12, "endpoint", "list"), agentLogTail(ctx))
}

// agentSays is the end of what a cilium-dbg command in the Cilium agent prints (its endpoint
// list, its service table), for an error.
func agentSays(ctx context.Context, lines int, args ...string) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	out, err := cilium.AgentExec(ctx, nodeExec(controlPlaneNode), append([]string{"cilium-dbg"}, args...)...)
	if err != nil {
		return err.Error()
	}
	return lastOf(out, lines)
}

// waitCilium polls the Cilium agent's service table until it forwards the service's NFS port to
// want alone, as an active backend, and records that moment with the table's entry.
func (c *CellCluster) waitCilium(ctx context.Context, want netip.Addr) error {
	port := c.svc.NFSPort()
	frontend := netip.AddrPortFrom(c.svc.VIP, port)
	target := netip.AddrPortFrom(want, port)
	var last string
	for {
		bs, ok, err := cilium.ServiceBackends(ctx, nodeExec(controlPlaneNode), frontend)
		switch {
		case err != nil:
			last = err.Error()
		case !ok:
			last = "not in the table"
		default:
			last = cilium.FormatBackends(bs)
			if len(bs) == 1 && bs[0].Addr == target && bs[0].State == "active" {
				c.recordService([]netip.Addr{want}, true, last)
				c.record(event.Event{Kind: event.KindProgress, Msg: fmt.Sprintf("Cilium forwards %s: %s", frontend, last)})
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for Cilium to forward %s to %s: %w (its service table: %s; the agent's log: %s)",
				frontend, target, ctx.Err(), last, agentLogTail(ctx))
		case <-time.After(time.Second):
		}
	}
}

// VerifyCilium checks, right before a cell's fault, that the cluster's Cilium is the datapath
// in effect as the cell's Cilium datapath wants it: the sock_addr programs effective at the
// VM's root cgroup are Cilium's socket-LB, or none (cilium.CheckRootPrograms), and the agent has
// the service's frontend in its table.
func VerifyCilium(ctx context.Context, dp string, root string, frontend netip.AddrPort) error {
	progs, err := socklb.EffectiveSockAddrPrograms(root)
	if err != nil {
		return fmt.Errorf("read the programs at the VM's root cgroup: %w", err)
	}
	names := make([]string, len(progs))
	for i, p := range progs {
		names[i] = p.Name
	}
	if err := cilium.CheckRootPrograms(dp, names); err != nil {
		return err
	}
	_, ok, err := cilium.ServiceBackends(ctx, nodeExec(controlPlaneNode), frontend)
	if err != nil {
		return fmt.Errorf("read Cilium's service table: %w", err)
	}
	if !ok {
		return fmt.Errorf("the Cilium agent has no service %s in its table", frontend)
	}
	return nil
}
