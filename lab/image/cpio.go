package image

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// File type bits of a cpio (and stat) mode, as stored in the c_mode field of a newc header.
const (
	ModeTypeMask uint32 = 0o170000
	ModeFIFO     uint32 = 0o010000
	ModeChar     uint32 = 0o020000
	ModeDir      uint32 = 0o040000
	ModeBlock    uint32 = 0o060000
	ModeRegular  uint32 = 0o100000
	ModeSymlink  uint32 = 0o120000
	ModeSocket   uint32 = 0o140000 // never archived
)

const (
	newcMagic      = "070701"
	newcHeaderSize = 110
	cpioTrailer    = "TRAILER!!!"
	// cpioBlock is the size the whole archive is padded to, as GNU cpio does. Any multiple of 4
	// keeps concatenated archives aligned, which is all the kernel needs.
	cpioBlock = 512
	maxUint32 = 1<<32 - 1
)

// CpioHeader describes one entry of a newc ("070701") cpio archive.
type CpioHeader struct {
	// Name is the path inside the archive, relative, with '/' separators and no leading "/"
	// or "./" (those are stripped).
	Name string
	// Mode is the full st_mode: one of the Mode* type bits OR'ed with the permission bits
	// (including setuid/setgid/sticky).
	Mode uint32
	// UID and GID are the numeric owner.
	UID, GID uint32
	// Mtime is the modification time in seconds since the epoch. Zero keeps archives
	// reproducible.
	Mtime uint32
	// Size is the number of data bytes that follow a regular file's header. It is ignored
	// (computed) for symlinks and must be 0 for other types.
	Size int64
	// Linkname is a symlink's target.
	Linkname string
	// RdevMajor and RdevMinor are a device node's numbers.
	RdevMajor, RdevMinor uint32
}

// CpioWriter writes a newc cpio archive, the format the Linux kernel unpacks as an initramfs.
// Entries get distinct inode numbers and a link count of 1 (2 for directories); hard links are
// not represented. Use it like archive/tar's Writer: WriteHeader, then Write exactly Size bytes
// for a regular file, and Close to write the trailer.
type CpioWriter struct {
	w         *bufio.Writer
	written   int64 // bytes written to w so far
	remaining int64 // data bytes the current entry still expects
	pad       int   // padding owed after the current entry's data
	ino       uint32
	err       error
	closed    bool
}

// NewCpioWriter returns a CpioWriter writing to w.
func NewCpioWriter(w io.Writer) *CpioWriter {
	return &CpioWriter{w: bufio.NewWriterSize(w, 1<<20), ino: 1}
}

func cleanName(name string) (string, error) {
	n := strings.TrimPrefix(name, "./")
	n = strings.TrimLeft(n, "/")
	n = path.Clean(n)
	if n == "." || n == "" || n == ".." || strings.HasPrefix(n, "../") {
		return "", fmt.Errorf("cpio: invalid entry name %q", name)
	}
	return n, nil
}

// WriteHeader finishes the previous entry (which must have received all its data) and writes
// the header of a new one. For a symlink it also writes the target.
func (cw *CpioWriter) WriteHeader(h *CpioHeader) error {
	if err := cw.finishEntry(); err != nil {
		return err
	}
	name, err := cleanName(h.Name)
	if err != nil {
		return err
	}
	size := h.Size
	nlink := uint32(1)
	switch h.Mode & ModeTypeMask {
	case ModeRegular:
		if size < 0 || size > maxUint32 {
			return fmt.Errorf("cpio: %s: size %d does not fit a newc header", name, size)
		}
	case ModeSymlink:
		if h.Linkname == "" {
			return fmt.Errorf("cpio: %s: symlink without a target", name)
		}
		size = int64(len(h.Linkname))
	case ModeDir:
		nlink = 2
		fallthrough
	case ModeChar, ModeBlock, ModeFIFO:
		if size != 0 {
			return fmt.Errorf("cpio: %s: non-regular entry with size %d", name, size)
		}
	default:
		return fmt.Errorf("cpio: %s: unsupported file type in mode %#o", name, h.Mode)
	}
	if err := cw.writeRaw(name, h.Mode, h.UID, h.GID, nlink, h.Mtime, uint32(size), h.RdevMajor, h.RdevMinor); err != nil {
		return err
	}
	cw.remaining = size
	cw.pad = pad4(size)
	if h.Mode&ModeTypeMask == ModeSymlink {
		if _, err := cw.Write([]byte(h.Linkname)); err != nil {
			return err
		}
	}
	return nil
}

