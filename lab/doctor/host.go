package doctor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/nfslab/nfslab/lab/cluster/vm"
	"github.com/nfslab/nfslab/lab/hosttools"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/kernel"
	"github.com/nfslab/nfslab/lab/socklb"
)

// Outcome is the answer of a whole doctor run: is anything at risk.
type Outcome string

// Outcomes. Unknown counts as affected for the exit code: it is reported only where it matters
// (a socket-level load balancer is there, or could not be ruled out).
const (
	NotAffected Outcome = "not-affected"
	Affected    Outcome = "affected"
	Undecided   Outcome = "unknown"
)

// Check is one fact about this machine and what it means for nfslab.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Program is a connect4, sendmsg4 or recvmsg4 program and the cgroup it is attached to.
type Program struct {
	Hook   string `json:"hook"`
	ID     uint32 `json:"id"`
	Name   string `json:"name,omitempty"`
	Cgroup string `json:"cgroup"`
}

// SockAddr is what sock_addr programs this machine has: those effective at the root of the
// cgroup2 hierarchy see every socket the kernel itself creates (SUNRPC's for NFS, CIFS's,
// Ceph's); those attached below the root see only processes in their cgroup.
type SockAddr struct {
	Root      string    `json:"root"`
	Effective []Program `json:"effective_at_root"`
	Elsewhere []Program `json:"attached_below_root"`
	Walked    int       `json:"cgroups_walked"`
	// Error is why the programs could not be listed (not root, no cgroup2, …).
	Error string `json:"error,omitempty"`
	// Partial is why the walk below the root stopped early.
	Partial string `json:"partial,omitempty"`
}

// HostReport is `nfslab doctor` on this machine.
type HostReport struct {
	Kernel   KernelReport `json:"kernel"`
	SockAddr SockAddr     `json:"sock_addr"`
	Checks   []Check      `json:"checks"`
	Outcome  Outcome      `json:"outcome"`
	Reason   string       `json:"reason"`
}

// maxCgroups bounds the walk of the cgroup2 tree; a machine with more cgroups is reported as
// partially walked.
const maxCgroups = 5000

// InspectHost looks at this machine: its kernel against the table, the sock_addr programs in
// its cgroup2 hierarchy, and what nfslab needs to run (an NFS client is not one of them: the
// lab mounts inside its VMs). Every blocking step is bounded by ctx.
func InspectHost(ctx context.Context, tab *Table) HostReport {
	var rep HostReport
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		rep.Kernel = KernelReport{Verdict: VerdictUnsure, Reason: fmt.Sprintf("uname: %v", err)}
	} else {
		rep.Kernel = tab.AssessString(unix.ByteSliceToString(uts.Release[:]))
	}
	root, err := socklb.Cgroup2Mount()
	if err != nil {
		rep.SockAddr.Error = err.Error()
		rep.Checks = append(rep.Checks, Check{Name: "cgroup v2", Detail: err.Error() + " (the socket-LB datapath of nfslab runs in its VMs, which mount their own)"})
	} else {
		rep.SockAddr = listSockAddr(ctx, root)
		rep.Checks = append(rep.Checks, cgroupCheck(root))
	}
	rep.Checks = append(rep.Checks, nfsClientCheck(rep.Kernel.Release), qemuCheck(ctx), kvmCheck(ctx, rep.Kernel.Release), dockerCheck(ctx))
	rep.Outcome, rep.Reason = hostOutcome(rep.Kernel, rep.SockAddr)
	return rep
}

