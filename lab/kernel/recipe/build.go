package recipe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nfslab/nfslab/internal/lines"
	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/internal/procgroup"
)

// Built is a kernel in the cache.
type Built struct {
	// Name is the recipe's name.
	Name string
	// Release is `make kernelrelease`, what `uname -r` prints in the guest.
	Release string
	// BzImage and Config are the paths of the kernel image and its final .config.
	BzImage, Config string
	// Key is Recipe.Key of the source version it was built from.
	Key string
	// Cached is true when the kernel was already built and nothing ran.
	Cached bool
	// Duration is how long Build took.
	Duration time.Duration
}

// Names of the files in a cached kernel's directory.
const (
	BzImageFile  = "bzImage"
	ConfigFile   = "config"
	ReleaseFile  = "release"
	InputsFile   = "inputs.txt"
	PatchFile    = "recipe.patch"
	FragmentFile = "fragment.config"
)

// niceness is the nice(1) increment of the compiler, so that a kernel build does not starve
// the VMs and the rest of the machine.
const niceness = "10"

// Build returns the kernel built from r, building it first unless
// <cacheDir>/kernels/<name>-<key>/ already holds it. The build finds the source (findSource:
// the host's source package, installed with apt-get as root when its tarball is missing, or
// one downloaded from the recipe's archive into the cache), takes the shared build tree of its
// source and config (tree.go: reused when a recipe of the same source and config was built
// before, else unpacked), applies the patch, configures (base configs, the fragment, make
// olddefconfig), verifies the config (a *ConfigError when options did not stick), runs a
// nice'd `make -j<ncpu> bzImage` (incremental in a reused tree), publishes bzImage, .config and
// the kernel release atomically, and reverts the patch so the tree is pristine again.
// Concurrent builds of the same kernel, or of kernels sharing a tree, wait for each other.
// progress (may be nil) receives a short line every few seconds; ctx cancels the build and
// kills make with all its children.
func Build(ctx context.Context, r Recipe, cacheDir string, log *slog.Logger, progress func(string)) (Built, error) {
	start := time.Now()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if progress == nil {
		progress = func(string) {}
	}
	progress = serialized(progress) // the ticker goroutine calls it too
	if cacheDir == "" {
		return Built{}, errors.New("building a kernel: no cache directory")
	}
	if err := r.validate(); err != nil {
		return Built{}, fmt.Errorf("kernel recipe %s: %w", r.Name, err)
	}
	if !safeName(r.Name) {
		return Built{}, fmt.Errorf("bad kernel recipe name %q", r.Name)
	}
	if runtime.GOARCH != "amd64" {
		return Built{}, fmt.Errorf("kernel recipe %s builds an x86_64 kernel, which needs an x86_64 host (this is %s)", r.Name, runtime.GOARCH)
	}
	src, err := findSource(ctx, r, cacheDir, log, progress)
	if err != nil {
		return Built{}, err
	}
	version := src.Version
	key := r.Key(version)
	parent := filepath.Join(cacheDir, "kernels")
	final := filepath.Join(parent, r.Name+"-"+key)
	if b, ok := cached(log, r.Name, key, final); ok {
		log.Debug("kernel cache hit", "recipe", r.Name, "dir", final)
		b.Duration = time.Since(start)
		return b, nil
	}
	if err := CheckBuildTools(); err != nil {
		return Built{}, err
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return Built{}, fmt.Errorf("creating kernel cache directory: %w", err)
	}
	unlock, err := image.LockFile(ctx, log, final+".lock")
	if err != nil {
		return Built{}, fmt.Errorf("locking kernel %s build: %w", r.Name, err)
	}
	defer unlock()
	if b, ok := cached(log, r.Name, key, final); ok { // another process built it while we waited
		b.Duration = time.Since(start)
		return b, nil
	}
	tmpPrefix := "." + r.Name + "-" + key + ".tmp-"
	image.RemoveStale(log, parent, tmpPrefix)
	tmp, err := os.MkdirTemp(parent, tmpPrefix)
	if err != nil {
		return Built{}, fmt.Errorf("creating kernel build directory: %w", err)
	}
	published := false
	defer func() {
		if !published {
			if err := os.RemoveAll(tmp); err != nil {
				log.Warn("could not remove failed kernel build directory", "dir", tmp, "err", err)
			}
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return Built{}, fmt.Errorf("chmod kernel build directory: %w", err)
	}

	tree := treeDir(parent, r, version)
	unlockTree, err := image.LockFile(ctx, log, tree+".lock")
	if err != nil {
		return Built{}, fmt.Errorf("locking the shared build tree of kernel %s: %w", r.Name, err)
	}
	defer unlockTree()

	log.Info("building kernel", "recipe", r.Name, "source", r.SourcePackage+" "+version, "key", key[:12], "dir", tmp, "tree", tree)
	counts := filepath.Join(parent, "kbuild-steps-"+r.stepsKey(version)+".txt")
	b := &builder{r: r, tarball: src.Tarball, dir: tmp, tree: tree, reused: treePristine(tree, r.SourcePackage), log: log, st: newStatus(r.Name, start, readSteps(counts))}
	stopTicker := b.st.tick(progress)
	err = b.build(ctx, progress)
	stopTicker()
	if err != nil {
		if !b.salvageTree(ctx) {
			if rmErr := image.RemoveTree(tree); rmErr != nil {
				log.Warn("could not remove the shared build tree of a failed build", "tree", tree, "err", rmErr)
			}
		}
		return Built{}, fmt.Errorf("building kernel %s: %w", r.Name, err)
	}
	if !b.reused { // an incremental build's step count says nothing about a whole compile
		if err := writeSteps(counts, b.st.compiled()); err != nil {
			log.Warn("could not record the number of kbuild steps (later builds show less progress)", "file", counts, "err", err)
		}
	}
	if err := b.restoreTree(ctx); err != nil {
		// The kernel is built; only the next recipe of this source loses its head start.
		log.Warn("the shared build tree stays unmarked; the next build of this source unpacks it afresh", "tree", tree, "err", err)
	}
	inputs := fmt.Sprintf("recipe=%s\nsource-package=%s\nsource-version=%s\nbase-configs=%s\nformat=%s\nkey=%s\n",
		r.Name, r.SourcePackage, version, strings.Join(r.BaseConfigs, " "), FormatVersion, key)
	if err := os.WriteFile(filepath.Join(tmp, InputsFile), []byte(inputs), 0o644); err != nil {
		return Built{}, fmt.Errorf("recording kernel inputs: %w", err)
	}
	if err := image.SyncDir(tmp); err != nil {
		return Built{}, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return Built{}, fmt.Errorf("publishing kernel %s: %w", r.Name, err)
	}
	published = true
	if err := image.SyncDir(parent); err != nil {
		return Built{}, err
	}
	out, ok := cached(log, r.Name, key, final)
	if !ok {
		return Built{}, fmt.Errorf("kernel %s: published %s is incomplete", r.Name, final)
	}
	out.Cached = false
	out.Duration = time.Since(start)
	log.Info("built kernel", "recipe", r.Name, "release", out.Release, "bzImage", out.BzImage, "elapsed", out.Duration.Round(time.Second))
	progress(fmt.Sprintf("kernel %s built: %s in %s", r.Name, out.Release, out.Duration.Round(time.Second)))
	return out, nil
}

// cached returns the kernel in dir if it is complete, and marks it used (image.MarkUsed: the
// last use `nfslab cache` lists).
func cached(log *slog.Logger, name, key, dir string) (Built, bool) {
	rel, err := os.ReadFile(filepath.Join(dir, ReleaseFile))
	if err != nil {
		return Built{}, false
	}
	b := Built{
		Name:    name,
		Release: strings.TrimSpace(string(rel)),
		BzImage: filepath.Join(dir, BzImageFile),
		Config:  filepath.Join(dir, ConfigFile),
		Key:     key,
		Cached:  true,
	}
	for _, p := range []string{b.BzImage, b.Config} {
		if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() || st.Size() == 0 {
			return Built{}, false
		}
	}
	if b.Release == "" {
		return Built{}, false
	}
	image.MarkUsed(log, dir)
	return b, true
}

// builder runs the steps of one kernel build in dir.
type builder struct {
	r       Recipe
	tarball string // the source tarball
	dir     string // the temporary directory that becomes the cache entry
	tree    string // the shared build tree's directory (tree.go)
	reused  bool   // the tree held a pristine earlier build: the compile is incremental
	// patched and readyToBuild say how far the build got: the patch applied, and the tree
	// unpacked and patched, so ready to compile (salvageTree keeps only such a tree).
	patched, readyToBuild bool
	log                   *slog.Logger
	st                    *status
}

func (b *builder) srcTree() string { return filepath.Join(b.tree, "src", b.r.SourcePackage) }

func (b *builder) build(ctx context.Context, progress func(string)) error {
	prepare := "unpacking " + filepath.Base(b.tarball)
	if b.reused {
		prepare = "reusing the build tree of " + b.r.SourcePackage + " (same source and config)"
	}
	steps := []struct {
		name    string
		fn      func(context.Context) error
		compile bool // count kbuild's steps
	}{
		{prepare, b.prepareTree, false},
		{"applying the patch", b.applyPatch, false},
		{"configuring (" + strings.Join(b.r.BaseConfigs, " ") + " + fragment)", b.configure, false},
		{"compiling bzImage", b.compile, true},
		{"collecting bzImage", b.collect, false},
	}
	for i, s := range steps {
		name := s.name
		if s.compile && b.reused {
			name += " (incremental: what the patch and local version touch, then the link)"
			b.st.noTotal() // a whole compile's step count would read as 0%
		}
		b.st.setStage(name, i+1, len(steps), s.compile)
		b.log.Info("kernel build step", "recipe", b.r.Name, "step", name)
		progress(b.st.line())
		if err := s.fn(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) unpack(ctx context.Context) error {
	dest := filepath.Dir(b.srcTree())
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return fmt.Errorf("unpacking the source: %w", err)
	}
	if _, err := b.run(ctx, dest, nil, "tar", "-xJf", b.tarball, "-C", dest); err != nil {
		return fmt.Errorf("unpacking %s: %w", b.tarball, err)
	}
	if st, err := os.Stat(filepath.Join(b.srcTree(), "Makefile")); err != nil || !st.Mode().IsRegular() {
		return fmt.Errorf("unpacking %s: no %s/Makefile in it", b.tarball, b.r.SourcePackage)
	}
	return nil
}

// applyPatch applies the recipe's patch; once it did (or there is none) the tree is ready to
// build, and worth keeping if the build fails later.
func (b *builder) applyPatch(ctx context.Context) error {
	if len(b.r.Patch) == 0 {
		b.readyToBuild = true
		return nil
	}
	p := filepath.Join(b.dir, PatchFile)
	if err := os.WriteFile(p, b.r.Patch, 0o644); err != nil {
		return fmt.Errorf("writing the patch: %w", err)
	}
	out, err := b.run(ctx, b.srcTree(), nil, "patch", "-p1", "--forward", "--batch", "--fuzz=0", "--no-backup-if-mismatch", "-i", p)
	if err != nil {
		return fmt.Errorf("applying %s (patch -p1 --forward): %w", PatchFile, err)
	}
	b.log.Info("patched kernel source", "recipe", b.r.Name, "output", strings.Join(strings.Fields(out), " "))
	b.patched, b.readyToBuild = true, true
	return nil
}

func (b *builder) configure(ctx context.Context) error {
	src := b.srcTree()
	for _, target := range b.r.BaseConfigs {
		if _, err := b.make(ctx, nil, target); err != nil {
			return fmt.Errorf("make %s: %w", target, err)
		}
	}
	frag := filepath.Join(b.dir, FragmentFile)
	if err := os.WriteFile(frag, b.r.ConfigFragment, 0o644); err != nil {
		return fmt.Errorf("writing the config fragment: %w", err)
	}
	if _, err := b.run(ctx, src, nil, "sh", "scripts/kconfig/merge_config.sh", "-m", ".config", frag); err != nil {
		return fmt.Errorf("merging the config fragment: %w", err)
	}
	if _, err := b.make(ctx, nil, "olddefconfig"); err != nil {
		return fmt.Errorf("make olddefconfig: %w", err)
	}
	return b.verifyConfig()
}

// verifyConfig checks that every option of the fragment is in the final .config with the
// value asked for and that nothing is a module.
func (b *builder) verifyConfig() error {
	want, err := ParseConfig(b.r.ConfigFragment)
	if err != nil {
		return fmt.Errorf("config fragment: %w", err)
	}
	raw, err := os.ReadFile(filepath.Join(b.srcTree(), ".config"))
	if err != nil {
		return fmt.Errorf("reading the final .config: %w", err)
	}
	final, err := ParseConfig(raw)
	if err != nil {
		return fmt.Errorf("parsing the final .config: %w", err)
	}
	mismatches, modules := Verify(want, final)
	if len(mismatches) > 0 || len(modules) > 0 {
		return &ConfigError{Recipe: b.r.Name, Mismatches: mismatches, Modules: modules}
	}
	b.log.Info("kernel config verified", "recipe", b.r.Name, "fragment-options", len(want), "config-options", len(final))
	return nil
}

func (b *builder) compile(ctx context.Context) error {
	jobs := "-j" + strconv.Itoa(runtime.NumCPU())
	if _, err := b.make(ctx, b.st.makeLine, jobs, "bzImage"); err != nil {
		return fmt.Errorf("make %s bzImage: %w", jobs, err)
	}
	return nil
}

func (b *builder) collect(ctx context.Context) error {
	src := b.srcTree()
	for _, c := range []struct{ from, to string }{
		{filepath.Join(src, "arch", "x86", "boot", "bzImage"), BzImageFile},
		{filepath.Join(src, ".config"), ConfigFile},
	} {
		if err := image.CopyFile(c.from, filepath.Join(b.dir, c.to)); err != nil {
			return fmt.Errorf("copying %s: %w", filepath.Base(c.from), err)
		}
	}
	rel, err := b.output(ctx, "make", "-s", "kernelrelease")
	if err != nil {
		return fmt.Errorf("make kernelrelease: %w", err)
	}
	rel = strings.TrimSpace(rel)
	if rel == "" || strings.ContainsAny(rel, " \n") {
		return fmt.Errorf("make kernelrelease printed %q", rel)
	}
	if err := os.WriteFile(filepath.Join(b.dir, ReleaseFile), []byte(rel+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing the kernel release: %w", err)
	}
	return nil
}

// make runs a nice'd make in the source tree.
func (b *builder) make(ctx context.Context, onLine func(string), args ...string) (string, error) {
	return b.run(ctx, b.srcTree(), onLine, "nice", append([]string{"-n", niceness, "make"}, args...)...)
}

// makeEnv is the environment of make and the other build commands: the caller's, without
// variables that would change what kbuild does (an inherited jobserver, an output directory, a
// cross compiler), plus a fixed locale and build user/host.
func makeEnv() []string {
	drop := map[string]bool{
		"ARCH": true, "SUBARCH": true, "CROSS_COMPILE": true, "O": true, "KBUILD_OUTPUT": true,
		"KCONFIG_CONFIG": true, "LOCALVERSION": true, "MAKEFLAGS": true, "MFLAGS": true,
		"MAKELEVEL": true, "MAKEFILES": true, "CC": true, "LD": true, "LLVM": true,
		"KBUILD_BUILD_USER": true, "KBUILD_BUILD_HOST": true, "LC_ALL": true, "LANG": true,
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !drop[k] {
			env = append(env, kv)
		}
	}
	return append(env, "ARCH=x86_64", "LC_ALL=C", "KBUILD_BUILD_USER=nfslab", "KBUILD_BUILD_HOST=nfslab")
}

// run runs a command in dir, in its own process group (killed as a whole when ctx ends), with
// stdout and stderr merged. onLine, if set, sees every output line. On failure the error
// carries the last lines of output.
func (b *builder) run(ctx context.Context, dir string, onLine func(string), name string, args ...string) (string, error) {
	w := &lines.Writer{OnLine: onLine, Keep: 40}
	cmd := command(ctx, dir, name, args...)
	cmd.Stdout = w
	cmd.Stderr = w
	b.log.Debug("running", "cmd", name+" "+strings.Join(args, " "), "dir", dir)
	err := cmd.Run()
	w.Flush()
	if err != nil {
		if ctx.Err() != nil {
			return w.Tail(), ctx.Err()
		}
		return w.Tail(), fmt.Errorf("%s: %w; last output:\n%s", name, err, w.Tail())
	}
	return w.Tail(), nil
}

// output runs a command in the source tree and returns its stdout.
func (b *builder) output(ctx context.Context, name string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := command(ctx, b.srcTree(), name, args...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("%w: %s", err, lines.Tail(stderr.String(), 10))
	}
	return stdout.String(), nil
}

func command(ctx context.Context, dir, name string, args ...string) *exec.Cmd {
	// On cancellation the whole group: make, its sub-makes and the compilers.
	cmd := procgroup.Command(ctx, syscall.SIGKILL, 10*time.Second, name, args...)
	cmd.Dir = dir
	cmd.Env = makeEnv()
	return cmd
}
