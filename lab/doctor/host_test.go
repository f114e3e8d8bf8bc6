package doctor

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/nfslab/nfslab/lab/internal/bpftest"
	"github.com/nfslab/nfslab/lab/socklb"
)

func TestOwnPrograms(t *testing.T) {
	p := func(at ebpf.AttachType, id ebpf.ProgramID) socklb.AttachedProgram {
		return socklb.AttachedProgram{Attach: at, ID: id}
	}
	connect, sendmsg := ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupUDP4Sendmsg
	tests := []struct {
		name         string
		here, parent []socklb.AttachedProgram
		want         []ebpf.ProgramID
	}{
		{"inherited only", []socklb.AttachedProgram{p(connect, 1)}, []socklb.AttachedProgram{p(connect, 1)}, nil},
		{"own beside inherited", []socklb.AttachedProgram{p(connect, 7), p(connect, 1), p(sendmsg, 2)}, []socklb.AttachedProgram{p(connect, 1)}, []ebpf.ProgramID{7, 2}},
		{"same program attached twice", []socklb.AttachedProgram{p(connect, 1), p(connect, 1)}, []socklb.AttachedProgram{p(connect, 1)}, []ebpf.ProgramID{1}},
		{"override drops the parent's", []socklb.AttachedProgram{p(connect, 9)}, []socklb.AttachedProgram{p(connect, 1)}, []ebpf.ProgramID{9}},
		{"same ID on another hook", []socklb.AttachedProgram{p(sendmsg, 1)}, []socklb.AttachedProgram{p(connect, 1)}, []ebpf.ProgramID{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []ebpf.ProgramID
			for _, o := range ownPrograms(tt.here, tt.parent) {
				got = append(got, o.ID)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNFSFilesystems(t *testing.T) {
	in := "nodev\tsysfs\nnodev\ttmpfs\n\text4\nnodev\tnfs\nnodev\tnfs4\nnodev\tnfsd\n"
	if got := nfsFilesystems([]byte(in)); !slices.Equal(got, []string{"nfs", "nfs4"}) {
		t.Errorf("got %v", got)
	}
	if got := nfsFilesystems([]byte("nodev\tsysfs\n\text4\n")); got != nil {
		t.Errorf("got %v, want none", got)
	}
}

func TestHostOutcome(t *testing.T) {
	fixed := KernelReport{Verdict: Fixed}
	old := KernelReport{Verdict: NotFixed, Reason: "lacks kernel_connect"}
	odd := KernelReport{Verdict: VerdictUnsure, Reason: "cannot tell"}
	lb := SockAddr{Effective: []Program{{Hook: "connect4", ID: 3, Cgroup: "/sys/fs/cgroup"}}}
	tests := []struct {
		name string
		k    KernelReport
		sa   SockAddr
		want Outcome
	}{
		{"fixed kernel under socket-LB", fixed, lb, NotAffected},
		{"old kernel under socket-LB", old, lb, Affected},
		{"unknown kernel under socket-LB", odd, lb, Undecided},
		{"old kernel, nothing at the root", old, SockAddr{Elsewhere: lb.Effective}, NotAffected},
		{"old kernel, programs not listable", old, SockAddr{Error: "operation not permitted"}, Undecided},
		{"fixed kernel, programs not listable", fixed, SockAddr{Error: "operation not permitted"}, NotAffected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why := hostOutcome(tt.k, tt.sa)
			if got != tt.want || why == "" {
				t.Errorf("%s (%q), want %s", got, why, tt.want)
			}
		})
	}
}

// TestListSockAddrSeesProgramsBelowRoot attaches nfslab's real socket-LB programs to a
// throw-away child cgroup: they are listed as attached below the root, at that cgroup, and not
// as effective at the root (where they would cover the kernel's own sockets).
func TestListSockAddrSeesProgramsBelowRoot(t *testing.T) {
	child := bpftest.TempCgroup(t, socklb.Cgroup2Mount, socklb.ErrNoCgroup2)
	lb, err := socklb.Load(socklb.Config{WatchPort: 2049})
	if err != nil {
		t.Fatalf("load socket-LB: %v", err)
	}
	defer lb.Close() // before the cgroup is removed (cleanups run after deferred calls)
	if err := lb.Attach(child); err != nil {
		t.Fatalf("attach: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sa := listSockAddr(ctx, filepath.Dir(child))
	if sa.Error != "" || sa.Partial != "" {
		t.Fatalf("listSockAddr: error %q, partial %q", sa.Error, sa.Partial)
	}
	var below []string
	for _, p := range sa.Elsewhere {
		if p.Cgroup == child {
			below = append(below, p.Hook+" "+p.Name)
		}
	}
	slices.Sort(below)
	want := []string{"connect4 nfslab_connect4", "recvmsg4 nfslab_recvmsg4", "sendmsg4 nfslab_sendmsg4"}
	if !slices.Equal(below, want) {
		t.Errorf("attached at %s: %q, want %q (all below the root: %+v)", child, below, want, sa.Elsewhere)
	}
	for _, p := range sa.Effective {
		if strings.HasPrefix(p.Name, "nfslab_") {
			t.Errorf("test program %+v listed as effective at the root", p)
		}
	}
	if sa.Walked < 1 {
		t.Errorf("walked %d cgroups", sa.Walked)
	}
}
