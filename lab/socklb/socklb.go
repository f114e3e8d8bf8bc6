// Package socklb is nfslab's built-in socket-LB: BPF programs and maps with
// cilium/ebpf.
//
// It does what Cilium's socket-LB does for the cases the lab needs, and no
// more: a cgroup/connect4 and a cgroup/sendmsg4 program rewrite the
// destination of connect() and sendmsg() from a service VIP to its backend,
// and a cgroup/recvmsg4 program rewrites the source of UDP replies from the
// backend back to the VIP. Attached at the root of the cgroup2 hierarchy, the
// connect4 hook also sees the kernel's own sockets (SUNRPC), which is what
// cilium/cilium#21541 is about: on a kernel without 0bdf399342c5 ("net: Avoid
// address overwrite in kernel_connect") the rewrite lands in SUNRPC's only
// copy of the server address.
//
// As an instrument the forward programs also count connect()s and sendmsg()s
// to a watched port whose destination is not a known VIP, and remember the
// last such destination: on a vulnerable kernel, NFS reconnects after a
// failover show up there with the old backend's address — and so does any
// process's connect to that address, so the counter alone proves nothing.
// Every invocation that concerns a VIP or the watched port is also reported,
// with what the hook received and returned and who called, as a HookEvent
// (ReadHookEvents). A cgroup/sock_create program records the sockets
// processes create (the kernel does not run it for its own), so that each
// event says whether the socket is the kernel's own (SUNRPC's, the CIFS
// client's). The service map can be read back (LB.Service for one VIP,
// LB.VIPs for all) to observe what the hook forwards a VIP to.
//
// The programs are written with github.com/cilium/ebpf/asm (no clang, no
// BTF), use bpf_map_lookup_elem and bpf_map_update_elem, atomic adds,
// bpf_ktime_get_ns, bpf_ringbuf_output, bpf_get_socket_cookie,
// bpf_get_current_pid_tgid and bpf_get_current_comm (all callable from
// cgroup sock and sock_addr programs since 5.10, see net/core/filter.c), and
// load on Linux 5.10 and newer (ring buffers need 5.8; bpf_link for cgroups
// 5.7, recvmsg4 5.2), including in the BPF interpreter.
package socklb

import (
	"golang.org/x/sys/unix"

	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
)

// Service maps a VIP (ip:port, IPv4, TCP and UDP) to at most one backend.
type Service struct {
	// VIP is the service address that clients connect to. It must be an
	// IPv4 (or IPv4-mapped) address with a non-zero port.
	VIP netip.AddrPort
	// Backend receives the connections to VIP. The zero value means that
	// the service has no backend right now.
	Backend netip.AddrPort
	// Refuse applies when there is no backend: connect() and sendmsg() to
	// VIP fail with EPERM (the program returns 0, as Cilium's does). Without
	// Refuse they go through unchanged.
	Refuse bool
}

// Config holds load-time settings.
type Config struct {
	// WatchPort enables the NonVIP instrument: connect()s and sendmsg()s to
	// this port whose destination is not a known VIP are counted and
	// reported as ActionNonVIP hook events. Zero disables it.
	WatchPort uint16
}

// Stats are the counters kept by the BPF programs since Load.
type Stats struct {
	// Rewrites counts connect()s and sendmsg()s redirected to a backend.
	Rewrites uint64
	// Refused counts connect()s and sendmsg()s refused for lack of a backend.
	Refused uint64
	// NonVIP counts connect()s and sendmsg()s to Config.WatchPort whose
	// destination was not a known VIP.
	NonVIP uint64
	// LastNonVIPDest is the destination of the last NonVIP event; the zero
	// Addr if there was none.
	LastNonVIPDest netip.Addr
	// LostHookEvents counts hook events dropped because the ring buffer
	// was full (nobody reading, or reading too slowly).
	LostHookEvents uint64
}

// LB is a loaded socket-LB: its maps, programs and cgroup links. Its methods
// are safe for concurrent use. Close must be called on every exit path.
type LB struct {
	mu     sync.Mutex
	coll   *ebpf.Collection
	events *ringbuf.Reader // hook events; its own locking
	links  []link.Link
	closed bool
}

// Load creates the maps and loads the programs (cgroup/connect4,
// cgroup/sendmsg4, cgroup/recvmsg4) without attaching them, and opens the
// hook event ring buffer. It raises the
// process's memlock rlimit, which kernels before 5.11 charge BPF memory to.
func Load(cfg Config) (*LB, error) {
	// Raise the limit directly rather than through cilium/ebpf's rlimit package: that package
	// probes the kernel from an init function, which in the lab VM runs before /proc is mounted.
	// Raising it can fail without CAP_SYS_RESOURCE; kernels since 5.11 charge BPF memory to the
	// memory cgroup instead and do not need it, and on older ones the load below fails with
	// EPERM, wrapped with what was being loaded.
	_ = raiseMemlock()
	coll, err := ebpf.NewCollection(collectionSpec())
	if err != nil {
		return nil, fmt.Errorf("load socket-LB programs and maps: %w", err)
	}
	if err := coll.Maps[mapCfg].Update(uint32(0), encodeConfig(cfg), ebpf.UpdateAny); err != nil {
		coll.Close()
		return nil, fmt.Errorf("set socket-LB watch port %d: %w", cfg.WatchPort, err)
	}
	events, err := ringbuf.NewReader(coll.Maps[mapHook])
	if err != nil {
		coll.Close()
		return nil, fmt.Errorf("open socket-LB hook event ring buffer: %w", err)
	}
	return &LB{coll: coll, events: events}, nil
}

