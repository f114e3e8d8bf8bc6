package connecttrace

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"syscall"
)

// Byte layouts shared by the Go side and the program.
//
//	cfg value (4 bytes): watch_port[2] (network order) | pad[2]=0
//	lost      (u64, native endian): records dropped on a full ring
//	record   (40 bytes): ktime_ns u64 (native endian) | ip[4] | port[2]
//	          (network order, as in struct sockaddr_in) | kind u16 (native:
//	          kindEntry, kindReturn) | comm[16] (NUL-padded) | ret s32
//	          (native; 0 on entry) | pad[4]=0
//	pending  (u64 pid_tgid → the record's bytes 8..15, as the entry wrote
//	          them): the calls whose return is awaited

// record is one ring buffer sample.
type record struct {
	Mono uint64
	IP   [4]byte
	Port [2]byte
	Kind uint16
	Comm [commLen]byte
	Ret  int32
	Pad  [4]byte
}

// Record kinds: the function's entry (the address it was handed), or its
// return with an error.
const (
	kindEntry  = 0
	kindReturn = 1
)

// Sizes and offsets the program relies on; checked by the tests against
// record.
const (
	recordSize    = 40
	recordIPOff   = 8
	recordPortOff = 12
	recordKindOff = 14
	recordCommOff = 16
	recordRetOff  = 32
	cfgValueSize  = 4
)

// encodeConfig returns the cfg map value for cfg.
func encodeConfig(cfg Config) [cfgValueSize]byte {
	var v [cfgValueSize]byte
	binary.BigEndian.PutUint16(v[:2], cfg.WatchPort)
	return v
}

// decodeRecord parses one ring buffer sample.
func decodeRecord(raw []byte) (Connect, error) {
	if len(raw) < recordSize {
		return Connect{}, fmt.Errorf("record of %d bytes, want %d", len(raw), recordSize)
	}
	var r record
	if _, err := binary.Decode(raw[:recordSize], binary.NativeEndian, &r); err != nil {
		return Connect{}, fmt.Errorf("decode record: %w", err)
	}
	comm, _, _ := bytes.Cut(r.Comm[:], []byte{0})
	c := Connect{
		Mono: int64(r.Mono),
		Addr: netip.AddrPortFrom(netip.AddrFrom4(r.IP), binary.BigEndian.Uint16(r.Port[:])),
		Comm: string(comm),
	}
	switch r.Kind {
	case kindEntry:
	case kindReturn:
		if r.Ret >= 0 {
			return Connect{}, fmt.Errorf("return record with result %d, want an error", r.Ret)
		}
		c.Returned, c.Errno = true, syscall.Errno(-r.Ret)
	default:
		return Connect{}, fmt.Errorf("record of kind %d", r.Kind)
	}
	return c, nil
}
