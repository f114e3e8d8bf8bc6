package kind

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"text/template"

	"golang.org/x/sys/unix"

	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/manifests"
)

// renderConfig writes kind's config for the cluster, and the kubeadm patches it mounts.
func renderConfig(cfg ClusterConfig) ([]byte, error) {
	known := false
	for _, m := range ProxyModes() {
		known = known || m == cfg.ProxyMode
	}
	if !known {
		return nil, fmt.Errorf("kube-proxy mode %q: want one of %v", cfg.ProxyMode, ProxyModes())
	}
	if cfg.Nodes < 0 || cfg.nodes() > MaxNodes {
		return nil, fmt.Errorf("%d nodes: a lab cluster has 1 or %d", cfg.Nodes, MaxNodes)
	}
	if err := checkCilium(cfg); err != nil {
		return nil, err
	}
	patchDir := filepath.Join(clusterDir, "patches")
	if err := os.MkdirAll(patchDir, 0o755); err != nil {
		return nil, err
	}
	patches, err := fs.Glob(manifests.FS, "kind/patches/*.yaml")
	if err != nil {
		return nil, err
	}
	for _, p := range patches {
		b, err := manifests.FS.ReadFile(p)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(patchDir, filepath.Base(p)), b, 0o644); err != nil {
			return nil, err
		}
	}
	if err := mountExport(); err != nil {
		return nil, err
	}
	return configText(cfg, patchDir)
}

// mountExport mounts a tmpfs on exportDir (once): the export every backend pod serves.
func mountExport() error {
	if err := os.MkdirAll(exportDir, 0o755); err != nil {
		return err
	}
	var st, parent unix.Stat_t
	if unix.Stat(exportDir, &st) == nil && unix.Stat(clusterDir, &parent) == nil && st.Dev != parent.Dev {
		return nil // already a mount point
	}
	if err := unix.Mount("tmpfs", exportDir, "tmpfs", 0, "mode=0777"); err != nil {
		return fmt.Errorf("mount the export's tmpfs on %s: %w", exportDir, err)
	}
	return nil
}

// configText renders manifests/kind/cluster.yaml.tmpl for cfg (its kube-proxy mode, API server
// port and pod network), with the kubeadm patches in patchDir.
func configText(cfg ClusterConfig, patchDir string) ([]byte, error) {
	text, err := manifests.FS.ReadFile("kind/cluster.yaml.tmpl")
	if err != nil {
		return nil, err
	}
	t, err := template.New("cluster").Option("missingkey=error").Parse(string(text))
	if err != nil {
		return nil, fmt.Errorf("kind cluster template: %w", err)
	}
	var b bytes.Buffer
	vmCgroup := ""
	if cfg.Cilium != nil && cilium.VMRoot(cfg.Cilium.Datapath) {
		vmCgroup = cilium.NodeCgroupRoot
	}
	if err := t.Execute(&b, map[string]any{"ProxyMode": cfg.ProxyMode, "PatchDir": patchDir, "ExportDir": exportDir, "ExportPath": ExportHostPath,
		"APIServerPort": cfg.APIServerPort, "KindCNI": cfg.KindCNI, "Workers": make([]struct{}, cfg.nodes()-1),
		"NodeIPAM": cfg.KindCNI || cfg.Cilium != nil, "VMCgroup": vmCgroup}); err != nil {
		return nil, fmt.Errorf("kind cluster template: %w", err)
	}
	return b.Bytes(), nil
}
