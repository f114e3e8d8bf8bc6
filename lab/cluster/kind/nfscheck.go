package kind

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/nfslab/nfslab/lab/datapath/cilium"
	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/nfs"
)

// nodeMountDir is where a kind node mounts the service, inside the node's mount namespace.
const nodeMountDir = "/mnt/nfslab"

// NodePID is the PID (in the VM) of the init of the cluster's node container: its network and
// mount namespaces are the node's, and /proc/<pid>/root is the node's filesystem.
func NodePID(ctx context.Context) (int, error) {
	out, err := Docker(ctx, "inspect", "--format", "{{.State.Pid}}", controlPlaneNode)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("the node container's PID %q: %v", out, err)
	}
	return pid, nil
}

// InNode runs a command in the node's network and mount namespaces (the node's own binaries).
func InNode(ctx context.Context, pid int, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--target", strconv.Itoa(pid), "--net", "--mount", "--"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("in the kind node: %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// bestEffort returns out whatever err says: for diagnostics.
func bestEffort(out []byte, _ error) []byte { return out }

// podReadyTimeout bounds the wait for the smoke test's server pod.
const podReadyTimeout = 10 * time.Minute

// CheckNFS is the kind form's NFS smoke test on a running cluster: nfs-ganesha (image) as a
// Deployment behind a ClusterIP Service, its pod Ready and listed in the Service's
// EndpointSlice, the VIP mounted from the node by the VM kernel's NFS client (soft, so nothing
// can hang), a file written and read back through the mount, the server address the kernel
// shows in the node's /proc/mounts; then everything is removed.
func CheckNFS(ctx context.Context, c *Cluster, image string) (event.NFSCheckObs, error) {
	var obs event.NFSCheckObs
	conf, err := nfs.RenderGaneshaConfig(nfs.GaneshaParams{
		BindAddr: netip.IPv4Unspecified(), ExportPath: "/export", PseudoPath: "/export", RecoveryRoot: "/var/lib/nfs/ganesha",
	})
	if err != nil {
		return obs, err
	}
	w := NewWorkload(c.Client, "nfslab-check", image, conf, c.ServerNode)
	defer func() { _ = w.Delete(context.WithoutCancel(ctx)) }()
	start := time.Now()
	vip, err := w.CreateService(ctx, []corev1.ServicePort{ServicePort("nfs", nfs.DefaultNFSPort)})
	if err != nil {
		return obs, err
	}
	if err := w.CreateServer(ctx, nfs.DefaultNFSPort); err != nil {
		return obs, err
	}
	obs.VIP = vip.String()
	// The pod's first start is a few seconds with kube-proxy; with Cilium its endpoint is
	// compiled first (minutes under TCG).
	pctx, cancel := context.WithTimeout(ctx, podReadyTimeout)
	pod, err := w.WaitReadyPod(pctx, nil)
	cancel()
	if err != nil {
		if c.Cilium != "" {
			err = ciliumPodWhy(ctx, err)
		}
		return obs, err
	}
	obs.Pod, obs.PodIP, obs.PodReadySeconds = pod.Name, pod.IP.String(), time.Since(start).Seconds()
	if err := w.WaitEndpoints(ctx, []netip.Addr{pod.IP}); err != nil {
		return obs, err
	}
	obs.EndpointsSeconds = time.Since(start).Seconds()

	pid, err := NodePID(ctx)
	if err != nil {
		return obs, err
	}
	t0 := time.Now()
	if _, err := InNode(ctx, pid, "mkdir", "-p", nodeMountDir); err != nil {
		return obs, err
	}
	// The EndpointSlice is ready before kube-proxy has programmed the VIP (seconds under TCG);
	// until then a connect to the VIP leaves the node and the VM answers "network unreachable".
	// So the mount is retried for a while, and the time it took is the datapath's readiness.
	mctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for {
		_, err := InNode(mctx, pid, "mount", "-t", "nfs4", "-o", "vers=4.1,proto=tcp,soft,timeo=100,retrans=2",
			vip.String()+":/export", nodeMountDir)
		if err == nil {
			break
		}
		obs.MountAttempts++
		if mctx.Err() != nil {
			route := lastOf(string(bestEffort(InNode(ctx, pid, "ip", "route", "get", vip.String()))), 1)
			if c.Cilium != "" {
				return obs, fmt.Errorf("%w (after %d attempts; the node's route to %s: %s; Cilium's service table: %s)", err,
					obs.MountAttempts, vip, route, agentSays(ctx, 20, "service", "list"))
			}
			return obs, fmt.Errorf("%w (after %d attempts; the node's route to %s: %s; kube-proxy's rules for it: %s; kube-proxy said: %s)", err,
				obs.MountAttempts, vip, route,
				lastOf(string(bestEffort(InNode(ctx, pid, "sh", "-c", "iptables-save -t nat | grep -c "+vip.String()+"; nft list ruleset 2>/dev/null | grep -c "+vip.String()))), 2),
				lastOf(string(bestEffort(InNode(ctx, pid, "sh", "-c", "tail -n 4 /var/log/pods/kube-system_kube-proxy*/*/*.log | cut -c1-300"))), 4))
		}
		time.Sleep(2 * time.Second)
	}
	defer func() {
		uctx := context.WithoutCancel(ctx)
		if _, err := InNode(uctx, pid, "umount", "-f", nodeMountDir); err != nil {
			_, _ = InNode(uctx, pid, "umount", "-l", nodeMountDir)
		}
	}()
	obs.MountSeconds = time.Since(t0).Seconds()

	// Through /proc/<pid>/root the VM's namespace reaches the node's mount.
	file := filepath.Join("/proc", strconv.Itoa(pid), "root", nodeMountDir, "nfslab-check")
	data := []byte(fmt.Sprintf("written through %s at %s\n", vip, time.Now().UTC().Format(time.RFC3339Nano)))
	if err := os.WriteFile(file, data, 0o644); err != nil {
		return obs, fmt.Errorf("write through the mount: %w", err)
	}
	back, err := os.ReadFile(file)
	if err != nil || !bytes.Equal(back, data) {
		return obs, fmt.Errorf("read back through the mount: %v (%d bytes)", err, len(back))
	}
	obs.ReadBack = true

	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "mounts"))
	if err != nil {
		return obs, err
	}
	defer f.Close()
	entries, err := nfs.ParseMounts(f)
	if err != nil {
		return obs, err
	}
	m, ok := nfs.FindMount(entries, nodeMountDir)
	if !ok {
		return obs, fmt.Errorf("%s is not in the node's /proc/mounts", nodeMountDir)
	}
	obs.MountSource = m.Source
	obs.MountAddr, _ = m.Option("addr")
	if c.Cilium != "" {
		bs, ok, err := cilium.ServiceBackends(ctx, nodeExec(controlPlaneNode), netip.AddrPortFrom(vip, nfs.DefaultNFSPort))
		switch {
		case err != nil:
			return obs, fmt.Errorf("read Cilium's service table: %w", err)
		case !ok:
			obs.CiliumBackends = "not in Cilium's service table"
		default:
			obs.CiliumBackends = cilium.FormatBackends(bs)
		}
	}
	return obs, nil
}
