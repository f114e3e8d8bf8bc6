// Package fault is how the backend dies. A fault acts on a Pod through what can happen to one:
// its containers are killed, its sandbox (network namespace and IP) is deleted, or its node
// stops answering (its traffic is dropped).
package fault

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Names of the faults a scenario can ask for.
const (
	// DeletePod is a pod deletion as the kubelet does it: the server is killed (SIGKILL), the
	// kernel closes its connections (FIN, answered by the client), and only then is the pod's
	// sandbox removed — network namespace, veth, IP — so the replacement comes up with a new IP.
	DeletePod = "delete-pod"
	// DeletePodAbrupt removes the sandbox right after the kill, without waiting for the
	// connections to close: the client's FIN may never be acknowledged. NFSv3 over TCP can then
	// sit in LAST-ACK, with no reconnect, for minutes.
	DeletePodAbrupt = "delete-pod-abrupt"
	// NodeCrash is the pod's node dying: its traffic is dropped first, so the server goes
	// without a FIN or an RST, then the server and its sandbox are gone. The client learns of it
	// only from its own timeouts (TCP's and SUNRPC's); the replacement comes up elsewhere with
	// a new IP.
	NodeCrash = "node-crash"
	// ForceDelete deletes the pod through the Kubernetes API with a grace period of 0 (kind
	// form): the API object goes at once, the kubelet kills the server afterwards, and the
	// Deployment's replacement may start before the old server is dead.
	ForceDelete = "force-delete"
	// KillContainer kills the server's container (kind form) as a crash would, behind the
	// kubelet's back: the kubelet restarts it in the same pod — same sandbox, same IP — or the
	// pod is replaced; the cell records which.
	KillContainer = "kill-container"
	// RestartNode restarts the server's node (kind form, two nodes) as a reboot would: its
	// container is stopped — the node's kubelet and containers with it — and started again.
	// The pod object stays; the kubelet gives it a new sandbox, and with it a new IP.
	RestartNode = "restart-node"
)

// SettleTimeout bounds how long DeletePod waits for the pod's connections to close.
const SettleTimeout = 3 * time.Second

// Names lists every fault nfslab knows, for validation and help texts.
func Names() []string {
	return []string{DeletePod, DeletePodAbrupt, NodeCrash, ForceDelete, KillContainer, RestartNode}
}

// NetnsNames are the faults of the netns form, where nfslab itself kills the server and removes
// the pod's sandbox.
func NetnsNames() []string { return []string{DeletePod, DeletePodAbrupt, NodeCrash} }

// KindNames are the faults of the kind form, which go through the real system: delete-pod is a
// graceful deletion through the API (the pod's grace period), force-delete one with grace 0,
// kill-container a crash of the server's container, restart-node a reboot of the server's node.
func KindNames() []string { return []string{DeletePod, ForceDelete, KillContainer, RestartNode} }

// Pod is what a fault acts on.
type Pod interface {
	Kill(ctx context.Context) error // kill the pod's processes
	// Settle waits until the kernel has closed the pod's connections, or ctx ends.
	Settle(ctx context.Context) error
	Delete(ctx context.Context) error // remove the pod's sandbox: network namespace, veth, IP
	// Blackhole drops all the pod's traffic from now on, silently, as a dead node does.
	Blackhole(ctx context.Context) error
}

// Inject applies the named fault to pod.
func Inject(ctx context.Context, name string, pod Pod) error {
	switch name {
	case DeletePod, DeletePodAbrupt:
		if err := pod.Kill(ctx); err != nil {
			return fmt.Errorf("%s: kill: %w", name, err)
		}
		if name == DeletePod {
			sctx, cancel := context.WithTimeout(ctx, SettleTimeout)
			err := pod.Settle(sctx)
			cancel()
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("%s: wait for connections to close: %w", name, err)
			}
		}
		if err := pod.Delete(ctx); err != nil {
			return fmt.Errorf("%s: delete sandbox: %w", name, err)
		}
		return nil
	case NodeCrash:
		if err := pod.Blackhole(ctx); err != nil {
			return fmt.Errorf("%s: drop the pod's traffic: %w", name, err)
		}
		if err := pod.Kill(ctx); err != nil {
			return fmt.Errorf("%s: kill: %w", name, err)
		}
		if err := pod.Delete(ctx); err != nil {
			return fmt.Errorf("%s: delete sandbox: %w", name, err)
		}
		return nil
	default:
		return fmt.Errorf("unknown fault %q", name)
	}
}
