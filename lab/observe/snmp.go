package observe

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// ParseTCPActiveOpens reads the Tcp ActiveOpens counter from /proc/net/snmp content: the
// number of connects that sent a SYN, kernel sockets included.
func ParseTCPActiveOpens(r io.Reader) (uint64, error) {
	sc := bufio.NewScanner(r)
	var header []string
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "Tcp:" {
			continue
		}
		if header == nil {
			header = fields
			continue
		}
		for i, name := range header {
			if name == "ActiveOpens" && i < len(fields) {
				n, err := strconv.ParseUint(fields[i], 10, 64)
				if err != nil {
					return 0, fmt.Errorf("snmp: Tcp ActiveOpens %q: %w", fields[i], err)
				}
				return n, nil
			}
		}
		return 0, fmt.Errorf("snmp: no ActiveOpens in the Tcp lines")
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("snmp: %w", err)
	}
	return 0, fmt.Errorf("snmp: no Tcp header and value lines")
}

// TCPActiveOpens reads the counter from the calling thread's network namespace.
func TCPActiveOpens() (uint64, error) { return TCPActiveOpensIn("/proc/thread-self/net") }

// TCPActiveOpensIn reads the counter from a procfs net directory (/proc/<pid>/net: the
// network namespace of that process).
func TCPActiveOpensIn(dir string) (uint64, error) {
	f, err := os.Open(dir + "/snmp")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return ParseTCPActiveOpens(f)
}
