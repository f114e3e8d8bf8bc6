package kind

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/nfslab/nfslab/internal/lines"
)

// waitNodesReady polls until want nodes are Ready or ctx ends, and returns the control-plane
// node.
func waitNodesReady(ctx context.Context, c kubernetes.Interface, want int) (corev1.Node, error) {
	var last error
	for {
		nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err == nil {
			var ready []string
			var first corev1.Node
			for _, n := range nodes.Items {
				for _, cond := range n.Status.Conditions {
					if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
						ready = append(ready, n.Name)
						if n.Name == controlPlaneNode || first.Name == "" {
							first = n
						}
					}
				}
			}
			if len(ready) >= want {
				return first, nil
			}
			last = fmt.Errorf("%d node(s), Ready: %v", len(nodes.Items), ready)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return corev1.Node{}, fmt.Errorf("wait for %d Ready node(s): %w (last: %v)", want, ctx.Err(), last)
		case <-time.After(time.Second):
		}
	}
}

// nodeStatus is one line about a node being created: its containerd's images and tasks, and
// the kubelet's last complaints.
func nodeStatus(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := Docker(ctx, "exec", controlPlaneNode, "sh", "-c",
		"echo images: $(ctr -n k8s.io images ls -q | wc -l); echo tasks: $(ctr -n k8s.io tasks ls | tail -n +2 | awk '{print $3}' | sort | uniq -c); "+
			"journalctl -u kubelet --no-pager -o cat | grep -iE 'StartError|RunContainerError|failed to create|exec|no such' | tail -n 2 | cut -c1-700; "+
			"for f in /var/log/pods/*etcd*/*/*.log /var/log/pods/*apiserver*/*/*.log; do echo \"$f:\"; tail -n 2 $f | cut -c1-400; done")
	if err != nil {
		return err.Error()
	}
	return lastOf(string(out), 24)
}

// nodeDiagnostics collects, from a node that did not come up, the kubelet's last log lines, the
// images its containerd holds and the containers it ran.
func nodeDiagnostics(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	node := controlPlaneNode
	var parts []string
	for _, cmd := range [][]string{
		{"journalctl", "-u", "kubelet", "--no-pager", "-n", "15"},
		{"ctr", "-n", "k8s.io", "images", "ls", "-q"},
		{"ctr", "-n", "k8s.io", "tasks", "ls"},
	} {
		out, err := Docker(ctx, append([]string{"exec", node}, cmd...)...)
		if err != nil {
			parts = append(parts, fmt.Sprintf("%s: %v", cmd[0], err))
			continue
		}
		parts = append(parts, cmd[0]+": "+lastOf(string(out), 15))
	}
	return strings.Join(parts, " || ")
}

// lastOf returns the last n lines of s on one line, joined by " | ", for an error message.
func lastOf(s string, n int) string {
	return strings.ReplaceAll(lines.Tail(strings.TrimSpace(s), n), "\n", " | ")
}
