package socklb

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Byte layouts shared by the Go side and the BPF programs.
//
// All addresses and ports are stored exactly as they appear in a
// struct sockaddr_in (and therefore in struct bpf_sock_addr's user_ip4 and
// the low 16 bits of user_port): network byte order. The programs copy them
// with 4-byte (address) and 2-byte (port) loads and stores, so the layout is
// the same on little- and big-endian machines.
//
//	addrKey   (8 bytes): ip[4] | port[2] | pad[2]=0
//	svcValue  (8 bytes): ip[4] | port[2] | flags u8 | pad u8=0
//	           flags: bit 0 flagHasBackend, bit 1 flagRefuse
//	rev value          : an addrKey (the VIP)
//	stats     (array of u64, native endian): statRewrites, statRefused,
//	           statNonVIP, statLastNonVIPDest (low 4 bytes = ip[4]),
//	           statLostHookEvents
//	cfg       (array, 1 entry of 4 bytes): watchPort[2] | pad[2]=0
//	hook event (ring buffer record, 56 bytes):
//	           mono u64 (native endian, bpf_ktime_get_ns) | in addrKey |
//	           out addrKey | action u8 | hook u8 | kernelSocket u8 |
//	           pad[5]=0 | pidTgid u64 (native endian,
//	           bpf_get_current_pid_tgid) | comm[16] (bpf_get_current_comm)
//	user_socks (LRU hash): socket cookie u64 → pidTgid u64 of the task
//	           whose socket(2) created it (native endian)

// addrKey is the 8-byte (IPv4 address, port) tuple used as the key of the
// svc and rev maps and as the value of the rev map.
type addrKey struct {
	IP   [4]byte // network byte order
	Port [2]byte // network byte order
	Pad  [2]byte // always zero
}

// svcValue is the 8-byte value of the svc map: the backend and flags.
type svcValue struct {
	IP    [4]byte // network byte order; zero without a backend
	Port  [2]byte // network byte order; zero without a backend
	Flags uint8   // flagHasBackend | flagRefuse
	Pad   uint8   // always zero
}

// cfgValue is the 4-byte value of the single entry of the cfg map.
type cfgValue struct {
	WatchPort [2]byte // network byte order; zero disables the NonVIP counter
	Pad       [2]byte // always zero
}

// svcValue flags.
const (
	flagHasBackend uint8 = 1 << 0
	flagRefuse     uint8 = 1 << 1
)

// Indexes into the stats array map.
const (
	statRewrites uint32 = iota
	statRefused
	statNonVIP
	statLastNonVIPDest
	statLostHookEvents
	numStats
)

// Offsets and sizes the programs rely on; checked by the unit tests against
// the Go structs above.
const (
	addrKeySize      = 8
	svcValueSize     = 8
	svcValueIPOff    = 0
	svcValuePortOff  = 4
	svcValueFlagsOff = 6
	cfgValueSize     = 4

	hookRecordSize       = 56
	hookRecordInOff      = 8
	hookRecordOutOff     = 16
	hookRecordActionOff  = 24
	hookRecordHookOff    = 25
	hookRecordKernelOff  = 26
	hookRecordPadOff     = 27
	hookRecordPidTgidOff = 32
	hookRecordCommOff    = 40
	commLen              = 16
	userSockKeySize      = 8
	userSockValueSize    = 8
)

// hookRecord is a hook event as the forward programs write it into the ring
// buffer.
type hookRecord struct {
	Mono         uint64  // bpf_ktime_get_ns: CLOCK_MONOTONIC
	In           addrKey // destination handed to the hook
	Out          addrKey // destination after the hook; zero when refused
	Action       uint8   // action* below
	Hook         uint8   // hook* below
	KernelSocket uint8   // 1: no process created the socket while the programs were attached
	Pad          [5]byte // always zero
	PidTgid      uint64  // bpf_get_current_pid_tgid: tgid in the upper 32 bits
	Comm         [commLen]byte
}

// Action codes of a hookRecord.
const (
	actionRewrite uint8 = iota + 1
	actionRefuse
	actionPassThrough
	actionNonVIP
)

