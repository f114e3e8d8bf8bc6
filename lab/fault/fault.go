// Package fault is how the backend dies. A fault acts on a Pod through the two things a
// Kubernetes node can do to one: kill its containers, and delete its sandbox (network namespace
// and IP).
package fault

import (
	"context"
	"fmt"
)

// Names of the faults a scenario can ask for.
const (
	// DeletePod kills the server with SIGKILL and deletes the pod's network namespace, so its IP
	// is gone from the node; the replacement pod comes up with a new IP.
	DeletePod = "delete-pod"
)

// Names lists every fault nfslab knows, for validation and help texts.
func Names() []string { return []string{DeletePod} }

// Pod is what a fault acts on.
type Pod interface {
	Kill(ctx context.Context) error   // kill the pod's processes
	Delete(ctx context.Context) error // remove the pod's sandbox: network namespace, veth, IP
}

// Inject applies the named fault to pod.
func Inject(ctx context.Context, name string, pod Pod) error {
	switch name {
	case DeletePod:
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
