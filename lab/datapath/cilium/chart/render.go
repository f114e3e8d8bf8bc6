package chart

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
)

// Release is how the chart is installed.
const (
	ReleaseName = "cilium"
	Namespace   = "kube-system"
)

// Render renders the chart in dir with values (Helm's values: the chart's own, then these on
// top, checked against the chart's schema) for a cluster of the given Kubernetes version
// ("v1.37.2"), and returns the objects in the order Helm installs them (by kind: namespaces,
// service accounts and config before the workloads that use them; within a kind, by template
// name). Templates that use lookup (Hubble's TLS) get nothing from it: there is no cluster.
func Render(dir string, values map[string]any, kubeVersion string) ([]*unstructured.Unstructured, error) {
	ch, err := loader.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("loading the chart in %s: %w", dir, err)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	if kubeVersion != "" {
		kv, err := kubeVersionOf(kubeVersion)
		if err != nil {
			return nil, err
		}
		caps.KubeVersion = kv
	}
	opts := chartutil.ReleaseOptions{Name: ReleaseName, Namespace: Namespace, IsInstall: true, Revision: 1}
	vals, err := chartutil.ToRenderValues(ch, values, opts, caps)
	if err != nil {
		return nil, fmt.Errorf("values for chart %s %s: %w", ch.Name(), ch.Metadata.Version, err)
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		return nil, fmt.Errorf("rendering chart %s %s: %w", ch.Name(), ch.Metadata.Version, err)
	}
	var out []*unstructured.Unstructured
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if !strings.HasSuffix(name, ".yaml") && !strings.HasSuffix(name, ".yml") {
			continue // NOTES.txt, helpers
		}
		objs, err := decode(files[name])
		if err != nil {
			return nil, fmt.Errorf("rendered %s: %w", name, err)
		}
		out = append(out, objs...)
	}
	slices.SortStableFunc(out, func(a, b *unstructured.Unstructured) int {
		return installRank(a.GetKind()) - installRank(b.GetKind())
	})
	return out, nil
}

// installRank is a kind's place in Helm's install order; kinds Helm does not list go last.
func installRank(kind string) int {
	if i := slices.Index(releaseutil.InstallOrder, kind); i >= 0 {
		return i
	}
	return len(releaseutil.InstallOrder)
}

// decode splits a rendered template into its objects, skipping empty documents.
func decode(manifest string) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	r := yaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(manifest)), 4096)
	for {
		var obj map[string]any
		if err := r.Decode(&obj); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		if len(obj) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: obj})
	}
}

// kubeVersionOf reads "v1.37.2" as Helm's Capabilities want it.
func kubeVersionOf(v string) (chartutil.KubeVersion, error) {
	parts := strings.SplitN(strings.TrimPrefix(v, "v"), ".", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return chartutil.KubeVersion{}, fmt.Errorf("kubernetes version %q: want v<major>.<minor>.<patch>", v)
	}
	return chartutil.KubeVersion{Version: "v" + strings.TrimPrefix(v, "v"), Major: parts[0], Minor: parts[1]}, nil
}