// Hook codes of a hookRecord.
const (
	hookConnect4 uint8 = iota + 1
	hookSendmsg4
)

// decodeHookRecord parses one ring buffer sample.
func decodeHookRecord(raw []byte) (HookEvent, error) {
	var r hookRecord
	if len(raw) < hookRecordSize {
		return HookEvent{}, fmt.Errorf("hook event of %d bytes, want %d", len(raw), hookRecordSize)
	}
	if _, err := binary.Decode(raw[:hookRecordSize], binary.NativeEndian, &r); err != nil {
		return HookEvent{}, fmt.Errorf("decode hook event: %w", err)
	}
	comm, _, _ := bytes.Cut(r.Comm[:], []byte{0})
	ev := HookEvent{Mono: int64(r.Mono), In: r.In.addrPort(), PID: uint32(r.PidTgid >> 32), Comm: string(comm), KernelSocket: r.KernelSocket != 0}
	if r.Out != (addrKey{}) {
		ev.Out = r.Out.addrPort()
	}
	switch r.Action {
	case actionRewrite:
		ev.Action = ActionRewrite
	case actionRefuse:
		ev.Action = ActionRefuse
	case actionPassThrough:
		ev.Action = ActionPassThrough
	case actionNonVIP:
		ev.Action = ActionNonVIP
	default:
		return HookEvent{}, fmt.Errorf("hook event with unknown action %d", r.Action)
	}
	switch r.Hook {
	case hookConnect4:
		ev.Hook = HookConnect4
	case hookSendmsg4:
		ev.Hook = HookSendmsg4
	default:
		return HookEvent{}, fmt.Errorf("hook event with unknown hook %d", r.Hook)
	}
	return ev, nil
}

// encodeAddr converts an IPv4 (or IPv4-mapped IPv6) address and port into
// its map form. Port 0 and non-IPv4 addresses are rejected.
func encodeAddr(ap netip.AddrPort) (addrKey, error) {
	addr := ap.Addr().Unmap()
	if !ap.IsValid() || !addr.Is4() {
		return addrKey{}, fmt.Errorf("%v is not an IPv4 address and port", ap)
	}
	if ap.Port() == 0 {
		return addrKey{}, fmt.Errorf("%v has port 0", ap)
	}
	k := addrKey{IP: addr.As4()}
	binary.BigEndian.PutUint16(k.Port[:], ap.Port())
	return k, nil
}

// addrPort converts a map address back into a netip.AddrPort.
func (k addrKey) addrPort() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4(k.IP), binary.BigEndian.Uint16(k.Port[:]))
}

// encodeService returns the svc map key and value for s.
func encodeService(s Service) (addrKey, svcValue, error) {
	key, err := encodeAddr(s.VIP)
	if err != nil {
		return addrKey{}, svcValue{}, fmt.Errorf("service VIP: %w", err)
	}
	var val svcValue
	if s.Refuse {
		val.Flags |= flagRefuse
	}
	if s.Backend.IsValid() {
		be, err := encodeAddr(s.Backend)
		if err != nil {
			return addrKey{}, svcValue{}, fmt.Errorf("service %v backend: %w", s.VIP, err)
		}
		val.IP, val.Port = be.IP, be.Port
		val.Flags |= flagHasBackend
	}
	return key, val, nil
}

// backend returns the backend stored in v, if there is one.
func (v svcValue) backend() (addrKey, bool) {
	if v.Flags&flagHasBackend == 0 {
		return addrKey{}, false
	}
	return addrKey{IP: v.IP, Port: v.Port}, true
}

// encodeConfig returns the cfg map value for cfg.
func encodeConfig(cfg Config) cfgValue {
	var v cfgValue
	binary.BigEndian.PutUint16(v.WatchPort[:], cfg.WatchPort)
	return v
}

// decodeLastDest extracts the IPv4 address stored in the low 4 bytes (in
// memory order) of the statLastNonVIPDest slot. A zero slot yields the zero
// netip.Addr (no destination recorded yet).
func decodeLastDest(slot [8]byte) netip.Addr {
	ip := [4]byte(slot[:4])
	if ip == [4]byte{} {
		return netip.Addr{}
	}
	return netip.AddrFrom4(ip)
}