// Attach attaches the programs to the cgroup2 directory cgroupPath (the root
// of the hierarchy to cover the kernel's own sockets): sock_create first, so
// that sockets created from then on are told from the kernel's own, then
// the three sock_addr programs. The links
// are kept until Close; they are bpf_links (Linux 5.7+), so they also go away
// when the process exits. If one attachment fails, the ones made by this call
// are undone. Attach a given cgroup at most once: programs attached twice run
// twice, and the second run sees the backend, not the VIP.
func (lb *LB) Attach(cgroupPath string) error {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return fmt.Errorf("attach socket-LB at %s: %w", cgroupPath, ErrClosed)
	}
	var links []link.Link
	progs := programList()
	for _, p := range append([]progSpec{sockCreate}, progs[:]...) {
		l, err := link.AttachCgroup(link.CgroupOptions{
			Path:    cgroupPath,
			Attach:  p.attach,
			Program: lb.coll.Programs[p.name],
		})
		if err != nil {
			for _, l := range links {
				_ = l.Close() // best effort: the attach error is the one to report
			}
			return fmt.Errorf("attach %s at %s: %w", p.name, cgroupPath, err)
		}
		links = append(links, l)
	}
	lb.links = append(lb.links, links...)
	return nil
}

// SetService inserts or replaces the service s.VIP. The reverse entry
// (backend → VIP) used by recvmsg4 is written before the forward entry, and a
// replaced backend's reverse entry is removed (or handed to another service
// that still uses that backend) afterwards. When several services share a
// backend, UDP replies from it are attributed to one of them: the one set
// last.
func (lb *LB) SetService(s Service) error {
	key, val, err := encodeService(s)
	if err != nil {
		return fmt.Errorf("set service: %w", err)
	}
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return fmt.Errorf("set service %v: %w", s.VIP, ErrClosed)
	}
	svc, rev := lb.coll.Maps[mapSvc], lb.coll.Maps[mapRev]

	old, hadOld, err := lookupService(svc, key)
	if err != nil {
		return fmt.Errorf("set service %v: %w", s.VIP, err)
	}
	be, hasBackend := val.backend()
	if hasBackend {
		if err := rev.Update(be, key, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("set service %v: reverse entry for %v: %w", s.VIP, s.Backend, err)
		}
	}
	if err := svc.Update(key, val, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("set service %v: forward entry: %w", s.VIP, err)
	}
	if oldBe, ok := old.backend(); hadOld && ok && (!hasBackend || oldBe != be) {
		if err := dropReverse(svc, rev, oldBe, key); err != nil {
			return fmt.Errorf("set service %v: drop stale backend: %w", s.VIP, err)
		}
	}
	return nil
}

// DeleteService removes the service vip and its reverse entry. Deleting a
// service that does not exist is not an error.
func (lb *LB) DeleteService(vip netip.AddrPort) error {
	key, err := encodeAddr(vip)
	if err != nil {
		return fmt.Errorf("delete service: %w", err)
	}
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return fmt.Errorf("delete service %v: %w", vip, ErrClosed)
	}
	svc, rev := lb.coll.Maps[mapSvc], lb.coll.Maps[mapRev]

	old, hadOld, err := lookupService(svc, key)
	if err != nil {
		return fmt.Errorf("delete service %v: %w", vip, err)
	}
	if !hadOld {
		return nil
	}
	if err := svc.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete service %v: forward entry: %w", vip, err)
	}
	if be, ok := old.backend(); ok {
		if err := dropReverse(svc, rev, be, key); err != nil {
			return fmt.Errorf("delete service %v: %w", vip, err)
		}
	}
	return nil
}

// VIPs reads the service map back: the VIPs it holds, in the map's order.
func (lb *LB) VIPs() ([]netip.AddrPort, error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return nil, fmt.Errorf("read socket-LB services: %w", ErrClosed)
	}
	var (
		vips []netip.AddrPort
		k    addrKey
		v    svcValue
		iter = lb.coll.Maps[mapSvc].Iterate()
	)
	for iter.Next(&k, &v) {
		vips = append(vips, k.addrPort())
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("read socket-LB services: %w", err)
	}
	return vips, nil
}

