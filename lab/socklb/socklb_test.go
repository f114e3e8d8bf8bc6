package socklb

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/nfslab/nfslab/lab/internal/bpftest"
)

// The traffic-generating side of the tests runs in a child process (this test
// binary, re-executed) placed into a throw-away cgroup, so that the programs
// are never attached where other processes (or the kernel) live.
const (
	childModeEnv = "NFSLAB_SOCKLB_CHILD"      // "tcp" or "udp"
	childAddrEnv = "NFSLAB_SOCKLB_CHILD_ADDR" // destination ip:port
	childTimeout = 3 * time.Second
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(childModeEnv); mode != "" {
		os.Exit(childMain(mode, os.Getenv(childAddrEnv)))
	}
	os.Exit(m.Run())
}

// childResult is what the child reports on stdout, as JSON.
type childResult struct {
	Errno int    `json:"errno,omitempty"` // errno of a failed connect()/sendmsg()/recv
	Err   string `json:"err,omitempty"`
	Reply string `json:"reply,omitempty"` // what the server sent back
	Peer  string `json:"peer,omitempty"`  // TCP: getpeername; UDP: source of the reply
	Pid   int    `json:"pid"`             // the child's process ID
}

// childMain connects (tcp) or sends a datagram (udp) to addr and reports
// what happened.
func childMain(mode, addr string) int {
	var res childResult
	dst, err := netip.ParseAddrPort(addr)
	if err == nil {
		switch mode {
		case "tcp":
			res, err = childTCP(dst)
		case "udp":
			res, err = childUDP(dst)
		case "tcp-early-socket":
			res, err = childEarlySocket(dst)
		default:
			err = fmt.Errorf("unknown child mode %q", mode)
		}
	}
	if err != nil {
		res.Err = err.Error()
		var errno syscall.Errno
		if errors.As(err, &errno) {
			res.Errno = int(errno)
		}
	}
	res.Pid = os.Getpid()
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func childTCP(dst netip.AddrPort) (childResult, error) {
	conn, err := net.DialTimeout("tcp4", dst.String(), childTimeout)
	if err != nil {
		return childResult{}, err
	}
	defer conn.Close()
	res := childResult{Peer: conn.RemoteAddr().String()}
	if err := conn.SetDeadline(time.Now().Add(childTimeout)); err != nil {
		return res, err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	res.Reply = strings.TrimSpace(line)
	return res, err
}

// childEarlySocket creates a TCP socket, says "ready" on stdout, waits for a line on stdin (the
// parent attaches the socket-LB meanwhile) and then connects it to dst: a socket the
// sock_create program never saw.
func childEarlySocket(dst netip.AddrPort) (childResult, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		return childResult{}, err
	}
	defer syscall.Close(fd)
	if _, err := fmt.Println("ready"); err != nil {
		return childResult{}, err
	}
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return childResult{}, err
	}
	return childResult{}, syscall.Connect(fd, &syscall.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())})
}

func childUDP(dst netip.AddrPort) (childResult, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return childResult{}, err
	}
	defer conn.Close()
	if _, err := conn.WriteToUDPAddrPort([]byte("ping"), dst); err != nil {
		return childResult{}, err
	}
	if err := conn.SetReadDeadline(time.Now().Add(childTimeout)); err != nil {
		return childResult{}, err
	}
	buf := make([]byte, 64)
	n, from, err := conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		return childResult{}, err
	}
	return childResult{Reply: string(buf[:n]), Peer: from.String()}, nil
}

// testCgroup is a child cgroup of the cgroup2 root, removed at the end of the
// test.
type testCgroup struct {
	path string
	fd   *os.File
}

// requireBPF skips the test unless it runs as root with cgroup2 mounted.
func requireBPF(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs and create cgroups")
	}
}

// loadOrSkip loads an LB, skipping the test when BPF is unavailable.
func loadOrSkip(t testing.TB, cfg Config) *LB {
	t.Helper()
	requireBPF(t)
	lb, err := Load(cfg)
	if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, syscall.EPERM) {
		t.Skipf("BPF unavailable: %v", err)
	}
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() {
		if err := lb.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return lb
}

