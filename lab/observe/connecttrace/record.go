package connecttrace

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Byte layouts shared by the Go side and the program.
//
//	cfg value (4 bytes): watch_port[2] (network order) | pad[2]=0
//	lost      (u64, native endian): records dropped on a full ring
//	record   (32 bytes): ktime_ns u64 (native endian) | ip[4] | port[2]
//	          (network order, as in struct sockaddr_in) | pad[2]=0 |
//	          comm[16] (NUL-padded)

// record is one ring buffer sample.
type record struct {
	Mono uint64
	IP   [4]byte
	Port [2]byte
	Pad  [2]byte
	Comm [commLen]byte
}

// Sizes and offsets the program relies on; checked by the tests against
// record.
const (
	recordSize    = 32
	recordIPOff   = 8
	recordPortOff = 12
	recordPadOff  = 14
	recordCommOff = 16
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
	return Connect{
		Mono: int64(r.Mono),
		Addr: netip.AddrPortFrom(netip.AddrFrom4(r.IP), binary.BigEndian.Uint16(r.Port[:])),
		Comm: string(comm),
	}, nil
}
