// Package nfs is everything nfslab does with NFS itself: the nfs-ganesha configuration and
// process, mounting and unmounting with mount(2), the I/O probe, and /proc/mounts parsing.
package nfs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MountEntry is one line of /proc/mounts (the fstab(5) format), with the octal escapes of the
// kernel (\040 for a space, \011 tab, \012 newline, \134 backslash) decoded.
type MountEntry struct {
	Source  string // "10.96.0.50:/export"
	Target  string // the mount point
	FSType  string // "nfs4"
	Options string // the raw comma-separated option list, as the kernel printed it
}

// Option returns the value of the mount option key (for "addr=10.96.0.50", key "addr") and
// whether the option is present at all. A flag option such as "hard" is present with value "".
// The last occurrence wins, as it does for the kernel's parser.
func (e MountEntry) Option(key string) (string, bool) {
	val, found := "", false
	for opt := range strings.SplitSeq(e.Options, ",") {
		k, v, _ := strings.Cut(opt, "=")
		if k == key {
			val, found = v, true
		}
	}
	return val, found
}

// ParseMounts reads /proc/mounts (or /proc/self/mountinfo's simpler sibling, /etc/mtab) and
// returns its entries in order. Blank lines are skipped; a line with fewer than four fields is an
// error that names the line. The dump and pass fields are ignored.
func ParseMounts(r io.Reader) ([]MountEntry, error) {
	var out []MountEntry
	br := bufio.NewReader(r)
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read mounts: %w", err)
		}
		line = strings.TrimSuffix(line, "\n")
		if fields := splitFields(line); len(fields) > 0 {
			if len(fields) < 4 {
				return nil, fmt.Errorf("mounts line %d: %d fields, want at least 4: %q", lineNo, len(fields), line)
			}
			out = append(out, MountEntry{
				Source:  unescapeOctal(fields[0]),
				Target:  unescapeOctal(fields[1]),
				FSType:  unescapeOctal(fields[2]),
				Options: unescapeOctal(fields[3]),
			})
		}
		if err != nil { // io.EOF
			return out, nil
		}
	}
}

// FindMount returns the entry mounted on target. When several mounts are stacked on the same
// target, the last one listed (the one on top, the one path lookups see) is returned.
func FindMount(entries []MountEntry, target string) (MountEntry, bool) {
	for i := len(entries) - 1; i >= 0; i-- {
		if entries[i].Target == target {
			return entries[i], true
		}
	}
	return MountEntry{}, false
}

// AddrOf returns the addr= option of an NFS mount ("" when absent). The kernel formats it from a
// string cached when the transport was created, so it keeps showing the VIP even when SUNRPC's
// raw address was overwritten: record it, never decide on it (lab/README.md, "Evidence").
func AddrOf(e MountEntry) string {
	v, _ := e.Option("addr")
	return v
}

// splitFields splits on runs of ASCII spaces and tabs only: the kernel escapes those inside
// fields, while other bytes (even other Unicode white space) are part of a field.
func splitFields(line string) []string {
	return strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' })
}

// unescapeOctal decodes every backslash followed by exactly three octal digits (value ≤ 0377)
// into that byte; any other backslash is kept as it is.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) && s[i+1] <= '3' {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
