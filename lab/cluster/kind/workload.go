package kind

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/nfslab/nfslab/lab/datapath/cilium"
)

// The NFS server's objects in the cluster.
const (
	appLabel = "nfslab-nfs"
	// ExportHostPath is where the exports are on the kind node: a tmpfs of the VM mounted into
	// the node (extraMounts), so that a replacement pod serves the same file handles and the
	// filesystem has them (the node's overlay root would not). Each workload exports its own
	// directory below it.
	ExportHostPath = "/var/lib/nfslab-export"
	serviceName    = "nfs"
)

// Workload is the NFS server of a kind cell: nfs-ganesha as a Deployment of one replica behind a
// ClusterIP Service, made with client-go, in a namespace of its own.
type Workload struct {
	c         kubernetes.Interface
	namespace string
	image     string
	conf      string
	node      string // the node the server's pods are placed on; "" lets the scheduler choose
}

// NewWorkload returns the workload of image (holding nfs-ganesha) serving the ganesha config
// conf (bound to 0.0.0.0: the pod's address is the cluster's choice) in namespace, whose name
// also names its export directory. node, when set, is the node its pods run on.
func NewWorkload(c kubernetes.Interface, namespace, image, conf, node string) *Workload {
	return &Workload{c: c, namespace: namespace, image: image, conf: conf, node: node}
}

// Namespace is where the workload's objects are.
func (w *Workload) Namespace() string { return w.namespace }

// CreateService makes the namespace, the ganesha config and the Service, and returns the
// Service's ClusterIP; no pod serves it yet (CreateServer).
func (w *Workload) CreateService(ctx context.Context, ports []corev1.ServicePort) (netip.Addr, error) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: w.namespace}}
	if _, err := w.c.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return netip.Addr{}, fmt.Errorf("create namespace %s: %w", w.namespace, err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "ganesha"}, Data: map[string]string{"ganesha.conf": w.conf}}
	if _, err := w.c.CoreV1().ConfigMaps(w.namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		return netip.Addr{}, fmt.Errorf("create the ganesha ConfigMap: %w", err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: serviceName},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": appLabel}, Ports: ports},
	}
	got, err := w.c.CoreV1().Services(w.namespace).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("create the nfs Service: %w", err)
	}
	vip, err := netip.ParseAddr(got.Spec.ClusterIP)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("the nfs Service's ClusterIP %q: %w", got.Spec.ClusterIP, err)
	}
	return vip, nil
}

// CreateServer makes the nfs-ganesha Deployment, whose pod listens on port.
func (w *Workload) CreateServer(ctx context.Context, port int32) error {
	if _, err := w.c.AppsV1().Deployments(w.namespace).Create(ctx, w.deployment(port), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create the nfs-ganesha Deployment: %w", err)
	}
	return nil
}

// ServicePort is a TCP port of the Service, forwarded to the same port of the pod.
func ServicePort(name string, port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, TargetPort: intstr.FromInt32(port), Protocol: corev1.ProtocolTCP}
}

// readinessScript succeeds once something listens on the TCP port given as $1 (in hex) in the
// pod's network namespace. The probe looks instead of connecting: a kubelet TCP probe is a
// connect to the backend from the node, which a socket-LB hook at the root cgroup would see
// beside the kernel NFS client's own connects.
const readinessScript = `grep -qE "^ *[0-9]+: [0-9A-F]+:$1 [0-9A-F]+:0000 0A" /proc/net/tcp /proc/net/tcp6`

// serverContainerName is the name of the pod's nfs-ganesha container.
const serverContainerName = "ganesha"

