// Package debian reaches Debian's archive through apt, for the kernels nfslab boots: Debian's
// kernel images and kernel source packages. An Archive is either the host's own apt
// configuration, or a suite the host does not use (an older release), which is reached
// through a private apt state directory in nfslab's cache, so that the host's apt
// configuration is never changed.
package debian

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nfslab/nfslab/internal/atomicfile"
	"github.com/nfslab/nfslab/lab/hosttools"
	"github.com/nfslab/nfslab/lab/image"
)

// Archive is a part of Debian's archive that apt can reach.
type Archive struct {
	// Name is "" for the host's apt configuration, else the suite (e.g. "bullseye").
	Name string
	// Sources are the sources.list lines of a private archive; none for the host's.
	Sources []string
}

// keyring verifies the suites below: Debian's archive keyring, which on bookworm still
// carries bullseye's keys.
const keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// archives are the suites nfslab reaches besides the host's own apt configuration.
func archives() []Archive {
	line := func(uri, suite string) string {
		return fmt.Sprintf("deb [signed-by=%s] %s %s main", keyring, uri, suite)
	}
	return []Archive{
		{Name: "bullseye", Sources: []string{
			line("http://deb.debian.org/debian", "bullseye"),
			line("http://deb.debian.org/debian-security", "bullseye-security"),
		}},
	}
}

// Lookup returns the archive of that name: "" is the host's apt configuration.
func Lookup(name string) (Archive, error) {
	if name == "" {
		return Archive{}, nil
	}
	var known []string
	for _, a := range archives() {
		if a.Name == name {
			return a, nil
		}
		known = append(known, a.Name)
	}
	return Archive{}, fmt.Errorf("unknown Debian archive %q; known: %s (or none, for the host's apt sources)", name, strings.Join(known, ", "))
}

// Host reports whether the archive is the host's apt configuration.
func (a Archive) Host() bool { return len(a.Sources) == 0 }

// String names the archive in messages.
func (a Archive) String() string {
	if a.Host() {
		return "the host's apt sources"
	}
	return "Debian " + a.Name
}

// MaxListAge is how old a private archive's package lists may get before Open refreshes them.
const MaxListAge = 24 * time.Hour

// Apt runs apt-get and apt-cache against one archive.
type Apt struct {
	archive Archive
	opts    []string // -o options that point apt at a private state directory
}

// Open returns apt for the archive. The host's archive uses the host's lists as they are (a
// missing package tells the user to run apt-get update). A private archive keeps its
// sources.list, package lists and apt cache under <cacheDir>/apt/<name>/, downloaded with
// `apt-get update` when missing or older than MaxListAge; a failed refresh of lists that exist
// is logged and the old lists are used.
func Open(ctx context.Context, log *slog.Logger, a Archive, cacheDir string) (*Apt, error) {
	if a.Host() {
		return openHost(log, a, cacheDir), nil
	}
	if cacheDir == "" {
		return nil, fmt.Errorf("%s: no cache directory for its apt lists", a)
	}
	dir := filepath.Join(cacheDir, "apt", a.Name)
	for _, d := range []string{filepath.Join(dir, "lists", "partial"), filepath.Join(dir, "cache", "archives", "partial")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("%s: creating its apt directory: %w", a, err)
		}
	}
	unlock, err := image.LockFile(ctx, log, dir+".lock")
	if err != nil {
		return nil, fmt.Errorf("%s: locking its apt lists: %w", a, err)
	}
	defer unlock()
	image.MarkUsed(log, dir)
	sources := filepath.Join(dir, "sources.list")
	if err := writeIfChanged(sources, []byte(strings.Join(a.Sources, "\n")+"\n")); err != nil {
		return nil, fmt.Errorf("%s: writing its sources.list: %w", a, err)
	}
	apt := &Apt{archive: a, opts: privateOptions(dir, sources)}
	age, ok := listAge(filepath.Join(dir, "lists"))
	if ok && age < MaxListAge {
		return apt, nil
	}
	log.Info("downloading package lists", "archive", a.Name)
	if _, err := apt.run(ctx, "", "apt-get", "update"); err != nil {
		if ok {
			log.Warn("could not refresh package lists; using the old ones", "archive", a.Name, "age", age.Round(time.Minute), "err", err)
			return apt, nil
		}
		return nil, fmt.Errorf("%s: downloading its package lists: %w", a, err)
	}
	return apt, nil
}

// hostState names the directory under <cacheDir>/apt/ that keeps apt's package cache for the
// host's archive: no suite is called that.
const hostState = "host"

// openHost returns apt for the host's own sources, with its binary package cache
// (pkgcache.bin) kept under <cacheDir>/apt/host/ when there is a cache directory. Container
// images of Debian and Ubuntu switch that cache off (Dir::Cache::pkgcache ""), and then every
// apt-cache query parses all the package lists again: about a second each on the 2-core bench
// machine, against 0.07 s from the cache. apt itself checks the cache against the lists and
// dpkg's status before it uses it, and rebuilds it when they changed.
func openHost(log *slog.Logger, a Archive, cacheDir string) *Apt {
	apt := &Apt{archive: a}
	if cacheDir == "" {
		return apt
	}
	dir := filepath.Join(cacheDir, "apt", hostState)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Debug("apt queries go without a package cache", "err", err)
		return apt
	}
	image.MarkUsed(log, dir)
	apt.opts = []string{"-o", "Dir::Cache::pkgcache=" + filepath.Join(dir, pkgCache)}
	return apt
}

// pkgCache is the file name of apt's binary package cache.
const pkgCache = "pkgcache.bin"

