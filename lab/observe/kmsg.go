package observe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// KmsgPath is the kernel log device.
const KmsgPath = "/dev/kmsg"

// KmsgRecord is one record of /dev/kmsg (Documentation/ABI/testing/dev-kmsg):
// "prio,seq,ts_usec,flags[,more];message".
type KmsgRecord struct {
	Facility uint8  // prio >> 3 (0 = kernel)
	Level    uint8  // prio & 7 (0 = emerg … 7 = debug)
	Seq      uint64 // sequence number; a gap means records were lost
	TimeUsec uint64 // the kernel's timestamp in microseconds since boot
	Flags    string // "-", or "c" for a fragment continued by the next record
	Message  string // the text; the kernel escapes non-printable bytes as \xNN
}

// ParseKmsgRecord parses one /dev/kmsg record. Only its first line counts (the dictionary lines
// that may follow, starting with a space, are ignored), and so do prefix fields after the fourth
// (such as "caller=T123").
func ParseKmsgRecord(line string) (KmsgRecord, error) {
	line, _, _ = strings.Cut(line, "\n")
	prefix, msg, ok := strings.Cut(line, ";")
	if !ok {
		return KmsgRecord{}, fmt.Errorf("kmsg record %q: no ';' after the prefix", line)
	}
	fields := strings.Split(prefix, ",")
	if len(fields) < 4 {
		return KmsgRecord{}, fmt.Errorf("kmsg record %q: prefix has %d fields, want at least 4", line, len(fields))
	}
	prio, err := strconv.ParseUint(fields[0], 10, 32)
	if err != nil || prio>>3 > 0xff {
		return KmsgRecord{}, fmt.Errorf("kmsg record %q: bad priority %q", line, fields[0])
	}
	seq, err := strconv.ParseUint(fields[1], 10, 64)
	if err != nil {
		return KmsgRecord{}, fmt.Errorf("kmsg record %q: bad sequence number %q", line, fields[1])
	}
	ts, err := strconv.ParseUint(fields[2], 10, 64)
	if err != nil {
		return KmsgRecord{}, fmt.Errorf("kmsg record %q: bad timestamp %q", line, fields[2])
	}
	return KmsgRecord{
		Facility: uint8(prio >> 3),
		Level:    uint8(prio & 7),
		Seq:      seq,
		TimeUsec: ts,
		Flags:    fields[3],
		Message:  msg,
	}, nil
}

// NFSRelevant reports whether a kernel log message is about NFS or SUNRPC: it contains "nfs:",
// "NFS:", "RPC:", "lockd", "NFSD", "xs_tcp" or "sunrpc" (case-sensitive, as the kernel prints
// them), or one of "NFSv4", "NFS4", "nfs4", "nfsd". Example: "nfs: server 10.96.0.50 not
// responding, timed out".
func NFSRelevant(msg string) bool {
	for _, m := range [...]string{"nfs:", "NFS:", "RPC:", "lockd", "NFSD", "xs_tcp", "sunrpc", "NFSv4", "NFS4", "nfs4", "nfsd"} {
		if strings.Contains(msg, m) {
			return true
		}
	}
	return false
}

// kmsgReadSize is the read buffer: a /dev/kmsg read must hold a whole record or it fails with
// EINVAL, and a record is at most about 8 KiB (CONSOLE_EXT_LOG_MAX) plus its dictionary.
const kmsgReadSize = 32 << 10

// maxPending bounds the bytes kept while waiting for the end of a line from a reader that is not
// /dev/kmsg (which always returns whole records).
const maxPending = 1 << 20

// ReadKmsg reads /dev/kmsg records from r until ctx ends or r reports EOF, and calls out with the
// message of every record for which match returns true (match nil means every record).
//
// Each read of /dev/kmsg returns exactly one record; other readers may return any chunking of
// the same text, so ReadKmsg splits on newlines itself. Dictionary lines (starting with a space)
// and records that do not parse are skipped. EPIPE, which /dev/kmsg returns when unread records
// were overwritten, is skipped too: reading continues with the oldest record still there.
//
// ReadKmsg checks ctx only between reads. To stop a read that blocks, close r when ctx ends (as
// FollowKmsg does): ReadKmsg then returns ctx's error. At EOF it returns nil; on any other read
// error, that error.
func ReadKmsg(ctx context.Context, r io.Reader, match func(string) bool, out func(msg string)) error {
	buf := make([]byte, kmsgReadSize)
	var pending []byte
	emit := func(line []byte) {
		if len(line) == 0 || line[0] == ' ' {
			return
		}
		rec, err := ParseKmsgRecord(string(line))
		if err != nil {
			return
		}
		if match == nil || match(rec.Message) {
			out(rec.Message)
		}
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := r.Read(buf)
		if n > 0 {
			pending = append(pending, buf[:n]...)
			for {
				i := bytes.IndexByte(pending, '\n')
				if i < 0 {
					break
				}
				emit(pending[:i])
				pending = pending[i+1:]
			}
			if len(pending) > maxPending {
				pending = pending[:0]
			}
			pending = append([]byte(nil), pending...) // do not pin the consumed prefix
		}
		switch {
		case err == nil:
		case errors.Is(err, syscall.EPIPE):
		case errors.Is(err, io.EOF):
			emit(pending)
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			return fmt.Errorf("read kmsg: %w", err)
		}
	}
}

// FollowKmsg opens path (normally KmsgPath) and runs ReadKmsg on it until ctx ends, then returns
// ctx's error. With fromEnd it starts after the last record already logged (only new lines);
// otherwise with the oldest record still in the kernel's ring buffer.
//
// The device is opened O_NONBLOCK, so Go's poller owns the waiting and closing the file when ctx
// ends wakes the blocked read: the collector never outlives ctx.
func FollowKmsg(ctx context.Context, path string, fromEnd bool, match func(string) bool, out func(msg string)) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	if fromEnd {
		if _, err := unix.Seek(fd, 0, io.SeekEnd); err != nil {
			unix.Close(fd)
			return fmt.Errorf("seek to end of %s: %w", path, err)
		}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer stop()
	if err := ReadKmsg(ctx, f, match, out); err != nil {
		return fmt.Errorf("follow %s: %w", path, err)
	}
	return nil
}