func (w *Workload) deployment(port int32) *appsv1.Deployment {
	one := int32(1)
	privileged := true
	labels := map[string]string{"app": appLabel}
	dirOrCreate := corev1.HostPathDirectoryOrCreate
	var nodeSelector map[string]string
	if w.node != "" {
		nodeSelector = map[string]string{corev1.LabelHostname: w.node}
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "nfs-ganesha"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			// The old pod must be gone before the new one serves the same export.
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector: nodeSelector,
					Containers: []corev1.Container{{
						Name:            serverContainerName,
						Image:           w.image,
						ImagePullPolicy: corev1.PullNever,
						Command:         []string{"ganesha.nfsd", "-F", "-L", "/dev/stdout", "-f", "/etc/ganesha/ganesha.conf"},
						Ports:           []corev1.ContainerPort{{ContainerPort: port, Protocol: corev1.ProtocolTCP}},
						// Ganesha's VFS backend opens files by handle (CAP_DAC_READ_SEARCH) and
						// changes owners; a lab pod may have everything.
						SecurityContext: &corev1.SecurityContext{Privileged: &privileged},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{
								Command: []string{"sh", "-c", readinessScript, "ready", fmt.Sprintf("%04X", port)},
							}},
							PeriodSeconds: 1, FailureThreshold: 1, TimeoutSeconds: 10,
						},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "config", MountPath: "/etc/ganesha"},
							{Name: "export", MountPath: "/export"},
							{Name: "recovery", MountPath: "/var/lib/nfs/ganesha"},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "ganesha"}}}},
						{Name: "export", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: ExportHostPath + "/" + w.namespace, Type: &dirOrCreate}}},
						{Name: "recovery", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					},
					TerminationGracePeriodSeconds: ptr(int64(5)),
				},
			},
		},
	}
}

func ptr[T any](v T) *T { return &v }

// Pod is a backend pod as the cell sees it.
type Pod struct {
	Name string
	IP   netip.Addr
	Node string // the node it runs on
	// Restarts is the server container's restart count when the pod was seen Ready.
	Restarts int32
}

