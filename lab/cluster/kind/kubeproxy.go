package kind

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// KubeProxy is the cluster's real kube-proxy as a cell's datapath. It belongs to the cluster,
// which was created with its mode: Install only checks that it runs in that mode, Close leaves
// it running for the next cell.
type KubeProxy struct {
	c    *Cluster
	mode string
	desc string
}

// NewKubeProxy returns the datapath of c's kube-proxy, expected to run in mode.
func NewKubeProxy(c *Cluster, mode string) *KubeProxy { return &KubeProxy{c: c, mode: mode} }

// Install waits until the kube-proxy pod of the node that mounts is Ready, and checks the mode
// its configuration names.
func (k *KubeProxy) Install(ctx context.Context) error {
	cm, err := k.c.Client.CoreV1().ConfigMaps("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read kube-proxy's configuration: %w", err)
	}
	mode := configMode(cm.Data["config.conf"])
	if mode != k.mode {
		return fmt.Errorf("the cluster's kube-proxy runs in mode %q, the cell needs %q", mode, k.mode)
	}
	for {
		pods, err := k.c.Client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-proxy"})
		if err == nil {
			for _, p := range pods.Items {
				if p.Spec.NodeName == controlPlaneNode && podReady(p) {
					k.desc = fmt.Sprintf("kube-proxy %s in %s mode (pod kube-system/%s, image %s)", version(p), mode, p.Name, p.Spec.Containers[0].Image)
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for kube-proxy's pod on %s to be Ready: %w (last: %v)", controlPlaneNode, ctx.Err(), err)
		case <-time.After(time.Second):
		}
	}
}

// Close leaves kube-proxy to the cluster.
func (k *KubeProxy) Close(context.Context) error { return nil }

// Describe says which kube-proxy forwards the service.
func (k *KubeProxy) Describe() (string, error) { return k.desc, nil }

// configMode reads "mode:" from kube-proxy's KubeProxyConfiguration; empty means iptables.
func configMode(conf string) string {
	for _, l := range strings.Split(conf, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "mode:"); ok {
			v = strings.Trim(strings.TrimSpace(v), `"'`)
			if v != "" {
				return v
			}
		}
	}
	return "iptables"
}

// version is the image tag of the pod's first container.
func version(p corev1.Pod) string {
	img := p.Spec.Containers[0].Image
	if i := strings.LastIndex(img, ":"); i >= 0 {
		return img[i+1:]
	}
	return img
}

// SwitchProxyMode changes the running cluster's kube-proxy to mode, as an administrator would:
// for another kube-proxy mode, the mode in kube-proxy's ConfigMap is changed and its pod
// replaced (kube-proxy removes the other rule family's leftovers when it starts: nftables
// removes iptables' and IPVS's, iptables and IPVS remove nftables'); for "none" the DaemonSet is
// deleted and its nftables tables with it. A cluster without kube-proxy cannot get one back
// here (the caller creates a new cluster). It returns once every node's new kube-proxy pod is
// Ready.
func (c *Cluster) SwitchProxyMode(ctx context.Context, mode string) error {
	if c.ProxyMode == "none" {
		return fmt.Errorf("the cluster has no kube-proxy to switch to %s", mode)
	}
	pods := c.Client.CoreV1().Pods("kube-system")
	old, err := pods.List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-proxy"})
	if err != nil {
		return fmt.Errorf("list kube-proxy's pods: %w", err)
	}
	if mode == "none" {
		err := c.Client.AppsV1().DaemonSets("kube-system").Delete(ctx, "kube-proxy", metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete kube-proxy's DaemonSet: %w", err)
		}
		for _, p := range old.Items {
			if err := waitGone(ctx, c, p.Name); err != nil {
				return err
			}
		}
		if pid, err := NodePID(ctx); err == nil {
			// The nftables mode's tables stay behind a deleted kube-proxy; iptables' chains
			// only hold deleted Services, which a socket-LB rewrites before netfilter anyway.
			_, _ = InNode(ctx, pid, "sh", "-c", "nft delete table ip kube-proxy; nft delete table ip6 kube-proxy; true")
		}
		c.ProxyMode = mode
		return nil
	}
	cms := c.Client.CoreV1().ConfigMaps("kube-system")
	cm, err := cms.Get(ctx, "kube-proxy", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read kube-proxy's configuration: %w", err)
	}
	cm.Data["config.conf"] = setMode(cm.Data["config.conf"], mode)
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("set kube-proxy's mode to %s: %w", mode, err)
	}
	seen := map[string]bool{}
	for _, p := range old.Items {
		seen[p.Name] = true
		if err := pods.Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("restart kube-proxy (delete pod %s): %w", p.Name, err)
		}
	}
	for {
		list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-proxy"})
		if err == nil {
			ready := 0
			for _, p := range list.Items {
				if !seen[p.Name] && p.DeletionTimestamp == nil && podReady(p) {
					ready++
				}
			}
			if ready >= max(c.Nodes, 1) { // one per node
				c.ProxyMode = mode
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for kube-proxy to restart in %s mode: %w", mode, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// waitGone waits until kube-system's pod name no longer exists.
func waitGone(ctx context.Context, c *Cluster, name string) error {
	for {
		_, err := c.Client.CoreV1().Pods("kube-system").Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for pod kube-system/%s to be gone: %w", name, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// setMode sets "mode:" in a KubeProxyConfiguration, adding it when absent.
func setMode(conf, mode string) string {
	modeLine := regexp.MustCompile(`(?m)^mode:.*$`)
	if modeLine.MatchString(conf) {
		return modeLine.ReplaceAllString(conf, "mode: "+mode)
	}
	return strings.TrimRight(conf, "\n") + "\nmode: " + mode + "\n"
}

// kubeProxyLogTail is the last lines of the log of each kube-proxy pod: what to show when its
// rules do not appear.
func kubeProxyLogTail(ctx context.Context, c kubernetes.Interface, lines int64) string {
	ctx = context.WithoutCancel(ctx)
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	pods, err := c.CoreV1().Pods("kube-system").List(lctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-proxy"})
	cancel()
	if err != nil {
		return fmt.Sprintf("(kube-proxy's pods: %v)", err)
	}
	var b strings.Builder
	for _, p := range pods.Items {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		raw, err := c.CoreV1().Pods("kube-system").GetLogs(p.Name, &corev1.PodLogOptions{TailLines: &lines}).DoRaw(pctx)
		cancel()
		if err != nil {
			fmt.Fprintf(&b, "[%s on %s: %v]", p.Name, p.Spec.NodeName, err)
			continue
		}
		fmt.Fprintf(&b, "[%s on %s: %s]", p.Name, p.Spec.NodeName, strings.TrimSpace(string(raw)))
	}
	if b.Len() == 0 {
		return "(no kube-proxy pod)"
	}
	return b.String()
}
