package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/nfslab/nfslab/lab"
	"github.com/nfslab/nfslab/lab/cluster/vm"
	"github.com/nfslab/nfslab/lab/datapath"
	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/kernel"
	"github.com/nfslab/nfslab/lab/scenario"
	"github.com/nfslab/nfslab/scenarios"
)

// selection is what run and demo share: the scenario, the kernels, cluster forms and datapaths
// that replace its axes, the artefact cache and the VM accelerator.
type selection struct {
	ref                          string
	datapaths, clusters, kernels []string
	cacheDir, accel              string
}

func (s *selection) addFlags(f *pflag.FlagSet) {
	f.StringVar(&s.ref, "scenario", "default", "built-in scenario name or path to a scenario file")
	all := append(datapath.Names(), cilium.Datapaths()...)
	f.StringSliceVar(&s.datapaths, "datapath", nil, "only these datapaths ("+strings.Join(all, ", ")+"; "+
		strings.Join(kindOnly(all, datapath.NetnsNames()), ", ")+" on a kind cluster only); replaces the scenario's list")
	f.StringSliceVar(&s.clusters, "cluster", nil, "only these cluster forms ("+strings.Join(scenario.Clusters(), ", ")+"); replaces the scenario's list")
	f.StringSliceVar(&s.kernels, "kernel", nil, "only these kernels (debian-stock, a recipe name, or a bzImage path); replaces the scenario's list")
	f.StringVar(&s.cacheDir, "cache-dir", "", "artefact cache for root filesystems and kernels (default $NFSLAB_CACHE or ~/.cache/nfslab)")
	f.StringVar(&s.accel, "accel", "auto", "VM accelerator: auto (KVM when it works, else TCG), kvm or tcg")
}

// kindOnly lists the names of all that the netns form lacks.
func kindOnly(all, netns []string) []string {
	var out []string
	for _, n := range all {
		if !slices.Contains(netns, n) {
			out = append(out, n)
		}
	}
	return out
}

// load checks the accelerator, loads the scenario and applies --kernel, --cluster and --datapath.
func (s *selection) load() (*scenario.Scenario, error) {
	if err := checkAccel(s.accel); err != nil {
		return nil, err
	}
	sc, err := scenario.Load(s.ref, scenarios.FS)
	if err != nil {
		return nil, err
	}
	if err := sc.Filter(scenario.Override{Kernels: s.kernels, Clusters: s.clusters, Datapaths: s.datapaths}); err != nil {
		return nil, err
	}
	return sc, nil
}

// checkAccel checks an --accel value.
func checkAccel(accel string) error {
	switch accel {
	case vm.AccelAuto, vm.AccelKVM, vm.AccelTCG:
		return nil
	}
	return usageError{fmt.Errorf("--accel %q: want auto, kvm or tcg", accel)}
}

// checkKernels checks the kernels of sc before anything is created, naming where each was given:
// the scenario file's matrix.kernels, or --kernel.
func (s *selection) checkKernels(sc *scenario.Scenario) error {
	file, field := s.ref, "matrix.kernels"
	if len(s.kernels) > 0 {
		file, field = "", "--kernel"
	}
	return sc.CheckKernels(file, field, kernel.Preflight)
}

// cache is the artefact cache directory: --cache-dir, else the default.
func (s *selection) cache() (string, error) {
	return cacheDirOrDefault(s.cacheDir)
}

// cacheDirOrDefault is a --cache-dir flag's value, or nfslab's default cache directory when the
// flag is empty (an error finding it is the lab's, exit 3).
func cacheDirOrDefault(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	dir, err := image.DefaultCacheDir()
	if err != nil {
		return "", &lab.LabError{Err: err}
	}
	return dir, nil
}
