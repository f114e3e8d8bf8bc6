// Package chart gets Cilium's Helm chart and renders it, client-side, into the manifests an
// install would apply: no cluster, no helm binary, no chart repository. The chart is the one in
// Cilium's Go module (install/kubernetes/cilium), fetched through the Go module proxy like
// every other source nfslab builds from, and cached per version. It uses only Helm's chart
// loader, values and template engine (helm.sh/helm/v3/pkg/chart/loader, chartutil, engine).
package chart

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/internal/gomod"
)

// Where the chart is.
const (
	// Module is Cilium's Go module, which carries the chart.
	Module = "github.com/cilium/cilium"
	// ModulePath is the chart's directory in the module.
	ModulePath = "install/kubernetes/cilium"
	// cacheKind names the chart's artefacts in nfslab's cache.
	cacheKind = "cilium-chart"
	// chartDir is the chart's directory in its artefact.
	chartDir = "cilium"
)

// Fetch returns the directory of the chart of a Cilium version, from nfslab's cache, else
// downloaded through the Go module proxy (go mod download: GOPROXY and the checksum database
// apply) and copied into the cache. A version nfslab cannot build is a *cilium.VersionError,
// before anything is downloaded.
func Fetch(ctx context.Context, log *slog.Logger, cache image.Cache, version string) (string, error) {
	if err := cilium.CheckVersion(version); err != nil {
		return "", err
	}
	inputs := image.Inputs{"module": Module + "@" + version, "path": ModulePath}
	dir, err := cache.Artefact(ctx, log, cacheKind, inputs, func(ctx context.Context, dir string) error {
		m, err := gomod.Download(ctx, Module, version)
		if err != nil {
			return err
		}
		src := filepath.Join(m.Dir, filepath.FromSlash(ModulePath))
		if err := os.CopyFS(filepath.Join(dir, chartDir), os.DirFS(src)); err != nil {
			return fmt.Errorf("copying the chart from %s: %w", src, err)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("the chart of Cilium %s: %w", version, err)
	}
	return filepath.Join(dir, chartDir), nil
}
