// Package recipe builds the kernels nfslab boots from recipes shipped in manifests/kernels: a
// Debian kernel source package, a patch applied to it, and a config fragment applied on top of
// base configs (x86_64_defconfig kvm_guest.config). Build unpacks, patches, configures,
// verifies that every option of the fragment survived `make olddefconfig`, compiles bzImage,
// and caches the result under <cacheDir>/kernels/<name>-<key>/, where key covers everything the
// kernel is built from.
package recipe

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/nfslab/nfslab/lab/kernel/debian"
	"github.com/nfslab/nfslab/manifests/kernels"
)

// FormatVersion is part of every Key: bump it when Build changes in a way that changes the
// kernel it produces from the same inputs (build steps, make variables, output layout).
const FormatVersion = "nfslab-kernel-recipe/1"

// metaFile is the name of the file describing a recipe in its directory.
const metaFile = "recipe.json"

// Recipe is a kernel nfslab can build: a Debian source package, a patch and config fragments.
type Recipe struct {
	// Name is the recipe's directory in manifests/kernels, e.g. "vulnerable-6.1".
	Name string
	// SourcePackage is the Debian package that installs the source tarball,
	// /usr/src/<SourcePackage>.tar.xz, whose top directory is <SourcePackage>.
	SourcePackage string
	// Archive is the part of Debian's archive the source package comes from (a
	// debian.Archive name): "" for the host's apt sources, where it is installed; another
	// suite's package is downloaded into the cache instead.
	Archive string
	// Description says what the kernel is for, in one line.
	Description string
	// BaseConfigs are the make targets that produce the starting .config, in order (a
	// defconfig, then fragments from kernel/configs or arch/x86/configs).
	BaseConfigs []string
	// Patch is a unified diff applied with `patch -p1 --forward` in the source tree.
	Patch []byte
	// ConfigFragment is merged into the base config; every option in it must survive
	// `make olddefconfig` (see ParseConfig and Verify). It is the recipe's fragments,
	// concatenated: an option set in two of them is an error.
	ConfigFragment []byte
}

// recipeMeta is the JSON form of recipe.json.
type recipeMeta struct {
	Description   string   `json:"description"`
	SourcePackage string   `json:"source_package"`
	Archive       string   `json:"archive,omitempty"` // a debian.Archive name; none: the host's apt sources
	BaseConfigs   []string `json:"base_configs"`
	Patch         string   `json:"patch"` // optional: none for a control kernel
	// Config names the config fragments, merged in order: "file", or "<dir>/file" for one
	// shared with other recipes (common/, or another recipe's directory).
	Config []string `json:"config"`
	// LocalVersion, when set, replaces CONFIG_LOCALVERSION in the config fragment, so a kernel
	// that shares another recipe's config still names itself in `uname -r`.
	LocalVersion string `json:"localversion,omitempty"`
}

// Names returns the names of the recipes shipped in manifests/kernels, sorted.
func Names() []string {
	return names(kernels.FS)
}