// WaitReadyPod waits until a Ready pod of the Deployment serves that seen (pod name → the pod
// as it was handed out) does not already account for, and returns it: the first backend, the
// one the ReplicaSet made after the fault, a pod whose server container the kubelet restarted
// in place since, or one the kubelet gave a new sandbox (a new IP) since — after its node
// restarted.
func (w *Workload) WaitReadyPod(ctx context.Context, seen map[string]Pod) (Pod, error) {
	last := "none listed"
	for {
		pods, err := w.c.CoreV1().Pods(w.namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + appLabel})
		if err == nil {
			if len(pods.Items) > 0 {
				last = podStates(pods.Items)
			}
			for _, p := range pods.Items {
				_, restarts := serverContainer(p)
				ip, err := netip.ParseAddr(p.Status.PodIP)
				if err != nil || p.DeletionTimestamp != nil || !podReady(p) {
					continue
				}
				if was, ok := seen[p.Name]; ok && restarts <= was.Restarts && ip == was.IP {
					continue
				}
				return Pod{Name: p.Name, IP: ip, Node: p.Spec.NodeName, Restarts: restarts}, nil
			}
		}
		select {
		case <-ctx.Done():
			return Pod{}, fmt.Errorf("wait for a new ready nfs-ganesha pod: %w (its pods: %s)", ctx.Err(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// serverContainer returns the CRI id of the pod's ganesha container (without its runtime's
// scheme) and its restart count.
func serverContainer(p corev1.Pod) (id string, restarts int32) {
	for _, s := range p.Status.ContainerStatuses {
		if s.Name == serverContainerName {
			_, id, _ = strings.Cut(s.ContainerID, "://")
			return id, s.RestartCount
		}
	}
	return "", 0
}

// ServerContainer reads the pod's ganesha container: its CRI id and restart count.
func (w *Workload) ServerContainer(ctx context.Context, pod string) (string, int32, error) {
	p, err := w.c.CoreV1().Pods(w.namespace).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return "", 0, fmt.Errorf("get pod %s: %w", pod, err)
	}
	id, restarts := serverContainer(*p)
	if id == "" {
		return "", 0, fmt.Errorf("pod %s has no running %s container", pod, serverContainerName)
	}
	return id, restarts, nil
}

// WaitPodNotServing waits until the kubelet has seen the pod's server die: the pod is not
// Ready, its container restarted (restart count above restarts), or the pod is gone.
func (w *Workload) WaitPodNotServing(ctx context.Context, pod string, restarts int32) error {
	for {
		p, err := w.c.CoreV1().Pods(w.namespace).Get(ctx, pod, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err == nil {
			if _, n := serverContainer(*p); n > restarts || !podReady(*p) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the kubelet to see pod %s's server die: %w", pod, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// WaitEndpoints waits until the Service's EndpointSlices list exactly the ready addresses want
// (none for an empty want).
func (w *Workload) WaitEndpoints(ctx context.Context, want []netip.Addr) error {
	_, err := w.waitEndpoints(ctx, func(got []netip.Addr) bool { return sameAddrs(got, want) })
	return err
}

// waitEndpoints polls the Service's ready endpoints until ok accepts them, and returns them.
func (w *Workload) waitEndpoints(ctx context.Context, ok func([]netip.Addr) bool) ([]netip.Addr, error) {
	for {
		got, err := w.ReadyEndpoints(ctx)
		if err == nil && ok(got) {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the nfs Service's endpoints (last: %v, %v): %w", got, err, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ReadyEndpoints lists the ready addresses of the Service's EndpointSlices, sorted.
func (w *Workload) ReadyEndpoints(ctx context.Context) ([]netip.Addr, error) {
	list, err := w.c.DiscoveryV1().EndpointSlices(w.namespace).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + serviceName})
	if err != nil {
		return nil, err
	}
	items := make([]*discoveryv1.EndpointSlice, len(list.Items))
	for i := range list.Items {
		items[i] = &list.Items[i]
	}
	return readyAddrs(items), nil
}

func sameAddrs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[netip.Addr]int{}
	for _, x := range a {
		seen[x]++
	}
	for _, x := range b {
		seen[x]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

// DeletePod deletes a backend pod through the API with the given grace period (nil: the pod's).
func (w *Workload) DeletePod(ctx context.Context, name string, grace *int64) error {
	err := w.c.CoreV1().Pods(w.namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: grace})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete pod %s: %w", name, err)
	}
	return nil
}

// WaitPodGone waits until the pod object no longer exists.
func (w *Workload) WaitPodGone(ctx context.Context, name string) error {
	for {
		_, err := w.c.CoreV1().Pods(w.namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for pod %s to be gone: %w", name, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Delete removes the namespace and everything in it (the kubelet stops the pods afterwards).
func (w *Workload) Delete(ctx context.Context) error {
	err := w.c.CoreV1().Namespaces().Delete(ctx, w.namespace, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete namespace %s: %w", w.namespace, err)
	}
	return nil
}

// PodStates describes the server's pods as the cluster lists them ("name Pending, …; …"), or
// why they could not be listed.
func (w *Workload) PodStates(ctx context.Context) string {
	pods, err := w.c.CoreV1().Pods(w.namespace).List(ctx, metav1.ListOptions{LabelSelector: "app=" + appLabel})
	switch {
	case err != nil:
		return "list its pods: " + err.Error()
	case len(pods.Items) == 0:
		return "none listed"
	}
	out := podStates(pods.Items)
	for _, p := range pods.Items {
		if !podReady(p) {
			if e := w.lastEvent(ctx, p.Name); e != "" {
				out += fmt.Sprintf(" (%s, last event: %s)", p.Name, e)
			}
		}
	}
	return out
}

// lastEvent is the newest event the cluster recorded about the pod ("Reason: message"), or ""
// when there is none or the events cannot be listed: a pod stuck creating says why only there
// (a CNI plugin that failed or waits, an image that cannot be found).
func (w *Workload) lastEvent(ctx context.Context, pod string) string {
	evs, err := w.c.CoreV1().Events(w.namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
	if err != nil || len(evs.Items) == 0 {
		return ""
	}
	last := evs.Items[0]
	for _, e := range evs.Items[1:] {
		if eventTime(e).After(eventTime(last)) {
			last = e
		}
	}
	return fmt.Sprintf("%s: %.600s", last.Reason, last.Message)
}

// eventTime is when an event last happened, whichever of its clocks the recorder set.
func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

// podStates renders pods' states for a message.
func podStates(pods []corev1.Pod) string {
	states := make([]string, 0, len(pods))
	for _, p := range pods {
		states = append(states, p.Name+" "+cilium.PodState(p))
	}
	return strings.Join(states, "; ")
}
