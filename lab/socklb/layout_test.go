package socklb

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"unsafe"

	"github.com/nfslab/nfslab/lab/internal/bpftest"
)

func TestLayoutSizes(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		want int
	}{
		{"addrKey", addrKey{}, addrKeySize},
		{"svcValue", svcValue{}, svcValueSize},
		{"cfgValue", cfgValue{}, cfgValueSize},
		{"hookRecord", hookRecord{}, hookRecordSize},
	} {
		if got := binary.Size(tc.v); got != tc.want {
			t.Errorf("binary.Size(%s) = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestEncodeService(t *testing.T) {
	tests := []struct {
		name    string
		svc     Service
		wantKey [8]byte
		wantVal [8]byte
		wantErr string
	}{
		{
			name:    "backend",
			svc:     Service{VIP: netip.MustParseAddrPort("10.96.0.50:2049"), Backend: netip.MustParseAddrPort("10.0.0.11:2049")},
			wantKey: [8]byte{10, 96, 0, 50, 0x08, 0x01, 0, 0},
			wantVal: [8]byte{10, 0, 0, 11, 0x08, 0x01, flagHasBackend, 0},
		},
		{
			name:    "backend on another port, refuse ignored by the programs",
			svc:     Service{VIP: netip.MustParseAddrPort("127.0.0.50:80"), Backend: netip.MustParseAddrPort("127.0.0.1:65535"), Refuse: true},
			wantKey: [8]byte{127, 0, 0, 50, 0, 80, 0, 0},
			wantVal: [8]byte{127, 0, 0, 1, 0xff, 0xff, flagHasBackend | flagRefuse, 0},
		},
		{
			name:    "no backend, refuse",
			svc:     Service{VIP: netip.MustParseAddrPort("10.96.0.50:2049"), Refuse: true},
			wantKey: [8]byte{10, 96, 0, 50, 0x08, 0x01, 0, 0},
			wantVal: [8]byte{0, 0, 0, 0, 0, 0, flagRefuse, 0},
		},
		{
			name:    "no backend, pass through",
			svc:     Service{VIP: netip.MustParseAddrPort("10.96.0.50:2049")},
			wantKey: [8]byte{10, 96, 0, 50, 0x08, 0x01, 0, 0},
		},
		{
			name:    "IPv4-mapped VIP is accepted",
			svc:     Service{VIP: netip.MustParseAddrPort("[::ffff:10.96.0.50]:2049")},
			wantKey: [8]byte{10, 96, 0, 50, 0x08, 0x01, 0, 0},
		},
		{name: "IPv6 VIP", svc: Service{VIP: netip.MustParseAddrPort("[fd00::1]:2049")}, wantErr: "not an IPv4"},
		{name: "zero VIP", svc: Service{}, wantErr: "not an IPv4"},
		{name: "VIP port 0", svc: Service{VIP: netip.MustParseAddrPort("10.96.0.50:0")}, wantErr: "port 0"},
		{
			name:    "IPv6 backend",
			svc:     Service{VIP: netip.MustParseAddrPort("10.96.0.50:2049"), Backend: netip.MustParseAddrPort("[fd00::1]:2049")},
			wantErr: "backend",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key, val, err := encodeService(tc.svc)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("encodeService(%+v) error = %v, want one containing %q", tc.svc, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("encodeService(%+v): %v", tc.svc, err)
			}
			if got := toBytes(t, key); got != tc.wantKey {
				t.Errorf("key = % x, want % x", got, tc.wantKey)
			}
			if got := toBytes(t, val); got != tc.wantVal {
				t.Errorf("value = % x, want % x", got, tc.wantVal)
			}
			if got, want := key.addrPort(), netip.AddrPortFrom(tc.svc.VIP.Addr().Unmap(), tc.svc.VIP.Port()); got != want {
				t.Errorf("key.addrPort() = %v, want %v", got, want)
			}
		})
	}
}

func TestEncodeConfig(t *testing.T) {
	if got, want := toBytes4(t, encodeConfig(Config{WatchPort: 2049})), [4]byte{0x08, 0x01, 0, 0}; got != want {
		t.Errorf("encodeConfig(2049) = % x, want % x", got, want)
	}
	if got := toBytes4(t, encodeConfig(Config{})); got != [4]byte{} {
		t.Errorf("encodeConfig(0) = % x, want zeros", got)
	}
}

func TestDecodeLastDest(t *testing.T) {
	if got := decodeLastDest([8]byte{}); got.IsValid() {
		t.Errorf("decodeLastDest(zero) = %v, want the zero Addr", got)
	}
	if got, want := decodeLastDest([8]byte{10, 0, 0, 11}), netip.MustParseAddr("10.0.0.11"); got != want {
		t.Errorf("decodeLastDest = %v, want %v", got, want)
	}
}

func TestHookRecordOffsets(t *testing.T) {
	var r hookRecord
	for _, tc := range []struct {
		name      string
		got, want uintptr
	}{
		{"In", unsafe.Offsetof(r.In), hookRecordInOff},
		{"Out", unsafe.Offsetof(r.Out), hookRecordOutOff},
		{"Action", unsafe.Offsetof(r.Action), hookRecordActionOff},
		{"Hook", unsafe.Offsetof(r.Hook), hookRecordHookOff},
		{"KernelSocket", unsafe.Offsetof(r.KernelSocket), hookRecordKernelOff},
		{"Pad", unsafe.Offsetof(r.Pad), hookRecordPadOff},
		{"PidTgid", unsafe.Offsetof(r.PidTgid), hookRecordPidTgidOff},
		{"Comm", unsafe.Offsetof(r.Comm), hookRecordCommOff},
		{"size", unsafe.Sizeof(r), hookRecordSize},
	} {
		if tc.got != tc.want {
			t.Errorf("offset of hookRecord.%s = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
}

func TestDecodeHookRecord(t *testing.T) {
	// A process's socket, pid 812 (thread 813), comm "curl".
	raw := func(mono uint64, in, out [6]byte, action, hook uint8) []byte {
		b := binary.NativeEndian.AppendUint64(nil, mono)
		b = append(b, in[:]...)
		b = append(b, 0, 0)
		b = append(b, out[:]...)
		b = append(b, 0, 0, action, hook, 0, 0, 0, 0, 0, 0)
		b = binary.NativeEndian.AppendUint64(b, 812<<32|813)
		return append(b, "curl\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"...)
	}
	var (
		vip  = [6]byte{10, 96, 0, 50, 0x08, 0x01}
		podA = [6]byte{10, 0, 0, 11, 0x08, 0x01}
	)
	// SUNRPC's socket, sent on from a kworker: kernelSocket set, a comm of 16 bytes
	// without a NUL.
	kernelRaw := func() []byte {
		b := raw(5, podA, podA, actionNonVIP, hookConnect4)
		b[hookRecordKernelOff] = 1
		copy(b[hookRecordCommOff:], "kworker/u4:2-rpc")
		return b
	}
	tests := []struct {
		name    string
		raw     []byte
		want    HookEvent
		wantErr string
	}{
		{
			name: "rewrite",
			raw:  raw(42, vip, podA, actionRewrite, hookConnect4),
			want: HookEvent{
				Mono: 42, Hook: HookConnect4, Action: ActionRewrite,
				In:  netip.MustParseAddrPort("10.96.0.50:2049"),
				Out: netip.MustParseAddrPort("10.0.0.11:2049"),
				PID: 812, Comm: "curl",
			},
		},
		{
			name: "refuse has no output",
			raw:  raw(7, vip, [6]byte{}, actionRefuse, hookSendmsg4),
			want: HookEvent{Mono: 7, Hook: HookSendmsg4, Action: ActionRefuse, In: netip.MustParseAddrPort("10.96.0.50:2049"), PID: 812, Comm: "curl"},
		},
		{
			name: "non-VIP",
			raw:  raw(1, podA, podA, actionNonVIP, hookConnect4),
			want: HookEvent{
				Mono: 1, Hook: HookConnect4, Action: ActionNonVIP,
				In:  netip.MustParseAddrPort("10.0.0.11:2049"),
				Out: netip.MustParseAddrPort("10.0.0.11:2049"),
				PID: 812, Comm: "curl",
			},
		},
		{
			name: "the kernel's own socket",
			raw:  kernelRaw(),
			want: HookEvent{
				Mono: 5, Hook: HookConnect4, Action: ActionNonVIP,
				In:           netip.MustParseAddrPort("10.0.0.11:2049"),
				Out:          netip.MustParseAddrPort("10.0.0.11:2049"),
				KernelSocket: true, PID: 812, Comm: "kworker/u4:2-rpc",
			},
		},
		{
			name: "pass-through",
			raw:  raw(1, vip, vip, actionPassThrough, hookConnect4),
			want: HookEvent{
				Mono: 1, Hook: HookConnect4, Action: ActionPassThrough,
				In:  netip.MustParseAddrPort("10.96.0.50:2049"),
				Out: netip.MustParseAddrPort("10.96.0.50:2049"),
				PID: 812, Comm: "curl",
			},
		},
		{name: "short", raw: make([]byte, hookRecordSize-1), wantErr: "55 bytes"},
		{name: "unknown action", raw: raw(1, vip, vip, 9, hookConnect4), wantErr: "unknown action"},
		{name: "unknown hook", raw: raw(1, vip, vip, actionRewrite, 0), wantErr: "unknown hook"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeHookRecord(tc.raw)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("decodeHookRecord error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("decodeHookRecord = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestKernelNames(t *testing.T) {
	bpftest.CheckKernelNames(t, collectionSpec(), kernelNamePrefix)
}

func TestFindCgroup2(t *testing.T) {
	tests := []struct {
		name, mounts, want string
		wantErr            error
	}{
		{
			name: "hybrid",
			mounts: "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0\n" +
				"cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n" +
				"cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n",
			want: "/sys/fs/cgroup/unified",
		},
		{name: "unified", mounts: "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n", want: "/sys/fs/cgroup"},
		{name: "escaped space", mounts: `none /mnt/my\040cg cgroup2 rw 0 0` + "\n", want: "/mnt/my cg"},
		{name: "none", mounts: "proc /proc proc rw 0 0\n", wantErr: ErrNoCgroup2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := findCgroup2(strings.NewReader(tc.mounts))
			if !errors.Is(err, tc.wantErr) || got != tc.want {
				t.Errorf("findCgroup2 = %q, %v; want %q, %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func toBytes(t *testing.T, v any) [8]byte {
	t.Helper()
	b, err := binary.Append(nil, binary.NativeEndian, v)
	if err != nil || len(b) != 8 {
		t.Fatalf("encode %T: %d bytes, %v", v, len(b), err)
	}
	return [8]byte(b)
}

func toBytes4(t *testing.T, v any) [4]byte {
	t.Helper()
	b, err := binary.Append(nil, binary.NativeEndian, v)
	if err != nil || len(b) != 4 {
		t.Fatalf("encode %T: %d bytes, %v", v, len(b), err)
	}
	return [4]byte(b)
}