// writeIfChanged replaces the file atomically when its content differs, so that an apt
// reading it at the same time never sees half of it.
func writeIfChanged(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return atomicfile.WriteBytes(path, 0o644, data)
}

// privateOptions point apt-get and apt-cache at a state directory of their own: its
// sources.list and nothing from /etc/apt/sources.list.d, its own lists and cache, and no
// installed packages. The host's other apt settings (proxies, for one) still apply.
func privateOptions(dir, sources string) []string {
	var out []string
	for _, kv := range [][2]string{
		{"Dir::Etc::SourceList", sources},
		{"Dir::Etc::SourceParts", filepath.Join(dir, "sources.list.d")},
		{"Dir::State::Lists", filepath.Join(dir, "lists")},
		{"Dir::Cache", filepath.Join(dir, "cache")},
		{"Dir::Cache::pkgcache", filepath.Join(dir, "cache", pkgCache)}, // see openHost
		{"Dir::State::status", "/dev/null"},
	} {
		out = append(out, "-o", kv[0]+"="+kv[1])
	}
	return out
}

// listAge is the age of the newest Packages index in a lists directory; false if there is none.
func listAge(lists string) (time.Duration, bool) {
	entries, err := os.ReadDir(lists)
	if err != nil {
		return 0, false
	}
	var newest time.Time
	for _, e := range entries {
		if !strings.Contains(e.Name(), "_Packages") {
			continue
		}
		if info, err := e.Info(); err == nil && info.ModTime().After(newest) {
			newest = info.ModTime()
		}
	}
	if newest.IsZero() {
		return 0, false
	}
	return time.Since(newest), true
}

// Depends returns the first package pkg depends on (for a meta package such as
// linux-image-amd64, the current kernel image package).
func (a *Apt) Depends(ctx context.Context, pkg string) (string, error) {
	out, err := a.run(ctx, "", "apt-cache", "depends", "--important", pkg)
	if err != nil {
		return "", err
	}
	return parseDepends(out, pkg, a.archive)
}

// Candidate returns the version apt would install of pkg.
func (a *Apt) Candidate(ctx context.Context, pkg string) (string, error) {
	out, err := a.run(ctx, "", "apt-cache", "policy", pkg)
	if err != nil {
		return "", err
	}
	return parseCandidate(out, pkg, a.archive)
}

// Download fetches pkg=version into dir and returns the path of the .deb.
func (a *Apt) Download(ctx context.Context, pkg, version, dir string) (string, error) {
	if _, err := a.run(ctx, dir, "apt-get", "download", pkg+"="+version); err != nil {
		hint := ""
		if strings.Contains(err.Error(), "404") && a.archive.Host() {
			hint = " (the apt lists are out of date: run apt-get update)"
		}
		return "", fmt.Errorf("downloading %s=%s from %s%s: %w", pkg, version, a.archive, hint, err)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s left %d .deb files in %s", pkg, len(debs), dir)
	}
	return debs[0], nil
}

// run runs apt-get or apt-cache (in dir, if set) and returns its standard output. Running as
// root, apt-get would drop to _apt for downloads and warn that it cannot write to dir.
func (a *Apt) run(ctx context.Context, dir, tool string, args ...string) (string, error) {
	path, err := hosttools.Require(tool, "apt")
	if err != nil {
		return "", err
	}
	all := append(slices.Clone(a.opts), "-o", "APT::Sandbox::User=root")
	all = append(all, args...)
	cmd := exec.CommandContext(ctx, path, all...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	msg := strings.TrimSpace(stderr.String())
	what := tool + " " + strings.Join(args, " ")
	if strings.Contains(msg, "No packages found") || strings.Contains(msg, "Unable to locate") {
		return "", fmt.Errorf("%s: %s knows no %s (%s)%s", what, a.archive, args[len(args)-1], msg, a.updateHint())
	}
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("%s (%s): %v: %s", what, a.archive, err, lastLines(msg, 20))
	}
	return stdout.String(), nil
}

func (a *Apt) updateHint() string { return a.archive.updateHint() }

// updateHint is the advice to add to "apt knows no such package": the host's lists are the
// user's to refresh; a private archive's are refreshed by Open.
func (a Archive) updateHint() string {
	if a.Host() {
		return ": run apt-get update"
	}
	return ""
}

func lastLines(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// parseDepends returns the first Depends of pkg in `apt-cache depends` output.
func parseDepends(out, pkg string, a Archive) (string, error) {
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "|"))
		if dep, ok := strings.CutPrefix(l, "Depends: "); ok {
			dep = strings.Trim(strings.TrimSpace(dep), "<>")
			if dep != "" {
				return dep, nil
			}
		}
	}
	return "", fmt.Errorf("apt-cache depends %s shows no Depends in %s (are the apt lists empty?%s):\n%s", pkg, a, a.updateHint(), out)
}

// parseCandidate returns the Candidate version in `apt-cache policy` output.
func parseCandidate(out, pkg string, a Archive) (string, error) {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "Candidate: "); ok {
			v = strings.TrimSpace(v)
			if v == "" || v == "(none)" {
				break
			}
			return v, nil
		}
	}
	return "", fmt.Errorf("apt-cache policy %s shows no candidate version in %s%s", pkg, a, a.updateHint())
}

// Unpack extracts the files of a .deb into dir (dpkg-deb -x: no maintainer scripts run).
func Unpack(ctx context.Context, deb, dir string) error {
	dpkgDeb, err := hosttools.Require("dpkg-deb", "dpkg")
	if err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, dpkgDeb, "-x", deb, dir).CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("unpacking %s: %w: %s", filepath.Base(deb), err, lastLines(strings.TrimSpace(string(out)), 20))
	}
	return nil
}