func names(fsys fs.FS) []string {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if _, err := fs.Stat(fsys, path.Join(e.Name(), metaFile)); err == nil {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// Lookup loads the named recipe from manifests/kernels. An unknown name is an error that lists
// the known recipes.
func Lookup(name string) (Recipe, error) {
	return lookup(kernels.FS, name)
}

func lookup(fsys fs.FS, name string) (Recipe, error) {
	known := names(fsys)
	found := false
	for _, n := range known {
		if n == name {
			found = true
			break
		}
	}
	if !found {
		return Recipe{}, fmt.Errorf("unknown kernel recipe %q; known recipes: %s", name, strings.Join(known, ", "))
	}
	raw, err := fs.ReadFile(fsys, path.Join(name, metaFile))
	if err != nil {
		return Recipe{}, fmt.Errorf("reading kernel recipe %s: %w", name, err)
	}
	var m recipeMeta
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Recipe{}, fmt.Errorf("parsing %s/%s: %w", name, metaFile, err)
	}
	r := Recipe{
		Name:          name,
		SourcePackage: m.SourcePackage,
		Archive:       m.Archive,
		Description:   m.Description,
		BaseConfigs:   m.BaseConfigs,
	}
	if m.Patch != "" { // no patch: a control kernel, the source as Debian ships it
		if r.Patch, err = readRecipeFile(fsys, name, m.Patch); err != nil {
			return Recipe{}, err
		}
	}
	if len(m.Config) == 0 {
		return Recipe{}, fmt.Errorf("kernel recipe %s: %s names no config fragment", name, metaFile)
	}
	for _, c := range m.Config {
		frag, err := readRecipeFile(fsys, name, c)
		if err != nil {
			return Recipe{}, err
		}
		r.ConfigFragment = append(r.ConfigFragment, frag...)
		if len(frag) > 0 && frag[len(frag)-1] != '\n' {
			r.ConfigFragment = append(r.ConfigFragment, '\n')
		}
	}
	if m.LocalVersion != "" {
		r.ConfigFragment = setLocalVersion(r.ConfigFragment, m.LocalVersion)
	}
	if err := r.validate(); err != nil {
		return Recipe{}, fmt.Errorf("kernel recipe %s: %w", name, err)
	}
	return r, nil
}

// readRecipeFile reads a file of recipe name: "file" in the recipe's own directory, or
// "dir/file" from a shared directory (common/) or another recipe's (kernels share their config
// fragments, so a control and the kernel it controls cannot drift apart).
func readRecipeFile(fsys fs.FS, name, file string) ([]byte, error) {
	dir, base, shared := strings.Cut(file, "/")
	if !shared {
		dir, base = name, file
	}
	if base == "" || strings.Contains(base, "/") || !safeName(dir) {
		return nil, fmt.Errorf("kernel recipe %s: bad file name %q in %s", name, file, metaFile)
	}
	b, err := fs.ReadFile(fsys, path.Join(dir, base))
	if err != nil {
		return nil, fmt.Errorf("reading kernel recipe %s: %w", name, err)
	}
	return b, nil
}

// setLocalVersion returns fragment with its CONFIG_LOCALVERSION line (added if missing) set to v.
func setLocalVersion(fragment []byte, v string) []byte {
	line := fmt.Sprintf("CONFIG_LOCALVERSION=%q", v)
	lines := strings.Split(string(fragment), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "CONFIG_LOCALVERSION=") || strings.HasPrefix(l, "# CONFIG_LOCALVERSION is not set") {
			lines[i] = line
			return []byte(strings.Join(lines, "\n"))
		}
	}
	return append(append([]byte{}, fragment...), []byte("\n"+line+"\n")...)
}

// validate checks what can be checked without the source: names that end up in paths and
// command lines, a patch that is a diff, a fragment that parses.
func (r Recipe) validate() error {
	if !safeName(r.SourcePackage) {
		return fmt.Errorf("bad source package name %q", r.SourcePackage)
	}
	if _, err := debian.Lookup(r.Archive); err != nil {
		return err
	}
	if len(r.BaseConfigs) == 0 {
		return errors.New("no base configs")
	}
	for _, c := range r.BaseConfigs {
		if !safeName(c) || !strings.HasSuffix(c, "config") {
			return fmt.Errorf("bad base config target %q", c)
		}
	}
	if len(r.Patch) > 0 && len(patchedFiles(r.Patch)) == 0 {
		return errors.New("patch touches no file (no \"+++ b/...\" line)")
	}
	opts, err := ParseConfig(r.ConfigFragment)
	if err != nil {
		return fmt.Errorf("config fragment: %w", err)
	}
	if len(opts) == 0 {
		return errors.New("config fragment sets no option")
	}
	return nil
}

// safeName reports whether s is a plain file or package name: letters, digits, '.', '_',
// '+', '-', not starting with '-' or '.'.
func safeName(s string) bool {
	if s == "" || s[0] == '-' || s[0] == '.' {
		return false
	}
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == '+', c == '-':
		default:
			return false
		}
	}
	return true
}

// patchedFiles returns the paths (with the first component stripped, as patch -p1 does) of the
// files a unified diff modifies, in order.
func patchedFiles(patch []byte) []string {
	var out []string
	for _, line := range strings.Split(string(patch), "\n") {
		rest, ok := strings.CutPrefix(line, "+++ ")
		if !ok {
			continue
		}
		p, _, _ := strings.Cut(rest, "\t")
		if _, after, ok := strings.Cut(strings.TrimSpace(p), "/"); ok && after != "" {
			out = append(out, after)
		}
	}
	return out
}

// Key identifies the kernel built from this recipe and the given version of its source
// package: the hex sha256 over FormatVersion, the recipe name, the source package and its
// version, the base configs, the patch and the config fragment. The description is not part
// of it.
func (r Recipe) Key(sourceVersion string) string {
	h := sha256.New()
	field := func(name, value string) {
		// Length-prefixed, so no choice of values can collide.
		fmt.Fprintf(h, "%s %d:%s\n", name, len(value), value)
	}
	field("format", FormatVersion)
	field("name", r.Name)
	field("source-package", r.SourcePackage)
	field("source-version", sourceVersion)
	field("base-configs", strings.Join(r.BaseConfigs, " "))
	field("patch", string(r.Patch))
	field("config", string(r.ConfigFragment))
	return hex.EncodeToString(h.Sum(nil))
}

// Tarball is where the source package installs the kernel source on the host (for a recipe
// from the host's archive; see findSource for the others).
func (r Recipe) Tarball() string { return debian.HostSourceTarball(r.SourcePackage) }