// ProgramIDs are the kernel's IDs of the LB's programs (as EffectiveSockAddrPrograms reports
// them), so that a caller can tell them from another socket-LB's.
func (lb *LB) ProgramIDs() ([]ebpf.ProgramID, error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return nil, fmt.Errorf("read socket-LB program IDs: %w", ErrClosed)
	}
	var ids []ebpf.ProgramID
	for _, p := range programList() {
		info, err := lb.coll.Programs[p.name].Info()
		if err != nil {
			return nil, fmt.Errorf("read socket-LB program %s info: %w", p.name, err)
		}
		id, ok := info.ID()
		if !ok {
			return nil, fmt.Errorf("read socket-LB program %s ID: the kernel does not report it", p.name)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// Service reads back the service vip from the map the programs read: what
// the hook forwards vip to now. ok is false when vip is not a service.
func (lb *LB) Service(vip netip.AddrPort) (svc Service, ok bool, err error) {
	key, err := encodeAddr(vip)
	if err != nil {
		return Service{}, false, fmt.Errorf("read back service: %w", err)
	}
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return Service{}, false, fmt.Errorf("read back service %v: %w", vip, ErrClosed)
	}
	val, ok, err := lookupService(lb.coll.Maps[mapSvc], key)
	if err != nil || !ok {
		if err != nil {
			err = fmt.Errorf("read back service %v: %w", vip, err)
		}
		return Service{}, false, err
	}
	svc = Service{VIP: key.addrPort(), Refuse: val.Flags&flagRefuse != 0}
	if be, has := val.backend(); has {
		svc.Backend = be.addrPort()
	}
	return svc, true, nil
}

// Stats reads the counters.
func (lb *LB) Stats() (Stats, error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return Stats{}, fmt.Errorf("read socket-LB stats: %w", ErrClosed)
	}
	m := lb.coll.Maps[mapStats]
	var st Stats
	for _, c := range []struct {
		idx uint32
		dst *uint64
	}{
		{statRewrites, &st.Rewrites},
		{statRefused, &st.Refused},
		{statNonVIP, &st.NonVIP},
		{statLostHookEvents, &st.LostHookEvents},
	} {
		if err := m.Lookup(c.idx, c.dst); err != nil {
			return Stats{}, fmt.Errorf("read socket-LB stat %d: %w", c.idx, err)
		}
	}
	var slot [8]byte
	if err := m.Lookup(statLastNonVIPDest, &slot); err != nil {
		return Stats{}, fmt.Errorf("read socket-LB last non-VIP destination: %w", err)
	}
	st.LastNonVIPDest = decodeLastDest(slot)
	return st, nil
}

// Close detaches every link, stops ReadHookEvents and closes the programs
// and maps. It is safe to call more than once; later calls return nil.
func (lb *LB) Close() error {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return nil
	}
	lb.closed = true
	var errs []error
	for _, l := range lb.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach socket-LB link: %w", err))
		}
	}
	lb.links = nil
	if err := lb.events.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close socket-LB hook event reader: %w", err))
	}
	lb.coll.Close()
	return errors.Join(errs...)
}

// ErrClosed is returned (wrapped) by methods called after Close.
var ErrClosed = errors.New("socket-LB is closed")

// lookupService reads svc[key]; ok is false when there is no such entry.
func lookupService(svc *ebpf.Map, key addrKey) (val svcValue, ok bool, err error) {
	err = svc.Lookup(key, &val)
	switch {
	case errors.Is(err, ebpf.ErrKeyNotExist):
		return svcValue{}, false, nil
	case err != nil:
		return svcValue{}, false, fmt.Errorf("look up forward entry: %w", err)
	}
	return val, true, nil
}

// dropReverse is called when the service vip stops using backend (the
// forward entry is already updated or gone). If rev[backend] points at vip,
// it is re-pointed at another service that still uses backend, or deleted.
func dropReverse(svc, rev *ebpf.Map, backend, vip addrKey) error {
	var cur addrKey
	err := rev.Lookup(backend, &cur)
	switch {
	case errors.Is(err, ebpf.ErrKeyNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("look up reverse entry for %v: %w", backend.addrPort(), err)
	case cur != vip:
		return nil // another service owns this backend's reverse entry
	}
	var (
		k    addrKey
		v    svcValue
		iter = svc.Iterate()
	)
	for iter.Next(&k, &v) {
		if be, ok := v.backend(); ok && be == backend && k != vip {
			if err := rev.Update(backend, k, ebpf.UpdateAny); err != nil {
				return fmt.Errorf("re-point reverse entry for %v to %v: %w", backend.addrPort(), k.addrPort(), err)
			}
			return nil
		}
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("scan services for backend %v: %w", backend.addrPort(), err)
	}
	if err := rev.Delete(backend); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete reverse entry for %v: %w", backend.addrPort(), err)
	}
	return nil
}

// raiseMemlock lifts RLIMIT_MEMLOCK as far as the process may.
func raiseMemlock() error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim); err != nil {
		return err
	}
	want := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
	if err := unix.Setrlimit(unix.RLIMIT_MEMLOCK, &want); err == nil {
		return nil
	}
	lim.Cur = lim.Max
	return unix.Setrlimit(unix.RLIMIT_MEMLOCK, &lim)
}
