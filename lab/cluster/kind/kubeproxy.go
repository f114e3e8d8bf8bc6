package kind

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// Install waits until kube-proxy's pod is Ready and checks the mode its configuration names.
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
				if podReady(p) {
					k.desc = fmt.Sprintf("kube-proxy %s in %s mode (pod kube-system/%s, image %s)", version(p), mode, p.Name, p.Spec.Containers[0].Image)
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for kube-proxy's pod to be Ready: %w (last: %v)", ctx.Err(), err)
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
