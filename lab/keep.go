package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/nfslab/nfslab/lab/agent"
	"github.com/nfslab/nfslab/lab/cluster/vm"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/kernel"
	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/reports"
)

// keptAPIServerPort is where a kept cluster's API server listens in the VM.
const keptAPIServerPort = 6443

// freeLoopbackPort asks the kernel for a free TCP port on 127.0.0.1.
func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// KeptCluster is a kind cluster nfslab run --keep left up.
type KeptCluster struct {
	Kernel     string
	Kubeconfig string // a file whose API server is the host's forward
	Server     string // https://127.0.0.1:<port>
	ProxyMode  string
	// Result holds the cells' results so far: all of them, when the kept VM was the last.
	Result *reports.Result
}

// checkKeep refuses --keep for a run that has no kind cell, or kind cells on several kernels
// (one VM is kept).
func checkKeep(opts Options, groups [][]scenario.Cell) error {
	if !opts.Keep {
		return nil
	}
	var kernels []string
	for _, g := range groups {
		if g[0].Cluster == scenario.ClusterKind {
			kernels = append(kernels, g[0].Kernel)
		}
	}
	switch {
	case len(kernels) == 0:
		return &InputError{Err: errors.New("--keep keeps a kind cluster up: the run has no kind cell (add --cluster kind)")}
	case len(kernels) > 1:
		return &InputError{Err: fmt.Errorf("--keep keeps one VM, and the run's kind cells are on %d kernels (%s): choose one with --kernel", len(kernels), strings.Join(kernels, ", "))}
	}
	return nil
}

// keep hands the kept cluster to Options.Kept — its kubeconfig rewritten to the host's forward,
// written next to the reports — and holds the VM until ctx ends, then tells the agent to stop.
func (r *runner) keep(ctx context.Context, k kernel.Kernel, machine *vm.VM, kept *event.Kept, setup machineSetup) {
	kc := KeptCluster{Kernel: k.Name, ProxyMode: kept.ProxyMode}
	if len(setup.forwards) == 1 {
		kc.Server = fmt.Sprintf("https://127.0.0.1:%d", setup.forwards[0].HostPort)
	}
	dir := r.opts.ArtifactDir
	if dir == "" {
		dir = r.work
	}
	kc.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.p.say("kept: %v", err)
	}
	text := serverLine().ReplaceAllString(kept.Kubeconfig, "${1}"+kc.Server)
	if err := os.WriteFile(kc.Kubeconfig, []byte(text), 0o600); err != nil {
		r.p.say("kept: cannot write the kubeconfig: %v", err)
	}
	r.record(func(res *reports.Result) {
		snap := *res
		snap.Cells = slices.Clone(res.Cells)
		kc.Result = &snap
	})
	if r.opts.Kept != nil {
		r.opts.Kept(kc)
	}
	<-ctx.Done()
	_ = machine.Send(agent.Stop{Stop: true})
}

// serverLine matches a kubeconfig's server line, keeping its indentation and key.
func serverLine() *regexp.Regexp { return regexp.MustCompile(`(?m)^(\s*server:\s*).*$`) }
