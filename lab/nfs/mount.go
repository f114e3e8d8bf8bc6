package nfs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// MountSource formats the source argument of an NFS mount(2): "10.96.0.50:/export", or
// "[fd00::50]:/export" for IPv6.
//
// path is the same for every NFS version when the server runs the configuration
// RenderGaneshaConfig writes: NFSv4 clients mount the export's Pseudo path, and an NFSv3 MOUNT
// request names the Pseudo path too, because the configuration sets Mount_Path_Pseudo (without
// it ganesha 4.3 answers an NFSv3 MOUNT of the Pseudo path with MNT3ERR_ACCES and wants the
// export's real Path).
func MountSource(server netip.Addr, path string) string {
	if server.Is6() && !server.Is4In6() {
		return "[" + server.String() + "]:" + path
	}
	return server.Unmap().String() + ":" + path
}

// MountdPort is the port of the NFSv3 MOUNT service (mountd): fixed, as nfs-ganesha's MNT_Port
// and Kubernetes NFS server Services use it, so that clients can be told the port and need no
// portmapper.
const MountdPort = 20048

// Protocol names, as Kubernetes and iptables spell them.
const (
	TCP = "tcp"
	UDP = "udp"
)

// Versions returns the NFS versions MountOptions accepts (besides "4", an alias of "4.0"): the
// NFSv4 minor versions over TCP, NFSv3 over TCP ("3") and NFSv3 over UDP ("3-udp").
func Versions() []string { return []string{"4.0", "4.1", "4.2", "3", "3-udp"} }

// version is a parsed Versions value.
type version struct {
	major int    // 3 or 4
	vers  string // the vers= value: "3", "4.0", "4.1", "4.2"
	proto string // TCP or UDP
}

func parseVersion(v string) (version, error) {
	switch v {
	case "4", "4.0":
		return version{4, "4.0", TCP}, nil
	case "4.1", "4.2":
		return version{4, v, TCP}, nil
	case "3":
		return version{3, "3", TCP}, nil
	case "3-udp":
		return version{3, "3", UDP}, nil
	}
	return version{}, fmt.Errorf("unsupported NFS version %q (want %s)", v, strings.Join(Versions(), ", "))
}

// PortProto is one port a client of some NFS version reaches the server on, and therefore one
// port the Service in front of the server must carry.
type PortProto struct {
	Name     string // the Service port's name: "nfs", "mountd", "nfs-udp", "mountd-udp"
	Port     uint16
	Protocol string // TCP or UDP
}

// ServicePorts returns the ports a client of version uses, with the NFS server on nfsPort (0
// means DefaultNFSPort) and mountd on MountdPort:
//
//	4.x:   nfs 2049/tcp
//	3:     nfs 2049/tcp, mountd 20048/tcp
//	3-udp: nfs-udp 2049/udp, mountd-udp 20048/udp
//
// The names are the ones Kubernetes NFS server Services give these ports (kube-proxy hashes
// them into its chain names). No portmapper port: MountOptions tells the kernel both ports.
func ServicePorts(version string, nfsPort uint16) ([]PortProto, error) {
	v, err := parseVersion(version)
	if err != nil {
		return nil, fmt.Errorf("nfs service ports: %w", err)
	}
	if nfsPort == 0 {
		nfsPort = DefaultNFSPort
	}
	if v.major == 4 {
		return []PortProto{{Name: "nfs", Port: nfsPort, Protocol: TCP}}, nil
	}
	suffix := ""
	if v.proto == UDP {
		suffix = "-udp"
	}
	return []PortProto{
		{Name: "nfs" + suffix, Port: nfsPort, Protocol: v.proto},
		{Name: "mountd" + suffix, Port: MountdPort, Protocol: v.proto},
	}, nil
}

// ServerProtocols returns what an nfs-ganesha instance must offer to clients of version: its
// Protocols list ("4", or "3, 4" for NFSv3) and whether it must serve UDP (GaneshaParams
// Protocols and EnableUDP). A server offering NFSv3 needs an rpcbind to register with: see
// StartRPCBind.
func ServerProtocols(version string) (protocols string, udp bool, err error) {
	v, err := parseVersion(version)
	if err != nil {
		return "", false, fmt.Errorf("nfs server protocols: %w", err)
	}
	if v.major == 4 {
		return "4", false, nil
	}
	return "3, 4", v.proto == UDP, nil
}