func (cw *CpioWriter) writeRaw(name string, mode, uid, gid, nlink, mtime, size, rmaj, rmin uint32) error {
	if cw.err != nil {
		return cw.err
	}
	if cw.closed {
		return errors.New("cpio: write after Close")
	}
	ino := cw.ino
	cw.ino++
	if name == cpioTrailer {
		ino = 0
	}
	namesize := len(name) + 1
	hdr := fmt.Sprintf("%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		newcMagic, ino, mode, uid, gid, nlink, mtime, size, 0, 0, rmaj, rmin, namesize, 0)
	if err := cw.emit([]byte(hdr)); err != nil {
		return err
	}
	if err := cw.emit(append([]byte(name), 0)); err != nil {
		return err
	}
	return cw.emit(make([]byte, pad4(int64(newcHeaderSize+namesize))))
}

func (cw *CpioWriter) emit(p []byte) error {
	n, err := cw.w.Write(p)
	cw.written += int64(n)
	if err != nil {
		cw.err = fmt.Errorf("cpio: %w", err)
	}
	return cw.err
}

// Write writes data of the current regular file (or symlink) entry.
func (cw *CpioWriter) Write(p []byte) (int, error) {
	if cw.err != nil {
		return 0, cw.err
	}
	if int64(len(p)) > cw.remaining {
		return 0, fmt.Errorf("cpio: write of %d bytes exceeds the entry's remaining %d", len(p), cw.remaining)
	}
	n, err := cw.w.Write(p)
	cw.written += int64(n)
	cw.remaining -= int64(n)
	if err != nil {
		cw.err = fmt.Errorf("cpio: %w", err)
	}
	return n, cw.err
}

func (cw *CpioWriter) finishEntry() error {
	if cw.err != nil {
		return cw.err
	}
	if cw.remaining != 0 {
		return fmt.Errorf("cpio: previous entry is missing %d bytes of data", cw.remaining)
	}
	if cw.pad > 0 {
		p := cw.pad
		cw.pad = 0
		return cw.emit(make([]byte, p))
	}
	return nil
}

// Close writes the TRAILER!!! entry, pads the archive to 512 bytes and flushes. It does not
// close the underlying writer.
func (cw *CpioWriter) Close() error {
	if cw.closed {
		return cw.err
	}
	if err := cw.finishEntry(); err != nil {
		return err
	}
	if err := cw.writeRaw(cpioTrailer, 0, 0, 0, 1, 0, 0, 0, 0); err != nil {
		return err
	}
	cw.closed = true
	if rem := cw.written % cpioBlock; rem != 0 {
		if err := cw.emit(make([]byte, cpioBlock-rem)); err != nil {
			return err
		}
	}
	if err := cw.w.Flush(); err != nil {
		cw.err = fmt.Errorf("cpio: %w", err)
	}
	return cw.err
}

func pad4(n int64) int { return int((4 - n%4) % 4) }

// Dir writes a directory entry owned by root.
func (cw *CpioWriter) Dir(name string, perm uint32) error {
	return cw.WriteHeader(&CpioHeader{Name: name, Mode: ModeDir | perm&0o7777})
}

// Symlink writes a symlink entry owned by root.
func (cw *CpioWriter) Symlink(name, target string) error {
	return cw.WriteHeader(&CpioHeader{Name: name, Mode: ModeSymlink | 0o777, Linkname: target})
}

// File writes a regular file owned by root with the given contents.
func (cw *CpioWriter) File(name string, perm uint32, data []byte) error {
	if err := cw.WriteHeader(&CpioHeader{Name: name, Mode: ModeRegular | perm&0o7777, Size: int64(len(data))}); err != nil {
		return err
	}
	_, err := cw.Write(data)
	return err
}

// TreeOptions says how CpioWriter.AddTree maps a directory tree into the archive.
type TreeOptions struct {
	// Prefix is prepended to every archive name (e.g. "usr/lib/modules"). The directories of
	// the prefix itself are not written: the caller writes them if it wants them.
	Prefix string
	// RootOwned stores every entry as owned by 0:0 instead of the on-disk owner.
	RootOwned bool
}

// AddTree writes the contents of directory root (not root itself) in lexical order, so equal
// trees give byte-identical archives. Regular files, directories, symlinks and device nodes are
// stored with their mode and (unless opts.RootOwned) owner; mtimes are written as 0; hard links
// become independent copies. Sockets are skipped.
func (cw *CpioWriter) AddTree(root string, opts TreeOptions) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		name := path.Join(opts.Prefix, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("cpio: %s: no stat information", p)
		}
		h := &CpioHeader{Name: name, Mode: st.Mode, UID: st.Uid, GID: st.Gid}
		if opts.RootOwned {
			h.UID, h.GID = 0, 0
		}
		switch st.Mode & ModeTypeMask {
		case ModeSocket:
			return nil
		case ModeSymlink:
			if h.Linkname, err = os.Readlink(p); err != nil {
				return err
			}
		case ModeChar, ModeBlock:
			h.RdevMajor, h.RdevMinor = devMajor(st.Rdev), devMinor(st.Rdev)
		case ModeRegular:
			h.Size = st.Size
			return cw.addFile(h, p)
		}
		return cw.WriteHeader(h)
	})
}