// newTestCgroup creates <cgroup2>/nfslab-test-<random>.
func newTestCgroup(t testing.TB) *testCgroup {
	t.Helper()
	requireBPF(t)
	path := bpftest.TempCgroup(t, Cgroup2Mount, ErrNoCgroup2)
	fd, err := os.Open(path)
	if err != nil {
		t.Fatalf("open test cgroup: %v", err)
	}
	t.Cleanup(func() { fd.Close() }) // before the cgroup's own cleanup, which runs after it
	return &testCgroup{path: path, fd: fd}
}

// run runs the child in the cgroup and returns its report.
func (cg *testCgroup) run(t *testing.T, mode string, dst netip.AddrPort) childResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*childTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), childModeEnv+"="+mode, childAddrEnv+"="+dst.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.fd.Fd())}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child %s %v: %v; stderr: %s", mode, dst, err, stderr.Bytes())
	}
	var res childResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("child %s %v: bad report %q: %v", mode, dst, out, err)
	}
	return res
}

// udpServer listens on addr and answers every datagram with name:payload.
func udpServer(t testing.TB, name, addr string) netip.AddrPort {
	t.Helper()
	conn, err := net.ListenPacket("udp4", addr)
	if err != nil {
		t.Fatalf("listen udp %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = conn.WriteTo([]byte(name+":"+string(buf[:n])), from)
		}
	}()
	return netip.MustParseAddrPort(conn.LocalAddr().String())
}

// addrs are the loopback endpoints of one test.
type addrs struct {
	A, B     netip.AddrPort // TCP backends "A" and "B" on 127.0.0.1
	VIP      netip.AddrPort // 127.0.0.50:<A's port>: nothing listens there
	LiveVIP  netip.AddrPort // 127.0.0.51:<A's port>: listener "V"
	Other    netip.AddrPort // 127.0.0.9:<W>: listener "O", not a VIP
	U        netip.AddrPort // UDP backend "U" on 127.0.0.1
	UDPVIP   netip.AddrPort // 127.0.0.50:<U's port>: nothing listens there
	Watch    uint16         // W
	Loopback netip.Addr     // 127.0.0.1
}

