package image

// This file turns mmdebstrap's tar stream of the guest root filesystem into the cpio archive the
// VMs boot from: trimmed, with the recipe's fix-ups, reproducible (mtimes 0).

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// rootfsStats is what writeRootfsCpio measured.
type rootfsStats struct {
	entriesIn, entriesOut int
	bytesIn, bytesOut     int64 // regular file data, before and after trimming
	cpioSize              int64
	packages              string // "name version" lines from var/lib/dpkg/status
}

// writeRootfsCpio converts the tar stream of a root filesystem into the cpio file out,
// dropping what r.Trim matches and applying r.Files.
func writeRootfsCpio(tarStream io.Reader, out string, r rootfsRecipe) (rootfsStats, error) {
	var st rootfsStats
	f, err := os.Create(out)
	if err != nil {
		return st, err
	}
	defer f.Close()
	cw := NewCpioWriter(f)
	if err := convertTar(tarStream, cw, r, &st); err != nil {
		return st, err
	}
	if err := cw.Close(); err != nil {
		return st, err
	}
	st.cpioSize = cw.written
	return st, f.Close()
}

// convertTar copies the tar stream into cw, applying the recipe's trimming and fix-ups.
// Hard links become absolute symlinks to their target. Entries keep their mode and owner;
// mtimes are written as 0 so the archive depends only on the tree's content.
func convertTar(tarStream io.Reader, cw *CpioWriter, r rootfsRecipe, st *rootfsStats) error {
	fix := map[string]fixup{}
	for _, f := range r.Files {
		fix[f.Path] = f
	}
	done := map[string]bool{}
	dirs := map[string]bool{}
	tr := tar.NewReader(tarStream)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading tar: %w", err)
		}
		name := strings.Trim(path.Clean(strings.TrimPrefix(h.Name, "./")), "/")
		if name == "." || name == "" {
			continue
		}
		st.entriesIn++
		if h.Typeflag == tar.TypeReg {
			st.bytesIn += h.Size
		}
		if trimmed(name, r.Trim) {
			continue
		}
		if name == "var/lib/dpkg/status" && h.Typeflag == tar.TypeReg {
			var buf bytes.Buffer
			if err := copyTarEntry(cw, h, name, io.TeeReader(tr, &buf), st); err != nil {
				return err
			}
			st.packages = installedPackages(buf.String())
			continue
		}
		if fx, ok := fix[name]; ok {
			if done[name] {
				continue // a second tar entry for a path already replaced
			}
			done[name] = true
			// A fix-up directory that exists already keeps the packaged one's mode and owner.
			if fx.Mode&ModeTypeMask != ModeDir || h.Typeflag != tar.TypeDir {
				if err := writeFixup(cw, fx, st); err != nil {
					return err
				}
				continue
			}
		}
		if h.Typeflag == tar.TypeDir {
			dirs[name] = true
		}
		if err := copyTarEntry(cw, h, name, tr, st); err != nil {
			return err
		}
	}
	for _, f := range r.Files {
		if done[f.Path] {
			continue
		}
		// A fix-up for a path the packages did not create: make its parents first.
		for _, p := range parents(f.Path) {
			if !dirs[p] {
				if err := cw.Dir(p, 0o755); err != nil {
					return err
				}
				dirs[p] = true
				st.entriesOut++
			}
		}
		if err := writeFixup(cw, f, st); err != nil {
			return err
		}
		if f.Mode&ModeTypeMask == ModeDir {
			dirs[f.Path] = true
		}
	}
	return nil
}

func parents(p string) []string {
	var out []string
	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		out = append([]string{d}, out...)
	}
	return out
}

func writeFixup(cw *CpioWriter, f fixup, st *rootfsStats) error {
	st.entriesOut++
	switch f.Mode & ModeTypeMask {
	case ModeSymlink:
		return cw.WriteHeader(&CpioHeader{Name: f.Path, Mode: f.Mode, Linkname: f.Linkname})
	case ModeDir:
		return cw.Dir(f.Path, f.Mode)
	default:
		st.bytesOut += int64(len(f.Data))
		return cw.File(f.Path, f.Mode, []byte(f.Data))
	}
}

func copyTarEntry(cw *CpioWriter, h *tar.Header, name string, data io.Reader, st *rootfsStats) error {
	ch := &CpioHeader{Name: name, Mode: uint32(h.Mode) & 0o7777, UID: uint32(h.Uid), GID: uint32(h.Gid)}
	switch h.Typeflag {
	case tar.TypeReg:
		ch.Mode |= ModeRegular
		ch.Size = h.Size
	case tar.TypeDir:
		ch.Mode |= ModeDir
	case tar.TypeSymlink:
		ch.Mode |= ModeSymlink
		ch.Linkname = h.Linkname
	case tar.TypeLink:
		// newc can express hard links only with matching inode numbers and link counts known
		// up front; an absolute symlink is equivalent for everything the guest runs.
		ch.Mode = ModeSymlink | 0o777
		ch.Linkname = "/" + strings.Trim(path.Clean(strings.TrimPrefix(h.Linkname, "./")), "/")
	case tar.TypeChar:
		ch.Mode |= ModeChar
		ch.RdevMajor, ch.RdevMinor = uint32(h.Devmajor), uint32(h.Devminor)
	case tar.TypeBlock:
		ch.Mode |= ModeBlock
		ch.RdevMajor, ch.RdevMinor = uint32(h.Devmajor), uint32(h.Devminor)
	case tar.TypeFifo:
		ch.Mode |= ModeFIFO
	default:
		return fmt.Errorf("%s: unsupported tar entry type %q", name, h.Typeflag)
	}
	if err := cw.WriteHeader(ch); err != nil {
		return err
	}
	st.entriesOut++
	if ch.Mode&ModeTypeMask == ModeRegular {
		n, err := io.Copy(cw, data)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if n != h.Size {
			return fmt.Errorf("%s: short tar entry (%d of %d bytes)", name, n, h.Size)
		}
		st.bytesOut += n
	}
	return nil
}

// trimmed reports whether name or one of its parent directories matches a glob in trim.
func trimmed(name string, trim []string) bool {
	for p := name; p != "." && p != "/" && p != ""; p = path.Dir(p) {
		for _, g := range trim {
			if ok, _ := path.Match(g, p); ok {
				return true
			}
		}
	}
	return false
}

// installedPackages extracts "name version" lines of installed packages from a dpkg status
// file.
func installedPackages(status string) string {
	var lines []string
	for _, stanza := range strings.Split(status, "\n\n") {
		var name, version string
		installed := false
		for _, l := range strings.Split(stanza, "\n") {
			switch {
			case strings.HasPrefix(l, "Package: "):
				name = strings.TrimPrefix(l, "Package: ")
			case strings.HasPrefix(l, "Version: "):
				version = strings.TrimPrefix(l, "Version: ")
			case strings.HasPrefix(l, "Status: "):
				installed = strings.HasSuffix(l, " installed")
			}
		}
		if name != "" && installed {
			lines = append(lines, name+" "+version)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}
