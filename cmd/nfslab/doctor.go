package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/nfslab/nfslab/lab/doctor"
)

// How long doctor waits: for the API server (each request, and the whole cluster
// inspection), and for the checks of this machine (the cgroup walk, qemu, docker).
const (
	doctorRequestTimeout = 20 * time.Second
	doctorClusterTimeout = time.Minute
	doctorHostTimeout    = 2 * time.Minute
)

func newDoctorCmd(stdout io.Writer) *cobra.Command {
	var release, kubeconfig, output string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Is a kernel, this machine or a cluster at risk of cilium#21541, and can the lab run here",
		Long: `Without flags: this machine's kernel against nfslab's table of fixed kernels, the
connect4/sendmsg4/recvmsg4 programs attached and effective at the root cgroup, and what the
lab needs (cgroup v2, qemu, KVM, Docker; the NFS client is reported, the lab does not need it).

--kernel-release STR: only the verdict for that kernel release (a uname -r string).
--kubeconfig FILE: every node's kernel and the cluster's socket-level load balancing (Cilium's
ConfigMap), read through the API server; nothing is created in the cluster.

Exit codes: 0 nothing at risk; 1 at risk, or unknown where it matters; 2 bad input.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return usageError{fmt.Errorf("-o %q: want table or json", output)}
			}
			if release != "" && kubeconfig != "" {
				return usageError{errors.New("--kernel-release and --kubeconfig: give one of them")}
			}
			tab, err := doctor.LoadTable()
			if err != nil {
				return err
			}
			var rep doctor.Report
			switch {
			case cmd.Flags().Changed("kernel-release"):
				rel, err := doctor.ParseRelease(release)
				if err != nil {
					return usageError{fmt.Errorf("--kernel-release: %w", err)}
				}
				rep = doctor.KernelOnly(tab.Assess(rel))
			case kubeconfig != "":
				if rep, err = doctorCluster(cmd.Context(), kubeconfig, tab); err != nil {
					return err
				}
			default:
				ctx, cancel := context.WithTimeout(cmd.Context(), doctorHostTimeout)
				defer cancel()
				rep = doctor.ForHost(doctor.InspectHost(ctx, tab))
			}
			write := doctor.WriteText
			if output == "json" {
				write = doctor.WriteJSON
			}
			if err := write(stdout, rep); err != nil {
				return err
			}
			if rep.Outcome != doctor.NotAffected {
				return exitError{exitMismatch}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&release, "kernel-release", "", "judge this kernel release (uname -r form, e.g. 6.1.0-56-amd64) instead of this machine")
	f.StringVar(&kubeconfig, "kubeconfig", "", "judge every node of the cluster this kubeconfig reaches")
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

// doctorCluster inspects the cluster of a kubeconfig. A kubeconfig that cannot be read is bad
// input; a cluster that cannot be asked is an unknown outcome, reported like any other.
func doctorCluster(ctx context.Context, kubeconfig string, tab *doctor.Table) (doctor.Report, error) {
	if _, err := os.Stat(kubeconfig); err != nil {
		return doctor.Report{}, usageError{fmt.Errorf("--kubeconfig: %w", err)}
	}
	client, server, err := doctor.ClientFromKubeconfig(kubeconfig, doctorRequestTimeout)
	if err != nil {
		return doctor.Report{}, usageError{fmt.Errorf("--kubeconfig: %w", err)}
	}
	ctx, cancel := context.WithTimeout(ctx, doctorClusterTimeout)
	defer cancel()
	rep, err := doctor.InspectCluster(ctx, client, tab)
	rep.Server = server
	if err != nil {
		rep.Outcome, rep.Reason = doctor.Undecided, fmt.Sprintf("cannot ask the API server at %s: %v", server, err)
	}
	return doctor.ForCluster(rep), nil
}
