package kind

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/nfslab/nfslab/lab/internal/ticking"
	"github.com/nfslab/nfslab/lab/nfs"
)

// warmUpNamespace is where WarmUp starts its throw-away server.
const warmUpNamespace = "nfslab-warmup"

// WarmUp readies a new cluster for cells the way a cluster that has run one is ready: it waits
// for kube-proxy's pod (when the cluster has kube-proxy) and starts nfs-ganesha from image once,
// in a namespace of its own that it deletes and waits out. The server image's layers are then
// unpacked on the node and the kubelet has made a pod sandbox once: under TCG the first cell's
// server started in 50 s on a new cluster, a replacement in 8 s. It is run before a ready
// cluster is snapshotted, so that every cell restored from it starts its server as fast. With
// real Cilium the first pod waits for its endpoint's program, compiled by the agent (minutes
// under TCG): say hears how long it has waited, every 30 s.
func (c *Cluster) WarmUp(ctx context.Context, image string, port uint16, say func(string)) error {
	if c.ProxyMode != "none" {
		if err := NewKubeProxy(c, c.ProxyMode).Install(ctx); err != nil {
			return fmt.Errorf("warm the cluster up: %w", err)
		}
	}
	conf, err := nfs.RenderGaneshaConfig(nfs.GaneshaParams{
		BindAddr: netip.IPv4Unspecified(), Port: int(port),
		ExportPath: "/export", PseudoPath: "/export", RecoveryRoot: "/var/lib/nfs/ganesha",
	})
	if err != nil {
		return fmt.Errorf("warm the cluster up: ganesha config: %w", err)
	}
	w := NewWorkload(c.Client, warmUpNamespace, image, conf, c.ServerNode)
	if _, err := w.CreateService(ctx, []corev1.ServicePort{ServicePort("nfs", int32(port))}); err != nil {
		return fmt.Errorf("warm the cluster up: %w", err)
	}
	if err := w.CreateServer(ctx, int32(port)); err != nil {
		return fmt.Errorf("warm the cluster up: %w", err)
	}
	waiting := func() string {
		return "warm-up: the NFS server's first pod not ready yet: " + w.PodStates(ctx)
	}
	if err := waitSaying(ctx, say, 30*time.Second, waiting, func(ctx context.Context) error {
		_, err := w.WaitReadyPod(ctx, nil)
		return err
	}); err != nil {
		if c.Cilium != "" {
			err = ciliumPodWhy(ctx, err)
		}
		return fmt.Errorf("warm the cluster up: %w", err)
	}
	if err := w.Delete(ctx); err != nil {
		return fmt.Errorf("warm the cluster up: %w", err)
	}
	for {
		_, err := c.Client.CoreV1().Namespaces().Get(ctx, warmUpNamespace, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("warm the cluster up: wait for namespace %s to be gone: %w", warmUpNamespace, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// waitSaying runs wait, and while it runs says what it waits for (what()), with how long it has
// run, every period.
func waitSaying(ctx context.Context, say func(string), every time.Duration, what func() string, wait func(context.Context) error) error {
	start := time.Now()
	return ticking.While(ctx, every, wait, func() {
		if say != nil {
			say(fmt.Sprintf("%s (%.0f s)", what(), time.Since(start).Seconds()))
		}
	})
}
