// Package observe collects the evidence (see lab/README.md) that the kernel exposes as text: the TCP
// sockets to the NFS port (/proc/net/tcp, tcp6) and the kernel log lines about NFS and SUNRPC
// (/dev/kmsg). Decisions are made elsewhere; this package only turns text into event types.
package observe

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nfslab/nfslab/lab/event"
)

// TCPStateName returns the name ss uses for a state of /proc/net/tcp's st column
// (include/net/tcp_states.h), or "UNKNOWN-0x0F" for a value the kernel does not define.
func TCPStateName(st uint8) string {
	switch st {
	case 0x01:
		return "ESTABLISHED"
	case 0x02:
		return "SYN-SENT"
	case 0x03:
		return "SYN-RECV"
	case 0x04:
		return "FIN-WAIT1"
	case 0x05:
		return "FIN-WAIT2"
	case 0x06:
		return "TIME-WAIT"
	case 0x07:
		return "CLOSE"
	case 0x08:
		return "CLOSE-WAIT"
	case 0x09:
		return "LAST-ACK"
	case 0x0A:
		return "LISTEN"
	case 0x0B:
		return "CLOSING"
	case 0x0C:
		return "NEW-SYN-RECV"
	}
	return fmt.Sprintf("UNKNOWN-0x%02X", st)
}

// ParseProcNetTCP reads /proc/net/tcp or /proc/net/tcp6 and returns the sockets whose remote
// port is port, in file order, with addresses rendered "ip:port" ("[ip]:port" for IPv6) and the
// state named as ss names it. The header line (starting with "sl") and blank lines are skipped;
// a malformed line is an error that names it.
func ParseProcNetTCP(r io.Reader, port uint16) ([]event.Socket, error) {
	var out []event.Socket
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for lineNo := 1; sc.Scan(); lineNo++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] == "sl" {
			continue
		}
		if len(fields) < 4 || !strings.HasSuffix(fields[0], ":") {
			return nil, fmt.Errorf("proc net tcp line %d: malformed: %q", lineNo, sc.Text())
		}
		local, err := parseHexAddrPort(fields[1])
		if err != nil {
			return nil, fmt.Errorf("proc net tcp line %d: local address: %w", lineNo, err)
		}
		remote, err := parseHexAddrPort(fields[2])
		if err != nil {
			return nil, fmt.Errorf("proc net tcp line %d: remote address: %w", lineNo, err)
		}
		st, err := strconv.ParseUint(fields[3], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("proc net tcp line %d: state %q: %w", lineNo, fields[3], err)
		}
		if remote.Port() != port {
			continue
		}
		// Column 10 is the socket's inode.
		var inode uint64
		if len(fields) > 9 {
			inode, _ = strconv.ParseUint(fields[9], 10, 64)
		}
		out = append(out, event.Socket{Local: local.String(), Remote: remote.String(), State: TCPStateName(uint8(st)), Inode: inode})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read proc net tcp: %w", err)
	}
	return out, nil
}