func newAddrs(t testing.TB) addrs {
	t.Helper()
	var a addrs
	a.Loopback = netip.MustParseAddr("127.0.0.1")
	a.A = bpftest.TCPServer(t, "tcp4", "127.0.0.1:0", "A")
	a.B = bpftest.TCPServer(t, "tcp4", "127.0.0.1:0", "B")
	a.VIP = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.50"), a.A.Port())
	a.LiveVIP = bpftest.TCPServer(t, "tcp4", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.51"), a.A.Port()).String(), "V")
	a.Other = bpftest.TCPServer(t, "tcp4", "127.0.0.9:0", "O")
	a.Watch = a.Other.Port()
	a.U = udpServer(t, "U", "127.0.0.1:0")
	a.UDPVIP = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.50"), a.U.Port())
	return a
}

// newAttached loads an LB with cfg and attaches it to a fresh test cgroup.
func newAttached(t *testing.T, cfg Config) (*LB, *testCgroup) {
	t.Helper()
	cg := newTestCgroup(t)
	lb := loadOrSkip(t, cfg) // closed before the cgroup is removed
	if err := lb.Attach(cg.path); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	return lb, cg
}

func TestRewrite(t *testing.T) {
	requireBPF(t)
	tests := []struct {
		name      string
		proto     string
		watch     func(a addrs) uint16 // nil: no WatchPort
		svc       func(a addrs) *Service
		dst       func(a addrs) netip.AddrPort
		wantReply string
		wantPeer  func(a addrs) netip.AddrPort // nil: not checked
		wantErrno syscall.Errno
		wantStats func(a addrs) Stats
		wantHook  func(a addrs) []HookEvent // Mono is checked separately
	}{
		{
			name:      "tcp connect to VIP goes to backend",
			proto:     "tcp",
			watch:     func(a addrs) uint16 { return a.VIP.Port() }, // a VIP is not a NonVIP
			svc:       func(a addrs) *Service { return &Service{VIP: a.VIP, Backend: a.A} },
			dst:       func(a addrs) netip.AddrPort { return a.VIP },
			wantReply: "A",
			wantPeer:  func(a addrs) netip.AddrPort { return a.A },
			wantStats: func(addrs) Stats { return Stats{Rewrites: 1} },
			wantHook: func(a addrs) []HookEvent {
				return []HookEvent{{Hook: HookConnect4, In: a.VIP, Out: a.A, Action: ActionRewrite}}
			},
		},
		{
			name:      "tcp connect to VIP without backend is refused",
			proto:     "tcp",
			svc:       func(a addrs) *Service { return &Service{VIP: a.VIP, Refuse: true} },
			dst:       func(a addrs) netip.AddrPort { return a.VIP },
			wantErrno: syscall.EPERM,
			wantStats: func(addrs) Stats { return Stats{Refused: 1} },
			wantHook: func(a addrs) []HookEvent {
				return []HookEvent{{Hook: HookConnect4, In: a.VIP, Action: ActionRefuse}}
			},
		},
		{
			name:      "tcp connect to VIP without backend passes through",
			proto:     "tcp",
			svc:       func(a addrs) *Service { return &Service{VIP: a.LiveVIP} },
			dst:       func(a addrs) netip.AddrPort { return a.LiveVIP },
			wantReply: "V",
			wantPeer:  func(a addrs) netip.AddrPort { return a.LiveVIP },
			wantStats: func(addrs) Stats { return Stats{} },
			wantHook: func(a addrs) []HookEvent {
				return []HookEvent{{Hook: HookConnect4, In: a.LiveVIP, Out: a.LiveVIP, Action: ActionPassThrough}}
			},
		},
		{
			name:      "tcp connect to watched port of a non-VIP is counted",
			proto:     "tcp",
			watch:     func(a addrs) uint16 { return a.Watch },
			svc:       func(a addrs) *Service { return &Service{VIP: a.VIP, Backend: a.A} },
			dst:       func(a addrs) netip.AddrPort { return a.Other },
			wantReply: "O",
			wantPeer:  func(a addrs) netip.AddrPort { return a.Other },
			wantStats: func(addrs) Stats { return Stats{NonVIP: 1, LastNonVIPDest: netip.MustParseAddr("127.0.0.9")} },
			wantHook: func(a addrs) []HookEvent {
				return []HookEvent{{Hook: HookConnect4, In: a.Other, Out: a.Other, Action: ActionNonVIP}}
			},
		},
		{
			name:      "tcp connect to another port of a non-VIP is ignored",
			proto:     "tcp",
			watch:     func(a addrs) uint16 { return a.Watch },
			svc:       func(a addrs) *Service { return &Service{VIP: a.VIP, Backend: a.A} },
			dst:       func(a addrs) netip.AddrPort { return a.B },
			wantReply: "B",
			wantStats: func(addrs) Stats { return Stats{} },
			wantHook:  func(addrs) []HookEvent { return nil },
		},
		{
			name:      "udp sendmsg to VIP goes to backend and the reply comes from the VIP",
			proto:     "udp",
			svc:       func(a addrs) *Service { return &Service{VIP: a.UDPVIP, Backend: a.U} },
			dst:       func(a addrs) netip.AddrPort { return a.UDPVIP },
			wantReply: "U:ping",
			wantPeer:  func(a addrs) netip.AddrPort { return a.UDPVIP },
			wantStats: func(addrs) Stats { return Stats{Rewrites: 1} },
			wantHook: func(a addrs) []HookEvent {
				return []HookEvent{{Hook: HookSendmsg4, In: a.UDPVIP, Out: a.U, Action: ActionRewrite}}
			},
		},
		{
			name:      "udp sendmsg to VIP without backend is refused",
			proto:     "udp",
			svc:       func(a addrs) *Service { return &Service{VIP: a.UDPVIP, Refuse: true} },
			dst:       func(a addrs) netip.AddrPort { return a.UDPVIP },
			wantErrno: syscall.EPERM,
			wantStats: func(addrs) Stats { return Stats{Refused: 1} },
			wantHook: func(a addrs) []HookEvent {
				return []HookEvent{{Hook: HookSendmsg4, In: a.UDPVIP, Action: ActionRefuse}}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newAddrs(t)
			var cfg Config
			if tc.watch != nil {
				cfg.WatchPort = tc.watch(a)
			}
			lb, cg := newAttached(t, cfg)
			if svc := tc.svc(a); svc != nil {
				if err := lb.SetService(*svc); err != nil {
					t.Fatalf("SetService: %v", err)
				}
			}
			dst := tc.dst(a)
			from := bpftest.MonoNow(t)
			res := cg.run(t, tc.proto, dst)
			to := bpftest.MonoNow(t)
			if tc.wantErrno != 0 {
				if syscall.Errno(res.Errno) != tc.wantErrno {
					t.Errorf("%s to %v: got %+v, want errno %v", tc.proto, dst, res, tc.wantErrno)
				}
			} else {
				if res.Err != "" || res.Reply != tc.wantReply {
					t.Errorf("%s to %v: got %+v, want reply %q", tc.proto, dst, res, tc.wantReply)
				} else if tc.wantPeer != nil && res.Peer != tc.wantPeer(a).String() {
					t.Errorf("%s to %v: peer %s, want %v", tc.proto, dst, res.Peer, tc.wantPeer(a))
				}
			}
			checkStats(t, lb, tc.wantStats(a))
			checkHookEvents(t, drainHookEvents(t, lb), calledBy(tc.wantHook(a), res), from, to)
		})
	}
}

func TestReplaceBackend(t *testing.T) {
	requireBPF(t)
	a := newAddrs(t)
	lb, cg := newAttached(t, Config{WatchPort: a.VIP.Port()})
	from := bpftest.MonoNow(t)
	var wantHook []HookEvent
	for i, step := range []struct {
		backend   netip.AddrPort
		wantReply string
	}{
		{a.A, "A"},
		{a.B, "B"}, // another port as well: the port is rewritten too
		{a.A, "A"},
	} {
		if err := lb.SetService(Service{VIP: a.VIP, Backend: step.backend}); err != nil {
			t.Fatalf("step %d: SetService: %v", i, err)
		}
		res := cg.run(t, "tcp", a.VIP)
		if res.Reply != step.wantReply {
			t.Errorf("step %d: connect to %v with backend %v: got %+v, want reply %q", i, a.VIP, step.backend, res, step.wantReply)
		}
		checkReverse(t, lb, map[netip.AddrPort]netip.AddrPort{step.backend: a.VIP})
		wantHook = append(wantHook, calledBy([]HookEvent{{Hook: HookConnect4, In: a.VIP, Out: step.backend, Action: ActionRewrite}}, res)...)
	}
	checkStats(t, lb, Stats{Rewrites: 3})
	checkHookEvents(t, drainHookEvents(t, lb), wantHook, from, bpftest.MonoNow(t))
}

func TestReadHookEventsStops(t *testing.T) {
	bpftest.CheckReadStops(t, func(t *testing.T) (func(context.Context) error, func() error) {
		lb := loadOrSkip(t, Config{})
		return func(ctx context.Context) error { return lb.ReadHookEvents(ctx, func(HookEvent) {}) }, lb.Close
	})
}

func TestCloseDetaches(t *testing.T) {
	requireBPF(t)
	a := newAddrs(t)
	cg := newTestCgroup(t)
	lb := loadOrSkip(t, Config{})

	before, err := EffectiveSockAddrPrograms(cg.path)
	if err != nil {
		t.Fatalf("EffectiveSockAddrPrograms before Attach: %v", err)
	}
	for _, p := range before {
		if strings.HasPrefix(p.Name, kernelNamePrefix) {
			t.Logf("warning: an nfslab program is inherited from an ancestor cgroup: %+v", p)
		}
	}
	if err := lb.Attach(cg.path); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	if err := lb.SetService(Service{VIP: a.VIP, Backend: a.A}); err != nil {
		t.Fatalf("SetService: %v", err)
	}

	attached, err := EffectiveSockAddrPrograms(cg.path)
	if err != nil {
		t.Fatalf("EffectiveSockAddrPrograms after Attach: %v", err)
	}
	ours := slices.DeleteFunc(slices.Clone(attached), func(p AttachedProgram) bool {
		return slices.ContainsFunc(before, func(b AttachedProgram) bool { return b.ID == p.ID })
	})
	var got []string
	for _, p := range ours {
		got = append(got, fmt.Sprintf("%v %s", p.Attach, p.Name))
	}
	want := []string{
		fmt.Sprintf("%v nfslab_connect4", ebpf.AttachCGroupInet4Connect),
		fmt.Sprintf("%v nfslab_sendmsg4", ebpf.AttachCGroupUDP4Sendmsg),
		fmt.Sprintf("%v nfslab_recvmsg4", ebpf.AttachCGroupUDP4Recvmsg),
	}
	if !slices.Equal(got, want) {
		t.Errorf("programs added by Attach = %q, want %q", got, want)
	}
	ids, err := lb.ProgramIDs()
	if err != nil {
		t.Fatalf("ProgramIDs: %v", err)
	}
	var oursIDs []ebpf.ProgramID
	for _, p := range ours {
		oursIDs = append(oursIDs, p.ID)
	}
	if !slices.Equal(ids, oursIDs) {
		t.Errorf("ProgramIDs() = %v, want the IDs Attach made effective, %v", ids, oursIDs)
	}
	if res := cg.run(t, "tcp", a.VIP); res.Reply != "A" {
		t.Fatalf("connect to %v while attached: got %+v, want reply A", a.VIP, res)
	}

	if err := lb.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := lb.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	after, err := EffectiveSockAddrPrograms(cg.path)
	if err != nil {
		t.Fatalf("EffectiveSockAddrPrograms after Close: %v", err)
	}
	for _, p := range after {
		if slices.ContainsFunc(ours, func(o AttachedProgram) bool { return o.ID == p.ID }) {
			t.Errorf("after Close, %+v is still attached", p)
		}
	}
	if len(after) != len(before) {
		t.Errorf("after Close: %d effective programs, want the %d from before Attach: %+v", len(after), len(before), after)
	}
	if res := cg.run(t, "tcp", a.VIP); syscall.Errno(res.Errno) != syscall.ECONNREFUSED {
		t.Errorf("connect to %v after Close: got %+v, want ECONNREFUSED (no rewrite)", a.VIP, res)
	}
	if _, err := lb.Stats(); !errors.Is(err, ErrClosed) {
		t.Errorf("Stats after Close: %v, want ErrClosed", err)
	}
	if _, _, err := lb.Service(a.VIP); !errors.Is(err, ErrClosed) {
		t.Errorf("Service after Close: %v, want ErrClosed", err)
	}
	if err := lb.ReadHookEvents(context.Background(), func(HookEvent) {}); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadHookEvents after Close: %v, want ErrClosed", err)
	}
	if err := lb.SetService(Service{VIP: a.VIP, Backend: a.A}); !errors.Is(err, ErrClosed) {
		t.Errorf("SetService after Close: %v, want ErrClosed", err)
	}
	if err := lb.Attach(cg.path); !errors.Is(err, ErrClosed) {
		t.Errorf("Attach after Close: %v, want ErrClosed", err)
	}
}