// hostOutcome: the machine is at risk when its kernel lacks a fix and a program can rewrite
// the kernel's own connects, i.e. one is effective at the root cgroup.
func hostOutcome(k KernelReport, sa SockAddr) (Outcome, string) {
	switch {
	case k.Verdict == Fixed:
		return NotAffected, "the kernel carries the fixes: a socket-level load balancer cannot re-point NFS or SMB mounts here"
	case sa.Error != "":
		return Undecided, fmt.Sprintf("the kernel is %s (%s) and the sock_addr programs at the root cgroup could not be listed: %s", k.Verdict, k.Reason, sa.Error)
	case len(sa.Effective) > 0:
		return outcomeFor(k.Verdict), fmt.Sprintf("the kernel is %s (%s) and %d connect4/sendmsg4/recvmsg4 program(s) are effective at the root cgroup, where the kernel's own NFS and SMB sockets are", k.Verdict, k.Reason, len(sa.Effective))
	default:
		return NotAffected, fmt.Sprintf("the kernel is %s (%s), but no connect4/sendmsg4/recvmsg4 program is effective at the root cgroup: nothing rewrites the kernel's own connects now (installing a socket-level load balancer would change that)", k.Verdict, k.Reason)
	}
}

// outcomeFor is the outcome where a socket-level load balancer covers a kernel's sockets.
func outcomeFor(v Verdict) Outcome {
	switch v {
	case Fixed:
		return NotAffected
	case NotFixed:
		return Affected
	default:
		return Undecided
	}
}

// listSockAddr lists the programs effective at root and, walking the tree, those attached
// below it: a cgroup's own programs are those in its effective list beyond its parent's.
func listSockAddr(ctx context.Context, root string) SockAddr {
	sa := SockAddr{Root: root}
	eff, err := socklb.EffectiveSockAddrPrograms(root)
	if err != nil {
		sa.Error = err.Error()
		return sa
	}
	sa.Effective = programs(eff, root)
	effective := map[string][]socklb.AttachedProgram{root: eff}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == root {
				return err
			}
			return fs.SkipDir // a cgroup removed or unreadable during the walk
		}
		if !d.IsDir() || path == root {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if sa.Walked >= maxCgroups {
			return fmt.Errorf("stopped after %d cgroups", maxCgroups)
		}
		sa.Walked++
		here, err := socklb.EffectiveSockAddrPrograms(path)
		if err != nil {
			return fs.SkipDir
		}
		effective[path] = here
		sa.Elsewhere = append(sa.Elsewhere, programs(ownPrograms(here, effective[filepath.Dir(path)]), path)...)
		return nil
	})
	if err != nil {
		sa.Partial = err.Error()
	}
	return sa
}

// ownPrograms returns the programs of an effective list that its parent's list does not
// account for (a multiset difference by hook and ID: the same program attached at both levels
// runs twice).
func ownPrograms(here, parent []socklb.AttachedProgram) []socklb.AttachedProgram {
	type key struct {
		hook ebpf.AttachType
		id   ebpf.ProgramID
	}
	left := map[key]int{}
	for _, p := range parent {
		left[key{p.Attach, p.ID}]++
	}
	var own []socklb.AttachedProgram
	for _, p := range here {
		k := key{p.Attach, p.ID}
		if left[k] > 0 {
			left[k]--
			continue
		}
		own = append(own, p)
	}
	return own
}

func programs(ps []socklb.AttachedProgram, cgroup string) []Program {
	out := make([]Program, 0, len(ps))
	for _, p := range ps {
		out = append(out, Program{Hook: hookName(p.Attach), ID: uint32(p.ID), Name: p.Name, Cgroup: cgroup})
	}
	return out
}

// hookName names an attach type as bpftool does.
func hookName(attach ebpf.AttachType) string {
	switch attach {
	case ebpf.AttachCGroupInet4Connect:
		return "connect4"
	case ebpf.AttachCGroupUDP4Sendmsg:
		return "sendmsg4"
	case ebpf.AttachCGroupUDP4Recvmsg:
		return "recvmsg4"
	}
	return attach.String()
}

func cgroupCheck(root string) Check {
	c := Check{Name: "cgroup v2", OK: true, Detail: "unified hierarchy at " + root}
	if root != "/sys/fs/cgroup" {
		c.Detail = "cgroup2 at " + root + " beside cgroup v1 hierarchies (hybrid)"
	}
	return c
}