// MountOptions builds the fstype and the text mount data that mount(2) takes for an NFS mount
// without mount.nfs, for a server at server (the Service VIP).
//
// For NFS 4.x ("4.0", "4.1", "4.2"; "4" means "4.0", which is what the kernel's "vers=4" means:
// it does not negotiate a minor version on its own) the fstype is "nfs4" and data is
//
//	vers=<version>,addr=<server>,clientaddr=<client>
//
// For NFSv3 ("3" over TCP, "3-udp" over UDP) the fstype is "nfs" and data is
//
//	vers=3,addr=<server>,proto=tcp,port=2049,mountaddr=<server>,mountproto=tcp,mountport=20048,mountvers=3,nolock
//
// (udp for "3-udp"; tcp6/udp6 for an IPv6 server). mount(2) has no mount.nfs to ask the
// server's portmapper, so both ports are given: the kernel then sends the MOUNT request and the
// NFS calls straight to them and never contacts rpcbind. nolock because the lab's servers run
// no NLM (and the client would otherwise start lockd, which wants a local rpcbind and statd).
// clientAddr is only used by NFSv4 (callbacks) and may be the zero Addr for NFSv3.
//
// extra follows (for example "hard", "timeo=10", "retrans=2"). It must not repeat an option
// MountOptions sets, except that for NFSv3 "port=N" and "mountport=N" replace the defaults (for
// a server on other ports; for NFSv4, "port=N" simply passes through). No item may be empty or
// contain a comma or white space (which would smuggle in further options).
//
// UDP: kernels built with CONFIG_NFS_DISABLE_UDP_SUPPORT=y (Debian's, and nfslab's recipe
// kernels) refuse proto=udp with EINVAL; ExplainMountError says so.
func MountOptions(version string, server netip.Addr, clientAddr netip.Addr, extra []string) (fstype, data string, err error) {
	v, err := parseVersion(version)
	if err != nil {
		return "", "", fmt.Errorf("nfs mount options: %w", err)
	}
	if !server.IsValid() {
		return "", "", errors.New("nfs mount options: server address is not set")
	}
	server = server.Unmap()
	if v.major == 4 && !clientAddr.IsValid() {
		return "", "", errors.New("nfs mount options: client address is not set")
	}
	given := map[string]bool{}
	for _, opt := range extra {
		key, _, _ := strings.Cut(opt, "=")
		key = strings.ToLower(key)
		switch {
		case opt == "" || strings.ContainsAny(opt, ", \t\n\r"):
			return "", "", fmt.Errorf("nfs mount options: invalid extra option %q", opt)
		case setByMountOptions(v, key):
			return "", "", fmt.Errorf("nfs mount options: extra option %q overrides one MountOptions sets for NFS %s", opt, version)
		case given[key] && (key == "port" || key == "mountport"):
			return "", "", fmt.Errorf("nfs mount options: extra option %q given twice", key)
		}
		given[key] = true
	}
	var parts []string
	if v.major == 4 {
		parts = []string{"vers=" + v.vers, "addr=" + server.String(), "clientaddr=" + clientAddr.Unmap().String()}
		return "nfs4", strings.Join(append(parts, extra...), ","), nil
	}
	proto := v.proto
	if server.Is6() {
		proto += "6"
	}
	parts = []string{"vers=3", "addr=" + server.String(), "proto=" + proto}
	if !given["port"] {
		parts = append(parts, fmt.Sprintf("port=%d", DefaultNFSPort))
	}
	parts = append(parts, "mountaddr="+server.String(), "mountproto="+proto)
	if !given["mountport"] {
		parts = append(parts, fmt.Sprintf("mountport=%d", MountdPort))
	}
	parts = append(parts, "mountvers=3", "nolock")
	return "nfs", strings.Join(append(parts, extra...), ","), nil
}

// setByMountOptions reports whether the option key (lower case) is one MountOptions sets for v
// and extra may not repeat: the version, the addresses, and for NFSv3 the transports, the MOUNT
// version and locking.
func setByMountOptions(v version, key string) bool {
	switch key {
	case "vers", "nfsvers", "minorversion", "addr", "clientaddr", "v2", "v3", "v4", "v4.0", "v4.1", "v4.2":
		return true
	}
	if v.major == 3 {
		switch key {
		case "proto", "mountproto", "tcp", "udp", "rdma", "mountaddr", "mounthost", "mountvers", "lock", "nolock", "local_lock":
			return true
		}
	}
	return false
}

// Mount creates target (and its parents) and mounts source on it with mount(2), flags 0 and the
// text options data (see MountOptions).
//
// The syscall runs in its own goroutine. If ctx ends first, Mount returns ctx's error at once, but
// the syscall may stay blocked in the kernel (an NFS mount waits for the server) and may even
// succeed later: the goroutine and the OS thread it occupies stay behind until then, and the
// caller should still Unmount target during cleanup. The agent itself is never blocked.
//
// The NFS client takes its network namespace from the calling thread, so call Mount from the
// node's (root) namespace, never from a goroutine locked into a pod's namespace.
func Mount(ctx context.Context, source, target, fstype, data string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mount %s on %s: %w", source, target, err)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("mount %s on %s: %w", source, target, err)
	}
	done := make(chan error, 1) // buffered: an abandoned syscall must not block its goroutine
	go func() { done <- unix.Mount(source, target, fstype, 0, data) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("mount %s on %s (%s, %q): %w", source, target, fstype, data, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mount %s on %s: abandoned, the syscall may still be blocked in the kernel: %w", source, target, ctx.Err())
	}
}

// Unmount detaches whatever is mounted on target: first umount2(MNT_FORCE), which aborts the
// NFS client's pending RPCs, and when that fails (typically EBUSY because a stuck probe still
// holds a file open) umount2(MNT_DETACH), which lazily detaches the mount.
//
// A target that is not a mount point (EINVAL) or does not exist (ENOENT) counts as unmounted:
// Unmount is safe to call during any cleanup. Like Mount, it runs the syscalls in a goroutine
// and returns ctx's error if ctx ends first, leaving the syscall behind.
func Unmount(ctx context.Context, target string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	done := make(chan error, 1)
	go func() { done <- UnmountNow(target) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("unmount %s: abandoned, the syscall may still be blocked in the kernel: %w", target, ctx.Err())
	}
}

// UnmountNow is Unmount's work on the calling thread, without a deadline: for a caller that has
// entered another mount namespace on a locked thread and is itself abandonable.
func UnmountNow(target string) error {
	forceErr := unix.Unmount(target, unix.MNT_FORCE)
	if forceErr == nil || errors.Is(forceErr, unix.EINVAL) || errors.Is(forceErr, unix.ENOENT) {
		return nil
	}
	if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil // went away between the two calls
		}
		return fmt.Errorf("unmount %s: MNT_FORCE: %v; MNT_DETACH: %w", target, forceErr, err)
	}
	return nil
}
