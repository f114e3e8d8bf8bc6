package socklb

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// AttachedProgram is a sock_addr program that applies to a cgroup.
type AttachedProgram struct {
	// Attach is the hook: AttachCGroupInet4Connect, AttachCGroupUDP4Sendmsg
	// or AttachCGroupUDP4Recvmsg.
	Attach ebpf.AttachType
	// ID is the kernel's program ID (as in `bpftool prog show id ID`).
	ID ebpf.ProgramID
	// Name is the program name given at load time (nfslab's are "nfslab_*",
	// Cilium's are e.g. "cil_sock4_connect"); empty if the kernel did not
	// report one.
	Name string
	// LinkID is the bpf_link the program is attached through, 0 if it was
	// attached with BPF_PROG_ATTACH or the kernel cannot tell.
	LinkID link.ID
}

// EffectiveSockAddrPrograms lists the connect4, sendmsg4 and recvmsg4
// programs that run for sockets in the cgroup2 directory cgroupPath,
// including those inherited from its ancestors (BPF_F_QUERY_EFFECTIVE). At
// the root of the hierarchy this tells which socket-LB, if any, sees the
// kernel's own sockets, e.g. SUNRPC's.
func EffectiveSockAddrPrograms(cgroupPath string) ([]AttachedProgram, error) {
	cg, err := os.Open(cgroupPath)
	if err != nil {
		return nil, fmt.Errorf("open cgroup %s: %w", cgroupPath, err)
	}
	defer cg.Close()

	var out []AttachedProgram
	for _, p := range programList() {
		res, err := link.QueryPrograms(link.QueryOptions{
			Target:     int(cg.Fd()),
			Attach:     p.attach,
			QueryFlags: unix.BPF_F_QUERY_EFFECTIVE,
		})
		if err != nil {
			return nil, fmt.Errorf("query effective %s programs at %s: %w", p.name, cgroupPath, err)
		}
		for _, ap := range res.Programs {
			name, err := programName(ap.ID)
			if errors.Is(err, os.ErrNotExist) {
				continue // detached and freed since the query
			}
			if err != nil {
				return nil, fmt.Errorf("query effective %s programs at %s: %w", p.name, cgroupPath, err)
			}
			linkID, _ := ap.LinkID()
			out = append(out, AttachedProgram{Attach: p.attach, ID: ap.ID, Name: name, LinkID: linkID})
		}
	}
	return out, nil
}

// programName returns the name of the program with the given ID.
func programName(id ebpf.ProgramID) (string, error) {
	prog, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return "", fmt.Errorf("open program %d: %w", id, err)
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		return "", fmt.Errorf("program %d info: %w", id, err)
	}
	return info.Name, nil
}

// Cgroup2Mount returns where the cgroup2 hierarchy is mounted, according to
// /proc/mounts: /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a
// hybrid one. The first cgroup2 mount is taken.
func Cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return "", fmt.Errorf("find cgroup2 mount: %w", err)
	}
	defer f.Close()
	path, err := findCgroup2(f)
	if err != nil {
		return "", fmt.Errorf("find cgroup2 mount in /proc/mounts: %w", err)
	}
	return path, nil
}

// ErrNoCgroup2 means that no cgroup2 file system is mounted.
var ErrNoCgroup2 = errors.New("no cgroup2 mount")

// findCgroup2 returns the mount point of the first cgroup2 line of a
// /proc/mounts-style listing.
func findCgroup2(r io.Reader) (string, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || fields[2] != "cgroup2" {
			continue
		}
		return unescapeMountPath(fields[1]), nil
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", ErrNoCgroup2
}

// unescapeMountPath undoes the octal escapes (\040 for a space, …) that
// /proc/mounts uses in paths.
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
