package connecttrace

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"golang.org/x/sys/unix"

	"github.com/nfslab/nfslab/lab/internal/bpftest"
)

// testFunction is traced by the tests instead of kernel_connect, which the
// host never calls on demand: connect(2) on a TCP socket reaches it with the
// kernel's copy of the user's sockaddr as its second argument.
const testFunction = "inet_stream_connect"

// skipUnlessKprobes skips the test unless it runs as root on an x86-64
// kernel with kprobes.
func skipUnlessKprobes(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs")
	}
	if runtime.GOARCH != "amd64" {
		t.Skipf("kprobe argument offsets are known only for amd64, not %s", runtime.GOARCH)
	}
	// cilium/ebpf creates kprobes through this PMU, falling back to
	// tracefs, which needs the same kernel options.
	if _, err := os.Stat("/sys/bus/event_source/devices/kprobe/type"); err != nil {
		t.Skipf("kernel without kprobes (CONFIG_KPROBES, CONFIG_KPROBE_EVENTS): %v", err)
	}
}

// startOrSkip starts a tracer for cfg; it is closed at the end of the test.
func startOrSkip(t *testing.T, cfg Config) *Tracer {
	t.Helper()
	skipUnlessKprobes(t)
	tr, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start(%+v): %v", cfg, err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tr
}

// dial connects to addr; a refused connection is fine: the traced function
// has run by then.
func dial(t *testing.T, network string, addr netip.AddrPort) {
	t.Helper()
	conn, err := net.DialTimeout(network, addr.String(), 2*time.Second)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return
	}
	if err != nil {
		t.Fatalf("dial %s %v: %v", network, addr, err)
	}
	conn.Close()
}

func ownComm(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatalf("read own comm: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// reader runs Read in the background and hands the records over a channel.
type reader struct {
	recs   chan Connect
	cancel context.CancelFunc
	done   chan error
}

func startReader(t *testing.T, tr *Tracer) *reader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &reader{recs: make(chan Connect, 1024), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- tr.Read(ctx, func(c Connect) { r.recs <- c }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-r.done; !errors.Is(err, context.Canceled) {
			t.Errorf("Read = %v, want context.Canceled", err)
		}
	})
	return r
}

// until returns the records that arrive before one for addr (excluded).
func (r *reader) until(t *testing.T, addr netip.AddrPort) []Connect {
	t.Helper()
	var got []Connect
	timeout := time.After(5 * time.Second)
	for {
		select {
		case c := <-r.recs:
			if c.Addr == addr {
				return got
			}
			got = append(got, c)
		case <-timeout:
			t.Fatalf("no record for %v within 5s; got %+v", addr, got)
		}
	}
}

func TestTrace(t *testing.T) {
	watched := bpftest.TCPServer(t, "tcp4", "127.0.0.1:0", "")
	other := bpftest.TCPServer(t, "tcp4", "127.0.0.1:0", "")
	tr := startOrSkip(t, Config{Function: testFunction, WatchPort: watched.Port()})
	r := startReader(t, tr)
	comm := ownComm(t)
	// After each case, a connect to the watched port of an address
	// where nothing listens marks the end of the case's records.
	sentinel := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), watched.Port())

	tests := []struct {
		name    string
		network string
		dst     netip.AddrPort
		want    bool
	}{
		{name: "watched port is recorded", network: "tcp4", dst: watched, want: true},
		{name: "other port is not recorded", network: "tcp4", dst: other},
		{
			name:    "IPv6 to the watched port is not recorded",
			network: "tcp6",
			dst:     netip.AddrPortFrom(netip.IPv6Loopback(), watched.Port()),
		},
		{name: "watched port again", network: "tcp4", dst: watched, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.network == "tcp6" {
				if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
					t.Skipf("no IPv6 loopback: %v", err)
				} else {
					ln.Close()
				}
			}
			from := bpftest.MonoNow(t)
			dial(t, tc.network, tc.dst)
			dial(t, "tcp4", sentinel)
			to := bpftest.MonoNow(t)
			got := r.until(t, sentinel)
			var want []Connect
			if tc.want {
				want = []Connect{{Addr: tc.dst, Comm: comm}}
			}
			for i, c := range got {
				if c.Mono < from || c.Mono > to {
					t.Errorf("record %+v: Mono outside [%d, %d]", c, from, to)
				}
				got[i].Mono = 0
			}
			if !slices.Equal(got, want) {
				t.Errorf("records = %+v, want %+v", got, want)
			}
		})
	}
	if n, err := tr.Lost(); err != nil || n != 0 {
		t.Errorf("Lost = %d, %v; want 0", n, err)
	}
}