// TestKernelSocket: a socket no process created while the programs were attached is reported
// as the kernel's own; one the same process creates afterwards is its own. The kernel's real
// sockets (SUNRPC's, created in a kworker of the root cgroup) cannot be made in a test cgroup;
// a socket opened before Attach goes the same way through the hook (no sock_create record).
func TestKernelSocket(t *testing.T) {
	requireBPF(t)
	a := newAddrs(t)
	cg := newTestCgroup(t)
	lb := loadOrSkip(t, Config{WatchPort: a.Watch})

	ctx, cancel := context.WithTimeout(context.Background(), 10*childTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), childModeEnv+"=tcp-early-socket", childAddrEnv+"="+a.Other.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cg.fd.Fd())}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	out := bufio.NewReader(stdout)
	if line, err := out.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("child said %q, %v; want ready", line, err)
	}
	if err := lb.Attach(cg.path); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	from := bpftest.MonoNow(t)
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	var res childResult
	if err := json.NewDecoder(out).Decode(&res); err != nil {
		t.Fatalf("child report: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	if res.Err != "" {
		t.Fatalf("child: %+v", res)
	}
	late := cg.run(t, "tcp", a.Other)
	want := []HookEvent{
		{Hook: HookConnect4, In: a.Other, Out: a.Other, Action: ActionNonVIP, KernelSocket: true, PID: uint32(res.Pid), Comm: childComm()},
	}
	want = append(want, calledBy([]HookEvent{{Hook: HookConnect4, In: a.Other, Out: a.Other, Action: ActionNonVIP}}, late)...)
	checkHookEvents(t, drainHookEvents(t, lb), want, from, bpftest.MonoNow(t))
}

