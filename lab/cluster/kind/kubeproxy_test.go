package kind

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func kubeProxyPod(name string) *corev1.Pod {
	p := pod(name, "172.18.0.2", true, false)
	p.Namespace, p.Labels = "kube-system", map[string]string{"k8s-app": "kube-proxy"}
	p.Spec.Containers = []corev1.Container{{Name: "kube-proxy", Image: "registry.k8s.io/kube-proxy:v1.37.2"}}
	p.Spec.NodeName = controlPlaneNode
	return p
}

// TestSwitchProxyMode: the mode is written to kube-proxy's ConfigMap, its pod is replaced, and
// the switch returns once the replacement (played here by the test, as the DaemonSet controller)
// is Ready; switching to none deletes the DaemonSet; a cluster without kube-proxy refuses.
func TestSwitchProxyMode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs := fake.NewClientset(
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-proxy", Namespace: "kube-system"}, Data: map[string]string{"config.conf": "mode: iptables\n"}},
		&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "kube-proxy", Namespace: "kube-system"}},
		kubeProxyPod("kube-proxy-old"),
	)
	c := &Cluster{Client: cs, ProxyMode: "iptables"}
	go func() {
		// The DaemonSet controller: a new pod once the old one is deleted.
		for ctx.Err() == nil {
			if _, err := cs.CoreV1().Pods("kube-system").Get(ctx, "kube-proxy-old", metav1.GetOptions{}); err != nil {
				_, _ = cs.CoreV1().Pods("kube-system").Create(ctx, kubeProxyPod("kube-proxy-new"), metav1.CreateOptions{})
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	if err := c.SwitchProxyMode(ctx, "ipvs"); err != nil {
		t.Fatal(err)
	}
	cm, _ := cs.CoreV1().ConfigMaps("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{})
	if configMode(cm.Data["config.conf"]) != "ipvs" || c.ProxyMode != "ipvs" {
		t.Errorf("after the switch: ConfigMap %q, cluster mode %q; want ipvs", cm.Data["config.conf"], c.ProxyMode)
	}
	kp := NewKubeProxy(c, "ipvs")
	if err := kp.Install(ctx); err != nil {
		t.Fatalf("Install after the switch: %v", err)
	}
	if d, _ := kp.Describe(); d == "" {
		t.Error("no description")
	}
	if err := NewKubeProxy(c, "nftables").Install(ctx); err == nil {
		t.Error("Install accepted a kube-proxy running in another mode")
	}
	go func() {
		// The garbage collector: the DaemonSet's pods go with it.
		for ctx.Err() == nil {
			if _, err := cs.AppsV1().DaemonSets("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{}); err != nil {
				_ = cs.CoreV1().Pods("kube-system").Delete(ctx, "kube-proxy-new", metav1.DeleteOptions{})
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	if err := c.SwitchProxyMode(ctx, "none"); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AppsV1().DaemonSets("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{}); err == nil {
		t.Error("switching to none left kube-proxy's DaemonSet")
	}
	if err := c.SwitchProxyMode(ctx, "iptables"); err == nil {
		t.Error("a cluster without kube-proxy switched to iptables")
	}
}