// TestTraceReturns: a call that fails at once has its return recorded after
// its entry, with the error; one under way (EINPROGRESS) has no return record.
func TestTraceReturns(t *testing.T) {
	watched := bpftest.TCPServer(t, "tcp4", "127.0.0.1:0", "")
	tr := startOrSkip(t, Config{Function: testFunction, WatchPort: watched.Port()})
	if err := tr.ReturnsTraced(); err != nil {
		t.Skipf("no return probe: %v", err)
	}
	r := startReader(t, tr)
	comm := ownComm(t)
	// TCP refuses a broadcast destination in connect() itself.
	broadcast := netip.AddrPortFrom(netip.MustParseAddr("255.255.255.255"), watched.Port())
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	err = unix.Connect(fd, &unix.SockaddrInet4{Port: int(broadcast.Port()), Addr: broadcast.Addr().As4()})
	if !errors.Is(err, unix.ENETUNREACH) {
		t.Fatalf("connect to %v = %v, want ENETUNREACH", broadcast, err)
	}
	sentinel := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), watched.Port())
	dial(t, "tcp4", sentinel)
	got := r.until(t, sentinel)
	for i := range got {
		got[i].Mono = 0
	}
	want := []Connect{{Addr: broadcast, Comm: comm}, {Addr: broadcast, Comm: comm, Returned: true, Errno: syscall.ENETUNREACH}}
	if !slices.Equal(got, want) {
		t.Errorf("records = %+v, want %+v", got, want)
	}
}

func TestReadStops(t *testing.T) {
	bpftest.CheckReadStops(t, func(t *testing.T) (func(context.Context) error, func() error) {
		tr := startOrSkip(t, Config{Function: testFunction, WatchPort: 1})
		return func(ctx context.Context) error { return tr.Read(ctx, func(Connect) {}) }, tr.Close
	})
}

func TestCloseDetaches(t *testing.T) {
	tr := startOrSkip(t, Config{Function: testFunction})
	var linkIDs []link.ID
	for _, l := range tr.links {
		info, err := l.Info()
		if err != nil {
			t.Fatalf("link info: %v", err)
		}
		if err := openLink(info.ID); err != nil {
			t.Fatalf("open link %d while attached: %v", info.ID, err)
		}
		linkIDs = append(linkIDs, info.ID)
	}
	var progIDs []ebpf.ProgramID
	for _, name := range []string{progName, progRetName} {
		prog := tr.coll.Programs[name]
		if prog == nil {
			continue // a return probe the kernel would not load (ReturnsTraced says why)
		}
		info, err := prog.Info()
		if err != nil {
			t.Fatalf("program %s info: %v", name, err)
		}
		id, ok := info.ID()
		if !ok {
			t.Fatal("kernel did not report the program ID")
		}
		progIDs = append(progIDs, id)
	}

	if err := tr.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := tr.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// The kernel frees the IDs when the last reference goes; allow
	// for deferred work.
	deadline := time.Now().Add(2 * time.Second)
	for {
		var left []error
		for _, id := range linkIDs {
			if err := openLink(id); !errors.Is(err, os.ErrNotExist) {
				left = append(left, fmt.Errorf("link %d: %v", id, err))
			}
		}
		for _, id := range progIDs {
			if err := openProgram(id); !errors.Is(err, os.ErrNotExist) {
				left = append(left, fmt.Errorf("program %d: %v", id, err))
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after Close: %v; want all gone", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := tr.Read(context.Background(), func(Connect) {}); !errors.Is(err, ErrClosed) {
		t.Errorf("Read after Close = %v, want ErrClosed", err)
	}
	if _, err := tr.Lost(); !errors.Is(err, ErrClosed) {
		t.Errorf("Lost after Close = %v, want ErrClosed", err)
	}
}

func openLink(id link.ID) error {
	l, err := link.NewFromID(id)
	if err == nil {
		l.Close()
	}
	return err
}

func openProgram(id ebpf.ProgramID) error {
	p, err := ebpf.NewProgramFromID(id)
	if err == nil {
		p.Close()
	}
	return err
}

func TestStartFunctions(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // empty: Start succeeds
	}{
		{name: "default is kernel_connect", cfg: Config{WatchPort: 2049}},
		{name: "unknown function", cfg: Config{Function: "nfslab_no_such_function"}, wantErr: "nfslab_no_such_function"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			skipUnlessKprobes(t)
			tr, err := Start(tc.cfg)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Start(%+v): %v", tc.cfg, err)
				}
				if err := tr.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
				return
			}
			if err == nil {
				tr.Close()
				t.Fatalf("Start(%+v) succeeded, want an error", tc.cfg)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Start(%+v) = %v, want an error mentioning %q", tc.cfg, err, tc.wantErr)
			}
		})
	}
}

// TestProgramLoads loads the program and maps without attaching them: the
// verifier's verdict, even on a kernel without kprobes.
func TestProgramLoads(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs")
	}
	spec, err := collectionSpec()
	if err != nil {
		t.Skip(err)
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	coll.Close()
}

