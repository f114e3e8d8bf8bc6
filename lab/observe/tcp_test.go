package observe

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/nfslab/nfslab/lab/event"
)

const tcpHeader = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"

// tcpLine formats a /proc/net/tcp line of a process's socket the way the kernel does
// (tcp4_seq_show); its inode is 4242.
func tcpLine(sl int, local, remote string, st int) string {
	return inodeTCPLine(sl, local, remote, st, 4242)
}

// kernelTCPLine is tcpLine for a socket without a file (inode 0), such as SUNRPC's.
func kernelTCPLine(sl int, local, remote string, st int) string {
	return inodeTCPLine(sl, local, remote, st, 0)
}

func inodeTCPLine(sl int, local, remote string, st, inode int) string {
	return fmt.Sprintf("%4d: %s %s %02X 00000000:00000000 00:00000000 00000000     0        0 %d 1 0000000000000000 100 0 0 10 0\n",
		sl, local, remote, st, inode)
}

func TestParseProcNetTCP(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		port    uint16
		want    []event.Socket
		wantErr string
	}{
		{
			name: "the hanging cell: SYN-SENT to the dead pod, plus unrelated sockets",
			in: tcpHeader +
				tcpLine(0, "0100000A:0801", "00000000:0000", 0x0A) + // 10.0.0.1:2049 LISTEN (remote port 0)
				kernelTCPLine(1, "0100000A:03C5", "0B00000A:0801", 0x02) + // 10.0.0.1:965 -> 10.0.0.11:2049 SYN-SENT, SUNRPC's
				tcpLine(2, "0100000A:03C6", "3200600A:0801", 0x01) + // -> 10.96.0.50:2049 ESTABLISHED, a process's
				tcpLine(3, "0100007F:9C40", "0100007F:0016", 0x01), // 127.0.0.1:40000 -> :22, other port
			port: 2049,
			want: []event.Socket{
				{Local: "10.0.0.1:965", Remote: "10.0.0.11:2049", State: "SYN-SENT"},
				{Local: "10.0.0.1:966", Remote: "10.96.0.50:2049", State: "ESTABLISHED"},
			},
		},
		{
			name: "every state name",
			in: func() string {
				s := tcpHeader
				for st := 1; st <= 0x0D; st++ {
					s += tcpLine(st, "0100000A:1000", "0C00000A:0801", st)
				}
				return s
			}(),
			port: 2049,
			want: func() []event.Socket {
				var out []event.Socket
				for _, n := range []string{"ESTABLISHED", "SYN-SENT", "SYN-RECV", "FIN-WAIT1", "FIN-WAIT2", "TIME-WAIT",
					"CLOSE", "CLOSE-WAIT", "LAST-ACK", "LISTEN", "CLOSING", "NEW-SYN-RECV", "UNKNOWN-0x0D"} {
					out = append(out, event.Socket{Local: "10.0.0.1:4096", Remote: "10.0.0.12:2049", State: n})
				}
				return out
			}(),
		},
		{
			name: "tcp6 with a v4-mapped peer and a real IPv6 peer",
			in: "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
				tcpLine(0, "0000000000000000FFFF00000100000A:03C5", "0000000000000000FFFF00000B00000A:0801", 0x02) +
				tcpLine(1, "000080FE00000000FF0000020300FEFF:1000", "00000000000000000000000001000000:0801", 0x01),
			port: 2049,
			want: []event.Socket{
				{Local: "10.0.0.1:965", Remote: "10.0.0.11:2049", State: "SYN-SENT"},
				{Local: "[fe80::200:ff:fffe:3]:4096", Remote: "[::1]:2049", State: "ESTABLISHED"},
			},
		},
		{name: "header only", in: tcpHeader, port: 2049, want: nil},
		{name: "empty", in: "", port: 2049, want: nil},
		{name: "no match", in: tcpHeader + tcpLine(0, "0100000A:1000", "0B00000A:0802", 1), port: 2049, want: nil},
		{name: "short line", in: tcpHeader + "   0: 0100000A:0801\n", port: 2049, wantErr: "line 2"},
		{name: "bad hex address", in: tcpLine(0, "0100G00A:0801", "0B00000A:0801", 1), port: 2049, wantErr: "local address"},
		{name: "bad remote length", in: tcpLine(0, "0100000A:0801", "0B0000:0801", 1), port: 2049, wantErr: "remote address"},
		{name: "bad port", in: tcpLine(0, "0100000A:0801", "0B00000A:080", 1), port: 2049, wantErr: "remote address"},
		{name: "bad state", in: "   0: 0100000A:0801 0B00000A:0801 1FF 0\n", port: 2049, wantErr: "state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseProcNetTCP(strings.NewReader(tt.in), tt.port)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i := range got { // inodes have their own test
				got[i].Inode = 0
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestKernelSockets(t *testing.T) {
	in := tcpHeader +
		kernelTCPLine(0, "0100000A:03C5", "0B00000A:0801", 0x02) + // SUNRPC's socket (no process holds inode 0)
		tcpLine(1, "0100000A:03C6", "3200600A:0801", 0x01) + // a process's socket, inode 4242
		inodeTCPLine(2, "0100000A:03C7", "3200600A:0801", 0x01, 777) + // a socket with a file nobody holds
		kernelTCPLine(3, "0100000A:03C8", "3200600A:0801", 0x06) // TIME-WAIT: never the kernel's
	socks, err := ParseProcNetTCP(strings.NewReader(in), 2049)
	if err != nil {
		t.Fatal(err)
	}
	MarkKernelSockets(socks, map[uint64]bool{4242: true})
	var got []string
	for _, s := range socks {
		got = append(got, fmt.Sprintf("%d:%v", s.Inode, s.Kernel))
	}
	if want := "0:true 4242:false 777:true 0:false"; strings.Join(got, " ") != want {
		t.Errorf("inode:kernel = %s, want %s", strings.Join(got, " "), want)
	}
	for _, tt := range []struct {
		target string
		inode  uint64
		ok     bool
	}{{"socket:[12345]", 12345, true}, {"pipe:[1]", 0, false}, {"socket:[x]", 0, false}, {"/dev/null", 0, false}} {
		if n, ok := socketInode(tt.target); n != tt.inode || ok != tt.ok {
			t.Errorf("socketInode(%q) = %d, %v; want %d, %v", tt.target, n, ok, tt.inode, tt.ok)
		}
	}
}

func TestReadTCPSockets(t *testing.T) {
	// Whatever this machine has: it must parse, and every socket must have the asked port.
	obs, err := ReadTCPSockets(22)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range obs.Sockets {
		if ap, err := netip.ParseAddrPort(s.Remote); err != nil || ap.Port() != 22 {
			t.Errorf("socket %+v: remote %v, %v", s, ap, err)
		}
	}
}

func FuzzParseProcNetTCP(f *testing.F) {
	f.Add(tcpHeader+tcpLine(1, "0100000A:03C5", "0B00000A:0801", 0x02), uint16(2049))
	f.Add(tcpLine(0, "0000000000000000FFFF00000100000A:03C5", "00000000000000000000000001000000:0801", 1), uint16(2049))
	f.Add("   0: 0100000A:0801 0B00000A:0801 0A\n\n", uint16(0))
	f.Fuzz(func(t *testing.T, in string, port uint16) {
		socks, err := ParseProcNetTCP(strings.NewReader(in), port)
		if err != nil {
			return
		}
		for _, s := range socks {
			remote, err := netip.ParseAddrPort(s.Remote)
			if err != nil || remote.Port() != port {
				t.Fatalf("remote %q does not parse back or has the wrong port (%v)", s.Remote, err)
			}
			if _, err := netip.ParseAddrPort(s.Local); err != nil {
				t.Fatalf("local %q does not parse back: %v", s.Local, err)
			}
			if s.State == "" {
				t.Fatal("empty state")
			}
		}
	})
}

func TestCountOpen(t *testing.T) {
	in := tcpHeader +
		tcpLine(0, "0B00000A:0801", "00000000:0000", 0x0A) + // LISTEN
		tcpLine(1, "0B00000A:0801", "0100000A:02A2", 0x01) + // ESTABLISHED
		tcpLine(2, "0B00000A:0801", "0100000A:02A3", 0x05) + // FIN-WAIT2: the client has not closed yet
		tcpLine(3, "0B00000A:0801", "0100000A:02A4", 0x06) + // TIME-WAIT
		tcpLine(4, "0B00000A:0801", "0100000A:02A5", 0x07) // CLOSE
	n, err := CountOpen(strings.NewReader(in))
	if err != nil || n != 2 {
		t.Errorf("CountOpen = %d, %v; want 2", n, err)
	}
	if _, err := CountOpen(strings.NewReader(tcpHeader + "0: x\n")); err == nil {
		t.Error("CountOpen accepted a malformed line")
	}
}