// TestServiceMaps checks the map contents (forward and reverse) after
// sequences of SetService and DeleteService. It needs no cgroup.
func TestServiceMaps(t *testing.T) {
	var (
		vip1 = netip.MustParseAddrPort("10.96.0.50:2049")
		vip2 = netip.MustParseAddrPort("10.96.0.51:2049")
		beA  = netip.MustParseAddrPort("10.0.0.11:2049")
		beB  = netip.MustParseAddrPort("10.0.0.12:2049")
	)
	type op struct {
		set *Service
		del netip.AddrPort
	}
	set := func(s Service) op { return op{set: &s} }
	del := func(vip netip.AddrPort) op { return op{del: vip} }
	tests := []struct {
		name    string
		ops     []op
		wantFwd map[netip.AddrPort]Service
		wantRev map[netip.AddrPort]netip.AddrPort
	}{
		{
			name:    "set",
			ops:     []op{set(Service{VIP: vip1, Backend: beA})},
			wantFwd: map[netip.AddrPort]Service{vip1: {VIP: vip1, Backend: beA}},
			wantRev: map[netip.AddrPort]netip.AddrPort{beA: vip1},
		},
		{
			name:    "replace backend drops stale reverse entry",
			ops:     []op{set(Service{VIP: vip1, Backend: beA}), set(Service{VIP: vip1, Backend: beB})},
			wantFwd: map[netip.AddrPort]Service{vip1: {VIP: vip1, Backend: beB}},
			wantRev: map[netip.AddrPort]netip.AddrPort{beB: vip1},
		},
		{
			name:    "backend removed, refuse",
			ops:     []op{set(Service{VIP: vip1, Backend: beA}), set(Service{VIP: vip1, Refuse: true})},
			wantFwd: map[netip.AddrPort]Service{vip1: {VIP: vip1, Refuse: true}},
			wantRev: map[netip.AddrPort]netip.AddrPort{},
		},
		{
			name:    "delete",
			ops:     []op{set(Service{VIP: vip1, Backend: beA}), set(Service{VIP: vip2, Backend: beB}), del(vip1)},
			wantFwd: map[netip.AddrPort]Service{vip2: {VIP: vip2, Backend: beB}},
			wantRev: map[netip.AddrPort]netip.AddrPort{beB: vip2},
		},
		{
			name:    "delete unknown is fine",
			ops:     []op{del(vip1)},
			wantFwd: map[netip.AddrPort]Service{},
			wantRev: map[netip.AddrPort]netip.AddrPort{},
		},
		{
			name:    "shared backend: reverse entry handed over on delete",
			ops:     []op{set(Service{VIP: vip1, Backend: beA}), set(Service{VIP: vip2, Backend: beA}), del(vip2)},
			wantFwd: map[netip.AddrPort]Service{vip1: {VIP: vip1, Backend: beA}},
			wantRev: map[netip.AddrPort]netip.AddrPort{beA: vip1},
		},
		{
			name:    "shared backend: other service keeps its reverse entry",
			ops:     []op{set(Service{VIP: vip1, Backend: beA}), set(Service{VIP: vip2, Backend: beA}), set(Service{VIP: vip1, Backend: beB})},
			wantFwd: map[netip.AddrPort]Service{vip1: {VIP: vip1, Backend: beB}, vip2: {VIP: vip2, Backend: beA}},
			wantRev: map[netip.AddrPort]netip.AddrPort{beA: vip2, beB: vip1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lb := loadOrSkip(t, Config{})
			for i, o := range tc.ops {
				var err error
				if o.set != nil {
					err = lb.SetService(*o.set)
				} else {
					err = lb.DeleteService(o.del)
				}
				if err != nil {
					t.Fatalf("op %d: %v", i, err)
				}
			}
			checkForward(t, lb, tc.wantFwd)
			checkReverse(t, lb, tc.wantRev)
			vips, err := lb.VIPs()
			if err != nil {
				t.Fatalf("VIPs: %v", err)
			}
			want := slices.Collect(maps.Keys(tc.wantFwd))
			slices.SortFunc(vips, netip.AddrPort.Compare)
			slices.SortFunc(want, netip.AddrPort.Compare)
			if !slices.Equal(vips, want) {
				t.Errorf("VIPs() = %v, want %v", vips, want)
			}
			for _, vip := range []netip.AddrPort{vip1, vip2} {
				want, wantOK := tc.wantFwd[vip]
				got, ok, err := lb.Service(vip)
				if err != nil || ok != wantOK || got != want {
					t.Errorf("Service(%v) = %+v, %v, %v; want %+v, %v", vip, got, ok, err, want, wantOK)
				}
			}
		})
	}
}