// TestPtRegsOffset checks the kprobe argument offset against the running
// kernel's struct pt_regs.
func TestPtRegsOffset(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skipf("offsets are defined for amd64 only, not %s", runtime.GOARCH)
	}
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		t.Skipf("no kernel BTF: %v", err)
	}
	var regs *btf.Struct
	if err := spec.TypeByName("pt_regs", &regs); err != nil {
		t.Fatalf("find struct pt_regs: %v", err)
	}
	offsets := map[string]uint32{}
	for _, m := range regs.Members {
		offsets[m.Name] = m.Offset.Bytes()
	}
	for _, tc := range []struct {
		member string
		want   uint32
	}{
		{"si", ptRegsSIAMD64}, // 2nd argument: what the program reads
		{"ax", ptRegsAXAMD64}, // the return value: what the return probe reads
		{"di", 112},           // 1st argument
	} {
		if got, ok := offsets[tc.member]; !ok || got != tc.want {
			t.Errorf("offsetof(struct pt_regs, %s) = %d (present: %v), want %d", tc.member, got, ok, tc.want)
		}
	}
}

func TestRecordLayout(t *testing.T) {
	var r record
	for _, tc := range []struct {
		name      string
		got, want uintptr
	}{
		{"size", unsafe.Sizeof(r), recordSize},
		{"binary size", uintptr(binary.Size(r)), recordSize},
		{"IP", unsafe.Offsetof(r.IP), recordIPOff},
		{"Port", unsafe.Offsetof(r.Port), recordPortOff},
		{"Kind", unsafe.Offsetof(r.Kind), recordKindOff},
		{"Comm", unsafe.Offsetof(r.Comm), recordCommOff},
		{"Ret", unsafe.Offsetof(r.Ret), recordRetOff},
	} {
		if tc.got != tc.want {
			t.Errorf("record %s = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
}

func TestDecodeRecord(t *testing.T) {
	rec := func(mono uint64, ip [4]byte, port [2]byte, kind uint16, comm string, ret int32) []byte {
		b := binary.NativeEndian.AppendUint64(nil, mono)
		b = append(b, ip[:]...)
		b = append(b, port[:]...)
		b = binary.NativeEndian.AppendUint16(b, kind)
		var c [commLen]byte
		copy(c[:], comm)
		b = append(b, c[:]...)
		b = binary.NativeEndian.AppendUint32(b, uint32(ret))
		return append(b, 0, 0, 0, 0)
	}
	raw := func(mono uint64, ip [4]byte, port [2]byte, comm string) []byte {
		return rec(mono, ip, port, kindEntry, comm, 0)
	}
	tests := []struct {
		name    string
		raw     []byte
		want    Connect
		wantErr string
	}{
		{
			name: "SUNRPC reconnect to the VIP",
			raw:  raw(123456789, [4]byte{10, 96, 0, 50}, [2]byte{0x08, 0x01}, "kworker/u4:2"),
			want: Connect{Mono: 123456789, Addr: netip.MustParseAddrPort("10.96.0.50:2049"), Comm: "kworker/u4:2"},
		},
		{
			name: "15-character comm",
			raw:  raw(1, [4]byte{127, 0, 0, 1}, [2]byte{0xff, 0xfe}, "connecttrace.te"),
			want: Connect{Mono: 1, Addr: netip.MustParseAddrPort("127.0.0.1:65534"), Comm: "connecttrace.te"},
		},
		{
			name: "a reconnect refused by a connect hook",
			raw:  rec(5, [4]byte{10, 96, 0, 50}, [2]byte{0x08, 0x01}, kindReturn, "kworker/u4:2", -1),
			want: Connect{Mono: 5, Addr: netip.MustParseAddrPort("10.96.0.50:2049"), Comm: "kworker/u4:2", Returned: true, Errno: syscall.EPERM},
		},
		{name: "a return without an error", raw: rec(5, [4]byte{}, [2]byte{}, kindReturn, "x", 0), wantErr: "result 0"},
		{name: "an unknown kind", raw: rec(5, [4]byte{}, [2]byte{}, 7, "x", 0), wantErr: "kind 7"},
		{name: "short", raw: make([]byte, recordSize-1), wantErr: "39 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeRecord(tc.raw)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("decodeRecord error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("decodeRecord = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestEncodeConfig(t *testing.T) {
	tests := []struct {
		port uint16
		want [cfgValueSize]byte
	}{
		{2049, [cfgValueSize]byte{0x08, 0x01, 0, 0}},
		{0, [cfgValueSize]byte{}},
	}
	for _, tc := range tests {
		if got := encodeConfig(Config{WatchPort: tc.port}); got != tc.want {
			t.Errorf("encodeConfig(%d) = % x, want % x", tc.port, got, tc.want)
		}
	}
}

func TestKernelNames(t *testing.T) {
	spec, err := collectionSpec()
	if err != nil {
		t.Skip(err)
	}
	bpftest.CheckKernelNames(t, spec, kernelNamePrefix)
}
