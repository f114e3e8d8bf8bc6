package image

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
)

// A Go binary built with cgo (go install, or go build with a C compiler around) is dynamically
// linked against glibc. It can still be the VM's init: the initramfs holds the guest's Debian
// root filesystem, with its own dynamic loader and libc, unpacked before init runs. That works
// when the guest has the binary's program interpreter and every library it needs, with every
// symbol version it asks for (a binary linked against a newer glibc than the guest's may ask for
// versions the guest lacks). checkDynamicAgent checks exactly that, from the files themselves.

// libDirs are where the guest's loader finds libraries without a cache entry or RUNPATH (the
// multiarch directories first, as Debian's ld.so.conf has them).
var libDirs = []string{"lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "usr/lib64", "lib", "usr/lib"}

// interpreter returns the program interpreter of an ELF file ("" for a static one).
func interpreter(f *elf.File) (string, error) {
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(p.Open(), 4096))
		if err != nil {
			return "", fmt.Errorf("reading its program interpreter: %w", err)
		}
		return string(bytes.TrimRight(b, "\x00")), nil
	}
	return "", nil
}

// checkDynamicAgent checks that the dynamically linked binary f (at binary, with program
// interpreter interp) can run from an initramfs that holds the cpio archive rootfs.
func checkDynamicAgent(f *elf.File, binary, interp, rootfs string) error {
	needed, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("agent binary %s: reading the libraries it needs: %w", binary, err)
	}
	versions := map[string][]string{} // library → symbol versions needed from it
	if vn, err := f.DynamicVersionNeeds(); err == nil {
		for _, n := range vn {
			for _, d := range n.Needs {
				versions[n.Name] = append(versions[n.Name], d.Dep)
			}
		}
	}
	tree, err := readTree(rootfs)
	if err != nil {
		return err
	}
	var problems []string
	if _, ok := tree.resolve(interp); !ok {
		problems = append(problems, "no program interpreter "+interp)
	}
	paths := map[string]string{} // library → its file in the guest
	for _, lib := range needed {
		if p, ok := tree.find(lib); ok {
			paths[lib] = p
		} else {
			problems = append(problems, "no "+lib)
		}
	}
	contents, err := readFiles(rootfs, paths)
	if err != nil {
		return err
	}
	for _, lib := range sortedKeys(paths) {
		missing, err := missingVersions(contents[paths[lib]], versions[lib])
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s (/%s): %v", lib, paths[lib], err))
		} else if len(missing) > 0 {
			problems = append(problems, fmt.Sprintf("%s (/%s) lacks %s", lib, paths[lib], strings.Join(missing, ", ")))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("agent binary %s is dynamically linked and the guest cannot run it: %s; build nfslab without cgo (CGO_ENABLED=0 go install ./cmd/nfslab, or make build)",
			binary, strings.Join(problems, "; "))
	}
	return nil
}

// missingVersions returns the versions of want that the shared library lib does not define.
func missingVersions(lib []byte, want []string) ([]string, error) {
	if len(want) == 0 {
		return nil, nil
	}
	f, err := elf.NewFile(bytes.NewReader(lib))
	if err != nil {
		return nil, fmt.Errorf("not an ELF library: %w", err)
	}
	defer f.Close()
	defs, err := f.DynamicVersions()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return nil, fmt.Errorf("reading its symbol versions: %w", err)
	}
	have := map[string]bool{}
	for _, d := range defs {
		have[d.Name] = true
	}
	var missing []string
	for _, v := range want {
		if !have[v] && !slices.Contains(missing, v) {
			missing = append(missing, v)
		}
	}
	sort.Strings(missing)
	return missing, nil
}

// archiveTree is the file tree a cpio archive unpacks to, as far as finding files goes.
type archiveTree struct {
	links map[string]string // symlink → target
	files map[string]bool   // regular files
}

func readTree(archive string) (archiveTree, error) {
	t := archiveTree{links: map[string]string{}, files: map[string]bool{}}
	f, err := os.Open(archive)
	if err != nil {
		return t, fmt.Errorf("reading the guest root filesystem: %w", err)
	}
	defer f.Close()
	err = WalkCpio(f, func(h *CpioHeader, _ io.Reader) error {
		name := path.Clean(h.Name)
		delete(t.links, name)
		delete(t.files, name)
		switch h.Mode & ModeTypeMask {
		case ModeSymlink:
			t.links[name] = h.Linkname
		case ModeRegular:
			t.files[name] = true
		}
		return nil
	})
	if err != nil {
		return t, fmt.Errorf("reading the guest root filesystem %s: %w", archive, err)
	}
	return t, nil
}

// resolve follows symlinks in every component of p (absolute or relative to the root) and
// returns the regular file it names, relative to the root.
func (t archiveTree) resolve(p string) (string, bool) {
	rest := strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/")
	cur := ""
	for hops := 0; len(rest) > 0; {
		next := path.Join(cur, rest[0])
		rest = rest[1:]
		target, isLink := t.links[next]
		if !isLink {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", false
		}
		if !strings.HasPrefix(target, "/") {
			target = path.Join("/", cur, target)
		}
		rest = append(strings.Split(strings.Trim(path.Clean(target), "/"), "/"), rest...)
		cur = ""
	}
	return cur, t.files[cur]
}

// find looks a library up in libDirs.
func (t archiveTree) find(lib string) (string, bool) {
	if strings.Contains(lib, "/") {
		return t.resolve(lib)
	}
	for _, d := range libDirs {
		if p, ok := t.resolve(path.Join(d, lib)); ok {
			return p, true
		}
	}
	return "", false
}

// readFiles reads the contents of the given files (the values of paths) from a cpio archive.
func readFiles(archive string, paths map[string]string) (map[string][]byte, error) {
	want := map[string]bool{}
	for _, p := range paths {
		want[p] = true
	}
	out := map[string][]byte{}
	if len(want) == 0 {
		return out, nil
	}
	f, err := os.Open(archive)
	if err != nil {
		return nil, fmt.Errorf("reading the guest root filesystem: %w", err)
	}
	defer f.Close()
	err = WalkCpio(f, func(h *CpioHeader, data io.Reader) error {
		name := path.Clean(h.Name)
		if !want[name] || h.Mode&ModeTypeMask != ModeRegular {
			return nil
		}
		b, err := io.ReadAll(data)
		out[name] = b
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the guest root filesystem %s: %w", archive, err)
	}
	return out, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