func (cw *CpioWriter) addFile(h *CpioHeader, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := cw.WriteHeader(h); err != nil {
		return err
	}
	n, err := io.Copy(cw, f)
	if err != nil {
		return fmt.Errorf("cpio: copying %s: %w", p, err)
	}
	if n != h.Size {
		return fmt.Errorf("cpio: %s changed size while being archived", p)
	}
	return nil
}

func devMajor(dev uint64) uint32 { return uint32((dev>>8)&0xfff | (dev>>32)&^0xfff) }
func devMinor(dev uint64) uint32 { return uint32(dev&0xff | (dev>>12)&^0xff) }

// WalkCpio reads newc cpio archives from r and calls fn for every entry except the trailers,
// in order. Like the kernel, it accepts several archives concatenated (with zero padding
// between them). data yields a regular file's contents; a symlink's target is in
// h.Linkname. fn must not keep data after it returns.
func WalkCpio(r io.Reader, fn func(h *CpioHeader, data io.Reader) error) error {
	br := bufio.NewReaderSize(r, 1<<20)
	var off int64
	skip := func(n int64) error {
		m, err := io.CopyN(io.Discard, br, n)
		off += m
		return err
	}
	hdr := make([]byte, newcHeaderSize)
	for {
		// Skip the zero padding after a trailer (or between archives), 4 bytes at a time.
		b, err := br.Peek(4)
		if err == io.EOF && len(b) == 0 {
			return nil
		}
		if err != nil && len(b) < 4 {
			if allZero(b) {
				return nil
			}
			return fmt.Errorf("cpio: truncated archive at offset %d", off)
		}
		if allZero(b) {
			if err := skip(4); err != nil {
				return err
			}
			continue
		}
		if _, err := io.ReadFull(br, hdr); err != nil {
			return fmt.Errorf("cpio: reading header at offset %d: %w", off, err)
		}
		start := off
		off += newcHeaderSize
		if string(hdr[:6]) != newcMagic {
			return fmt.Errorf("cpio: bad magic %q at offset %d (only newc is supported)", hdr[:6], start)
		}
		var f [13]uint32
		for i := range f {
			v, err := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				return fmt.Errorf("cpio: bad header field %d at offset %d: %w", i, start, err)
			}
			f[i] = uint32(v)
		}
		namesize := int64(f[11])
		name := make([]byte, namesize)
		if _, err := io.ReadFull(br, name); err != nil {
			return fmt.Errorf("cpio: reading name at offset %d: %w", off, err)
		}
		off += namesize
		if err := skip(int64(pad4(newcHeaderSize + namesize))); err != nil {
			return err
		}
		h := &CpioHeader{
			Name: strings.TrimRight(string(name), "\x00"), Mode: f[1], UID: f[2], GID: f[3],
			Mtime: f[5], Size: int64(f[6]), RdevMajor: f[9], RdevMinor: f[10],
		}
		if h.Name == cpioTrailer {
			continue
		}
		size := h.Size
		if h.Mode&ModeTypeMask == ModeSymlink {
			target := make([]byte, size)
			if _, err := io.ReadFull(br, target); err != nil {
				return fmt.Errorf("cpio: reading symlink %s: %w", h.Name, err)
			}
			off += size
			h.Linkname = string(target)
			if err := fn(h, bytes.NewReader(nil)); err != nil {
				return err
			}
		} else {
			lr := &io.LimitedReader{R: br, N: size}
			if err := fn(h, lr); err != nil {
				return err
			}
			rest := lr.N
			off += size - rest
			if err := skip(rest); err != nil {
				return fmt.Errorf("cpio: %s: truncated data: %w", h.Name, err)
			}
		}
		if err := skip(int64(pad4(size))); err != nil {
			return fmt.Errorf("cpio: %s: truncated padding: %w", h.Name, err)
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
