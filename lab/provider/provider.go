// Package provider is nfslab's cluster provider for sigs.k8s.io/e2e-framework: a test suite gets
// the kind cluster that `nfslab run --keep` leaves up — created by the agent inside the VM of the
// kernel under test, the cells' NFS workloads still in it — and reads the real objects with
// klient while nfslab's verdicts are at hand. (The framework's own kind provider runs the kind
// binary on the host; here the cluster must live in the VM whose kernel is under test.)
package provider

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/e2e-framework/klient"
	"sigs.k8s.io/e2e-framework/support"

	"github.com/nfslab/nfslab/lab"
	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/reports"
	"github.com/nfslab/nfslab/scenarios"
)

// Provider runs a scenario's kind cells with lab.Run and keeps the cluster for the suite.
// Options must name the scenario (its kind cells on one kernel) and may set everything else
// lab.Run takes; Keep and Kept are the provider's.
type Provider struct {
	Options lab.Options

	name, version, path string
	kept                lab.KeptCluster
	stop                context.CancelFunc
	done                chan struct{}
	result              *reports.Result
	runErr              error
}

var _ support.E2EClusterProvider = (*Provider)(nil)

// New returns a provider that runs opts' scenario.
func New(opts lab.Options) *Provider { return &Provider{Options: opts} }

// WithName names the cluster in the suite (the kind cluster in the VM is always nfslab).
func (p *Provider) WithName(name string) support.E2EClusterProvider { p.name = name; return p }

// WithVersion is accepted for the interface: the node image's Kubernetes is nfslab's.
func (p *Provider) WithVersion(v string) support.E2EClusterProvider { p.version = v; return p }

// WithPath is accepted for the interface: no binary is run.
func (p *Provider) WithPath(path string) support.E2EClusterProvider { p.path = path; return p }

// WithOpts applies the suite's options.
func (p *Provider) WithOpts(opts ...support.ClusterOpts) support.E2EClusterProvider {
	for _, o := range opts {
		o(p)
	}
	return p
}

// SetDefaults returns the provider as it is.
func (p *Provider) SetDefaults() support.E2EClusterProvider { return p }

// Create runs the scenario in the background and returns the kept cluster's kubeconfig once the
// cells are done; it fails if the run ends (or ctx does) before a cluster is kept.
func (p *Provider) Create(ctx context.Context, _ ...string) (string, error) {
	if p.Options.Scenario == nil {
		return "", errors.New("nfslab provider: no scenario")
	}
	kept := make(chan lab.KeptCluster, 1)
	opts := p.Options
	opts.Keep = true
	opts.Kept = func(k lab.KeptCluster) { kept <- k }
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	p.stop, p.done = stop, make(chan struct{})
	go func() {
		defer close(p.done)
		p.result, p.runErr = lab.Run(runCtx, opts)
	}()
	select {
	case k := <-kept:
		p.kept = k
		return k.Kubeconfig, nil
	case <-p.done:
		return "", fmt.Errorf("nfslab provider: the run ended before a cluster was kept: %v", p.runErr)
	case <-ctx.Done():
		_ = p.Destroy(context.Background())
		return "", ctx.Err()
	}
}

// CreateWithConfig runs the scenario configFile names: a built-in's name or a file.
func (p *Provider) CreateWithConfig(ctx context.Context, configFile string) (string, error) {
	s, err := scenario.Load(configFile, scenarios.FS)
	if err != nil {
		return "", err
	}
	p.Options.Scenario = s
	return p.Create(ctx)
}

// GetKubeconfig is the kept cluster's kubeconfig (API server on the host's loopback).
func (p *Provider) GetKubeconfig() string { return p.kept.Kubeconfig }

// GenerateKubeconfig returns the same file.
func (p *Provider) GenerateKubeconfig(...string) (string, error) {
	if p.kept.Kubeconfig == "" {
		return "", errors.New("nfslab provider: no cluster yet")
	}
	return p.kept.Kubeconfig, nil
}

// GetKubectlContext is kind's context name for the cluster.
func (p *Provider) GetKubectlContext() string { return "kind-nfslab" }

// ExportLogs writes the cells' results (the evidence) to dest.
func (p *Provider) ExportLogs(_ context.Context, dest string) error {
	if p.kept.Result == nil {
		return errors.New("nfslab provider: no results yet")
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return err
	}
	return reports.WriteJSON(dest, p.kept.Result)
}

// Destroy ends the run: the kept VM powers off with its cluster.
func (p *Provider) Destroy(ctx context.Context) error {
	if p.stop == nil {
		return nil
	}
	p.stop()
	select {
	case <-p.done:
		return p.runErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WaitForControlPlane waits until the cluster's node is Ready, as the suite sees it through the
// host's forward. The cluster was Ready when kept, so this is about the path to it: a failure
// (a certificate that does not name the address, a dead forward) ends the wait after
// controlPlaneWait with the last error.
func (p *Provider) WaitForControlPlane(ctx context.Context, c klient.Client) error {
	ctx, cancel := context.WithTimeout(ctx, controlPlaneWait)
	defer cancel()
	for {
		var nodes corev1.NodeList
		err := c.Resources().List(ctx, &nodes)
		if err == nil {
			for _, n := range nodes.Items {
				for _, cond := range n.Status.Conditions {
					if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
						return nil
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for a Ready node through %s: %w (last: %v)", p.kept.Server, ctx.Err(), err)
		case <-time.After(time.Second):
		}
	}
}

// controlPlaneWait bounds WaitForControlPlane.
const controlPlaneWait = 2 * time.Minute

// KubernetesRestConfig is the client configuration of the kept cluster.
func (p *Provider) KubernetesRestConfig() *rest.Config {
	cfg, err := clientcmd.BuildConfigFromFlags("", p.kept.Kubeconfig)
	if err != nil {
		return nil
	}
	return cfg
}

// Result is the cells' results: as of the cluster being kept, or final after Destroy.
func (p *Provider) Result() *reports.Result {
	if p.result != nil {
		return p.result
	}
	return p.kept.Result
}

// Kept is the kept cluster.
func (p *Provider) Kept() lab.KeptCluster { return p.kept }

// ReportDir is where Options.ArtifactDir puts the console logs and the kubeconfig.
func (p *Provider) ReportDir() string { return filepath.Clean(p.Options.ArtifactDir) }
