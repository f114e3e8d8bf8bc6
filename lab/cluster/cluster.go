// Package cluster holds what every form of cluster shares: the service a cell mounts and the
// backend pods that serve it. The forms live below it:
//
//   - netns/: pods as network namespaces inside the VM of the kernel under test, nfs-ganesha
//     processes as their servers, and nfslab standing in for the endpoint controller;
//   - kind/: a real kind cluster in the VM's Docker engine: nfs-ganesha as a Deployment behind a
//     ClusterIP Service made with client-go, the real kube-proxy (or none, for socket-LB);
//   - vm/: the qemu VM itself, where the kernel under test runs.
//
// The cell runner (lab/agent) drives a cluster through a small interface of its own; each form
// reports the addresses *it* chose on the timeline (event.ServiceObs, event.BackendObs), and the
// verdict reads them from there.
package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/nfslab/nfslab/lab/datapath"
)

// Service is the ClusterIP service that fronts the NFS server.
type Service struct {
	Name  string // namespace/name
	VIP   netip.Addr
	Ports []datapath.Port
}

// NFSPort is the service's file-serving port, NFS's or SMB's (the first port: nfs.ServicePorts
// lists NFS's first).
func (s Service) NFSPort() uint16 {
	if len(s.Ports) == 0 {
		return 0
	}
	return s.Ports[0].Port
}

// PortNames renders each port as "2049/tcp".
func (s Service) PortNames() []string {
	names := make([]string, len(s.Ports))
	for i, p := range s.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = "tcp"
		}
		names[i] = fmt.Sprintf("%d/%s", p.Port, proto)
	}
	return names
}

// PortList renders the ports as "2049/tcp, 20048/tcp".
func (s Service) PortList() string { return strings.Join(s.PortNames(), ", ") }

// Backend is a pod serving NFS.
type Backend interface {
	Name() string
	Addr() netip.Addr
	// Fault kills the pod with the named fault (one of the form's fault names) and returns once
	// the fault is done as the form defines it; each form records what happened on the timeline.
	Fault(ctx context.Context, name string) error
}