// nfsClientCheck says whether the running kernel can mount NFS: in /proc/filesystems, or as a
// module of /lib/modules/<release>. The lab does not need it (it mounts inside its VMs); a
// node that mounts NFS does.
func nfsClientCheck(release string) Check {
	c := Check{Name: "NFS client"}
	if data, err := os.ReadFile("/proc/filesystems"); err == nil {
		if fss := nfsFilesystems(data); len(fss) > 0 {
			c.OK, c.Detail = true, "in the kernel: "+strings.Join(fss, ", ")+" in /proc/filesystems"
			return c
		}
	}
	dir := filepath.Join("/lib/modules", release)
	idx, err := kernel.ReadModuleIndex(dir)
	switch {
	case err == nil && (idx.Path["nfsv4"] != "" || idx.Path["nfs"] != ""):
		c.OK, c.Detail = true, "as a module, not loaded (modprobe nfsv4)"
	case err == nil:
		c.Detail = "not in /proc/filesystems, and " + dir + " has no nfs module"
	case errors.Is(err, fs.ErrNotExist):
		c.Detail = "not in /proc/filesystems, and no " + dir + " (a kernel without loadable modules)"
	default:
		c.Detail = fmt.Sprintf("not in /proc/filesystems; modules: %v", err)
	}
	c.Detail += "; nfslab mounts NFS inside its VMs and does not need it"
	return c
}

// nfsFilesystems returns the NFS file systems of a /proc/filesystems listing.
func nfsFilesystems(data []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 && (f[len(f)-1] == "nfs" || f[len(f)-1] == "nfs4") {
			out = append(out, f[len(f)-1])
		}
	}
	return out
}

func qemuCheck(ctx context.Context) Check {
	c := Check{Name: "qemu"}
	path, err := hosttools.Path("qemu-system-x86_64")
	if err != nil {
		c.Detail = "qemu-system-x86_64 not found: apt-get install qemu-system-x86"
		return c
	}
	out, err := runBounded(ctx, 10*time.Second, path, "--version")
	if err != nil {
		c.Detail = fmt.Sprintf("%s --version: %v", path, err)
		return c
	}
	first, _, _ := strings.Cut(out, "\n")
	c.OK, c.Detail = true, path+": "+first
	return c
}

// kvmCheck says whether nfslab's VMs can use KVM: /dev/kvm must open, and no earlier run on
// this host (kernel release, qemu) may have found that KVM does not bring a VM up.
func kvmCheck(ctx context.Context, release string) Check {
	if !vm.KVMUsable() {
		return Check{Name: "KVM", Detail: "/dev/kvm cannot be opened read-write: VMs run under TCG (slower, still correct)"}
	}
	if dir, err := image.DefaultCacheDir(); err == nil {
		memo := vm.NewKVMMemo(dir, release, vm.QEMUVersion(ctx))
		if reason, at, failed := memo.Failed(); failed {
			return Check{Name: "KVM", Detail: fmt.Sprintf("/dev/kvm opens, but a run on %s found that KVM does not bring a VM up here (%s): runs use TCG (slower, still correct); nfslab run --accel kvm tries KVM again", at.Format(time.DateOnly), reason)}
		}
	}
	return Check{Name: "KVM", OK: true, Detail: "/dev/kvm opens read-write; nfslab run tries KVM and falls back to TCG (and remembers it) if a VM does not come up"}
}

func dockerCheck(ctx context.Context) Check {
	c := Check{Name: "Docker"}
	path, err := hosttools.Path("docker")
	if err != nil {
		c.Detail = "docker not found (needed only for kind clusters): apt-get install docker.io"
		return c
	}
	out, err := runBounded(ctx, 15*time.Second, path, "version", "--format", "{{.Server.Version}}")
	if err != nil {
		c.Detail = fmt.Sprintf("docker version: %v (needed only for kind clusters)", err)
		return c
	}
	c.OK, c.Detail = true, "server "+strings.TrimSpace(out)
	return c
}

// runBounded runs a command with a deadline and returns its standard output; on failure the
// error carries the last line of its standard error.
func runBounded(ctx context.Context, d time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("no answer within %s", d)
		}
		if msg != "" {
			return "", fmt.Errorf("%w: %s", err, msg)
		}
		return "", err
	}
	return stdout.String(), nil
}