func TestSetServiceRejectsBadInput(t *testing.T) {
	lb := loadOrSkip(t, Config{})
	for _, s := range []Service{
		{},
		{VIP: netip.MustParseAddrPort("[fd00::1]:2049")},
		{VIP: netip.MustParseAddrPort("10.96.0.50:2049"), Backend: netip.MustParseAddrPort("10.0.0.11:0")},
	} {
		if err := lb.SetService(s); err == nil {
			t.Errorf("SetService(%+v) succeeded, want an error", s)
		}
	}
	if err := lb.DeleteService(netip.AddrPort{}); err == nil {
		t.Error("DeleteService(zero) succeeded, want an error")
	}
}

func BenchmarkSetService(b *testing.B) {
	lb := loadOrSkip(b, Config{})
	vip := netip.MustParseAddrPort("10.96.0.50:2049")
	backends := []netip.AddrPort{
		netip.MustParseAddrPort("10.0.0.11:2049"),
		netip.MustParseAddrPort("10.0.0.12:2049"),
	}
	for i := 0; b.Loop(); i++ {
		if err := lb.SetService(Service{VIP: vip, Backend: backends[i%2]}); err != nil {
			b.Fatal(err)
		}
	}
}

// drainHookEvents returns the hook events waiting in lb's ring buffer.
func drainHookEvents(t *testing.T, lb *LB) []HookEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // deliver what is there, then return
	var evs []HookEvent
	if err := lb.ReadHookEvents(ctx, func(ev HookEvent) { evs = append(evs, ev) }); !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadHookEvents: %v, want context.Canceled", err)
	}
	return evs
}

