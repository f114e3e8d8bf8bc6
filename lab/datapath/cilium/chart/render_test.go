package chart

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/image"
)

// kubeVersion is the Kubernetes of nfslab's kind node image (nodeimage.KubernetesVersion; not
// imported, so that this package does not pull in the node image's builder).
const kubeVersion = "v1.37.2"

// chartOf fetches the chart of a Cilium version into the user's nfslab cache (NFSLAB_CACHE, …),
// so that repeated runs are warm. Cold, it downloads Cilium's module zip (47 MB for v1.19.7,
// about 5 s here) through the Go module proxy.
func chartOf(t *testing.T, version string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("downloads Cilium's Go module (47 MB) through the Go module proxy when the nfslab cache lacks its chart: skipped with -short")
	}
	dir, err := image.DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	chart, err := Fetch(ctx, slog.New(slog.DiscardHandler), image.Cache{Dir: dir}, version)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("chart of Cilium %s in %s (%.1f s)", version, chart, time.Since(start).Seconds())
	return chart
}

func setup() cilium.Setup {
	return cilium.Setup{Cluster: "nfslab", PodCIDR: "10.244.0.0/16", AgentImage: "localhost/nfslab/cilium:test",
		OperatorImage: "localhost/nfslab/cilium-operator-generic:test", CgroupRoot: "/run/nfslab/vm-cgroup"}
}

// TestRenderCarriesNfslabsValues renders the chart of every version nfslab builds for each
// datapath and checks the objects carry what nfslab relies on: the values are the same for all
// of them, and a chart that renamed one would not run the cell its datapath names.
func TestRenderCarriesNfslabsValues(t *testing.T) {
	for _, v := range cilium.Versions() {
		t.Run(v, func(t *testing.T) { checkRender(t, chartOf(t, v)) })
	}
}

func checkRender(t *testing.T, dir string) {
	tests := []struct {
		datapath              string
		kpr, sock, hostnsOnly string // cilium-config's kube-proxy-replacement, bpf-lb-sock, bpf-lb-sock-hostns-only ("" absent)
		vmRoot                bool
	}{
		{cilium.VMRootSocketLB, "true", "true", "", true},
		{cilium.KindCgroup, "true", "true", "", false},
		{cilium.NoSocketLB, "false", "false", "", true},
		{cilium.HostNSOnly, "true", "true", "true", true},
	}
	for _, tt := range tests {
		t.Run(tt.datapath, func(t *testing.T) {
			vals, err := cilium.Required(tt.datapath, setup())
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			objs, err := Render(dir, vals, kubeVersion)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("rendered %d objects in %.2f s", len(objs), time.Since(start).Seconds())
			// Applied in this order: a namespace before what lives in it, a service account and
			// the config before the workloads that use them.
			first := map[string]int{}
			for i, o := range objs {
				if _, ok := first[o.GetKind()]; !ok {
					first[o.GetKind()] = i
				}
				if ns := o.GetNamespace(); ns != "" && ns != "kube-system" {
					if j, ok := first["Namespace"]; !ok || j > i {
						t.Errorf("%s %s/%s comes before its namespace", o.GetKind(), ns, o.GetName())
					}
				}
			}
			if first["ServiceAccount"] > first["DaemonSet"] || first["ConfigMap"] > first["DaemonSet"] || first["DaemonSet"] > first["Deployment"] {
				t.Errorf("not in Helm's install order: %v", first)
			}

			cm := configMap(t, objs, "cilium-config")
			for key, want := range map[string]string{
				"kube-proxy-replacement": tt.kpr, "bpf-lb-sock": tt.sock, "bpf-lb-sock-hostns-only": tt.hostnsOnly,
				"routing-mode": "native", "ipv4-native-routing-cidr": "10.244.0.0/16", "ipam": "kubernetes",
				"enable-l7-proxy": "false",
			} {
				if got, ok := cm.Data[key]; got != want || ok != (want != "") {
					t.Errorf("cilium-config %s = %q (present %t), want %q", key, got, ok, want)
				}
			}
			// v1.15's chart leaves the key out when Hubble is off (the agent's default is off).
			if got := cm.Data["enable-hubble"]; got == "true" {
				t.Errorf("cilium-config enable-hubble = %q, want false or absent", got)
			}

			ds := daemonSet(t, objs, "cilium")
			agent := container(t, ds.Spec.Template.Spec.Containers, "cilium-agent")
			if agent.Image != "localhost/nfslab/cilium:test" || agent.ImagePullPolicy != corev1.PullNever {
				t.Errorf("cilium-agent image %s (pull %s), want localhost/nfslab/cilium:test (pull Never)", agent.Image, agent.ImagePullPolicy)
			}
			for _, c := range ds.Spec.Template.Spec.InitContainers {
				if c.Image != "localhost/nfslab/cilium:test" || c.ImagePullPolicy != corev1.PullNever {
					t.Errorf("init container %s: image %s (pull %s), want nfslab's (pull Never)", c.Name, c.Image, c.ImagePullPolicy)
				}
			}
			mountsCgroup := hasContainer(ds.Spec.Template.Spec.InitContainers, "mount-cgroup")
			cgroupRoot := cm.Data["cgroup-root"]
			if tt.vmRoot {
				if mountsCgroup || cgroupRoot != "/run/nfslab/vm-cgroup" || hostPath(ds, "cilium-cgroup") != "/run/nfslab/vm-cgroup" {
					t.Errorf("mount-cgroup init container %t, cgroup-root %q, cilium-cgroup volume %q: want no auto-mount and nfslab's /run/nfslab/vm-cgroup",
						mountsCgroup, cgroupRoot, hostPath(ds, "cilium-cgroup"))
				}
			} else if !mountsCgroup || cgroupRoot != "/run/cilium/cgroupv2" {
				t.Errorf("mount-cgroup init container %t, cgroup-root %q: want Cilium's own (auto-mount at /run/cilium/cgroupv2)", mountsCgroup, cgroupRoot)
			}

			op := deployment(t, objs, "cilium-operator")
			if *op.Spec.Replicas != 1 {
				t.Errorf("cilium-operator replicas %d, want 1", *op.Spec.Replicas)
			}
			opc := container(t, op.Spec.Template.Spec.Containers, "cilium-operator")
			if opc.Image != "localhost/nfslab/cilium-operator-generic:test" || opc.ImagePullPolicy != corev1.PullNever {
				t.Errorf("cilium-operator image %s (pull %s), want nfslab's (pull Never)", opc.Image, opc.ImagePullPolicy)
			}
			for _, o := range objs {
				if k := o.GetKind(); strings.Contains(strings.ToLower(o.GetName()), "hubble") || k == "" {
					t.Errorf("rendered %s %s: want no Hubble object and every object with a kind", k, o.GetName())
				}
			}
		})
	}
}