// parseHexAddrPort parses the kernel's "%08X:%04X" (IPv4) or "%08X%08X%08X%08X:%04X" (IPv6)
// rendering: the address is printed as 32-bit words in host byte order, little-endian on every
// architecture nfslab runs on; the port is a plain hex number.
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	addrHex, portHex, ok := strings.Cut(s, ":")
	if !ok || len(portHex) != 4 {
		return netip.AddrPort{}, fmt.Errorf("malformed address %q", s)
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port in %q: %w", s, err)
	}
	raw, err := hex.DecodeString(addrHex)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("malformed address %q", s)
	}
	for i := 0; i < len(raw); i += 4 { // each 32-bit word was printed as a little-endian number
		binary.BigEndian.PutUint32(raw[i:], binary.LittleEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}

// ReadTCPSockets snapshots the TCP sockets of the calling thread's network namespace whose
// remote port is port (ReadTCPSocketsIn of /proc/thread-self/net). Call it from the node's
// namespace to see the kernel NFS client's sockets; reading procfs does not block.
func ReadTCPSockets(port uint16) (event.SocketsObs, error) {
	return ReadTCPSocketsIn("/proc/thread-self/net", port)
}

// ReadTCPSocketsIn snapshots the TCP sockets whose remote port is port from a procfs net
// directory (/proc/<pid>/net: the network namespace of that process), its tcp and tcp6 (a
// missing tcp6, on a kernel without IPv6, is not an error). IPv4-mapped IPv6 peers are shown as
// IPv4.
func ReadTCPSocketsIn(dir string, port uint16) (event.SocketsObs, error) {
	var obs event.SocketsObs
	for _, name := range []string{filepath.Join(dir, "tcp"), filepath.Join(dir, "tcp6")} {
		f, err := os.Open(name)
		if errors.Is(err, fs.ErrNotExist) && strings.HasSuffix(name, "6") {
			continue
		}
		if err != nil {
			return event.SocketsObs{}, fmt.Errorf("read tcp sockets: %w", err)
		}
		socks, err := ParseProcNetTCP(f, port)
		f.Close()
		if err != nil {
			return event.SocketsObs{}, fmt.Errorf("read tcp sockets from %s: %w", name, err)
		}
		obs.Sockets = append(obs.Sockets, socks...)
	}
	return obs, nil
}

// ParseListening reports whether /proc/net/tcp or tcp6 content has a socket listening on port.
func ParseListening(r io.Reader, port uint16) (bool, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for lineNo := 1; sc.Scan(); lineNo++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] == "sl" {
			continue
		}
		if len(fields) < 4 {
			return false, fmt.Errorf("proc net tcp line %d: malformed: %q", lineNo, sc.Text())
		}
		local, err := parseHexAddrPort(fields[1])
		if err != nil {
			return false, fmt.Errorf("proc net tcp line %d: local address: %w", lineNo, err)
		}
		if local.Port() == port && fields[3] == "0A" {
			return true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("read proc net tcp: %w", err)
	}
	return false, nil
}

// Listening reports whether a TCP socket listens on port in the network namespace of process
// pid. It reads /proc instead of connecting, so that checking a backend's readiness adds no
// connection the lab's own evidence (socket-LB's counters, the kernel's sockets) would see.
func Listening(pid int, port uint16) (bool, error) {
	for _, name := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, name))
		if err != nil {
			if name == "tcp6" && errors.Is(err, fs.ErrNotExist) {
				continue // no IPv6 in this kernel
			}
			return false, err
		}
		ok, err := ParseListening(f, port)
		f.Close()
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

// HeldSocketInodes returns the inodes of the sockets some process holds open, from
// /proc/*/fd. A socket that is not among them belongs to the kernel (SUNRPC's transport).
func HeldSocketInodes() (map[uint64]bool, error) {
	fds, err := filepath.Glob("/proc/[0-9]*/fd/*")
	if err != nil {
		return nil, err
	}
	held := map[uint64]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(fd)
		if err != nil {
			continue // the process or fd went away
		}
		if n, ok := socketInode(target); ok {
			held[n] = true
		}
	}
	return held, nil
}

// socketInode parses a socket fd's link target, "socket:[12345]".
func socketInode(target string) (uint64, bool) {
	rest, ok := strings.CutPrefix(target, "socket:[")
	if !ok {
		return 0, false
	}
	rest, ok = strings.CutSuffix(rest, "]")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(rest, 10, 64)
	return n, err == nil
}

// MarkKernelSockets sets Kernel on the sockets no process holds (TIME-WAIT entries excluded).
func MarkKernelSockets(socks []event.Socket, held map[uint64]bool) {
	for i := range socks {
		socks[i].Kernel = socks[i].State != "TIME-WAIT" && !held[socks[i].Inode]
	}
}

// CountOpen counts the TCP sockets in /proc/net/tcp or tcp6 content that are still part of a
// connection: every state but LISTEN, TIME-WAIT and CLOSE.
func CountOpen(r io.Reader) (int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	n := 0
	for lineNo := 1; sc.Scan(); lineNo++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] == "sl" {
			continue
		}
		if len(fields) < 4 {
			return 0, fmt.Errorf("proc net tcp line %d: malformed: %q", lineNo, sc.Text())
		}
		switch fields[3] {
		case "0A", "06", "07": // LISTEN, TIME-WAIT, CLOSE
		default:
			n++
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read proc net tcp: %w", err)
	}
	return n, nil
}