// childComm is the name the kernel gives the child: its executable's, cut to 15 bytes.
func childComm() string {
	name := filepath.Base(os.Args[0])
	return name[:min(len(name), 15)]
}

// calledBy says that the child that reported res made the calls in want, on a socket it
// created while the programs were attached.
func calledBy(want []HookEvent, res childResult) []HookEvent {
	out := slices.Clone(want)
	for i := range out {
		out[i].PID, out[i].Comm = uint32(res.Pid), childComm()
	}
	return out
}

// checkHookEvents compares got with want, except for Mono, which must lie
// within [from, to].
func checkHookEvents(t *testing.T, got, want []HookEvent, from, to int64) {
	t.Helper()
	var stripped []HookEvent
	for _, ev := range got {
		if ev.Mono < from || ev.Mono > to {
			t.Errorf("hook event %+v: Mono %d outside [%d, %d]", ev, ev.Mono, from, to)
		}
		ev.Mono = 0
		stripped = append(stripped, ev)
	}
	if !slices.Equal(stripped, want) {
		t.Errorf("hook events = %+v, want %+v", stripped, want)
	}
}

func checkStats(t *testing.T, lb *LB, want Stats) {
	t.Helper()
	got, err := lb.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

func checkForward(t *testing.T, lb *LB, want map[netip.AddrPort]Service) {
	t.Helper()
	got := map[netip.AddrPort]Service{}
	var (
		k    addrKey
		v    svcValue
		iter = lb.coll.Maps[mapSvc].Iterate()
	)
	for iter.Next(&k, &v) {
		s := Service{VIP: k.addrPort(), Refuse: v.Flags&flagRefuse != 0}
		if be, ok := v.backend(); ok {
			s.Backend = be.addrPort()
		}
		got[s.VIP] = s
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("iterate svc: %v", err)
	}
	if !maps.Equal(got, want) {
		t.Errorf("svc map = %v, want %v", got, want)
	}
}

func checkReverse(t *testing.T, lb *LB, want map[netip.AddrPort]netip.AddrPort) {
	t.Helper()
	got := map[netip.AddrPort]netip.AddrPort{}
	var (
		k, v addrKey
		iter = lb.coll.Maps[mapRev].Iterate()
	)
	for iter.Next(&k, &v) {
		got[k.addrPort()] = v.addrPort()
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("iterate rev: %v", err)
	}
	if !maps.Equal(got, want) {
		t.Errorf("rev map = %v, want %v", got, want)
	}
}