// TestRenderRefusesWhatTheSchemaRefuses: the chart's values.schema.json is checked, so a value
// of the wrong type fails here rather than in a cluster.
func TestRenderRefusesWhatTheSchemaRefuses(t *testing.T) {
	dir := chartOf(t, cilium.DefaultVersion())
	vals, err := cilium.Required(cilium.VMRootSocketLB, setup())
	if err != nil {
		t.Fatal(err)
	}
	_, err = Render(dir, cilium.Merge(map[string]any{"bpf": map[string]any{"masquerade": "yes please"}}, vals), kubeVersion)
	if err == nil || !strings.Contains(err.Error(), "masquerade") {
		t.Fatalf("Render with bpf.masquerade a text = %v, want the schema's complaint about it", err)
	}
}

func TestFetchRefusesUnbuildableVersion(t *testing.T) {
	cache := image.Cache{Dir: t.TempDir()}
	_, err := Fetch(context.Background(), slog.New(slog.DiscardHandler), cache, "v1.20.2")
	var ve *cilium.VersionError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "v1.19.7") {
		t.Fatalf("Fetch(v1.20.2) = %v, want a *cilium.VersionError listing the buildable versions", err)
	}
	if entries, _ := os.ReadDir(cache.Dir); len(entries) != 0 {
		t.Errorf("Fetch of an unbuildable version left %d entries in the cache", len(entries))
	}
}

func TestKubeVersionOf(t *testing.T) {
	kv, err := kubeVersionOf("v1.37.2")
	if err != nil || kv.Major != "1" || kv.Minor != "37" || kv.Version != "v1.37.2" {
		t.Errorf("kubeVersionOf(v1.37.2) = %+v, %v", kv, err)
	}
	if _, err := kubeVersionOf("latest"); err == nil {
		t.Error("kubeVersionOf(latest) succeeded")
	}
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string, into any) {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			if o.GetNamespace() != Namespace {
				t.Errorf("%s %s in namespace %q, want %s", kind, name, o.GetNamespace(), Namespace)
			}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, into); err != nil {
				t.Fatalf("%s %s: %v", kind, name, err)
			}
			return
		}
	}
	t.Fatalf("no %s %s rendered", kind, name)
}

func configMap(t *testing.T, objs []*unstructured.Unstructured, name string) *corev1.ConfigMap {
	var cm corev1.ConfigMap
	find(t, objs, "ConfigMap", name, &cm)
	return &cm
}

func daemonSet(t *testing.T, objs []*unstructured.Unstructured, name string) *appsv1.DaemonSet {
	var ds appsv1.DaemonSet
	find(t, objs, "DaemonSet", name, &ds)
	return &ds
}

func deployment(t *testing.T, objs []*unstructured.Unstructured, name string) *appsv1.Deployment {
	var d appsv1.Deployment
	find(t, objs, "Deployment", name, &d)
	return &d
}

func container(t *testing.T, cs []corev1.Container, name string) corev1.Container {
	t.Helper()
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	return corev1.Container{}
}

func hasContainer(cs []corev1.Container, name string) bool {
	for _, c := range cs {
		if c.Name == name {
			return true
		}
	}
	return false
}

func hostPath(ds *appsv1.DaemonSet, volume string) string {
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.Name == volume && v.HostPath != nil {
			return v.HostPath.Path
		}
	}
	return ""
}
