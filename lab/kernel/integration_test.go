package kernel

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab/image"
	"github.com/nfslab/nfslab/lab/kernel/debian"
)

func imageCacheForTest(t *testing.T) image.Cache { return image.Cache{Dir: t.TempDir()} }

// integrationCache is the user's nfslab cache (NFSLAB_CACHE, ...), so that repeated runs are
// warm; the integration test is skipped under -short or without the host tools.
func integrationCache(t *testing.T) image.Cache {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a Debian rootfs and downloads a kernel: skipped with -short")
	}
	if err := image.CheckHostTools(); err != nil {
		t.Skip(err)
	}
	dir, err := image.DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	return image.Cache{Dir: dir}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// archiveIndex maps each entry of a cpio file to its header and, for small regular files, its
// content.
func archiveIndex(t *testing.T, file string) (map[string]image.CpioHeader, map[string]string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	hdrs := map[string]image.CpioHeader{}
	small := map[string]string{}
	err = image.WalkCpio(f, func(h *image.CpioHeader, data io.Reader) error {
		hdrs[h.Name] = *h
		if h.Mode&image.ModeTypeMask == image.ModeRegular && h.Size < 64<<10 {
			b, err := io.ReadAll(data)
			if err != nil {
				return err
			}
			small[h.Name] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("reading %s: %v", file, err)
	}
	return hdrs, small
}

func TestIntegrationRootfs(t *testing.T) {
	cache := integrationCache(t)
	start := time.Now()
	rootfs, err := cache.Rootfs(t.Context(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(rootfs)
	t.Logf("rootfs %s: %.1f MB, ready in %s", rootfs, float64(st.Size())/(1<<20), time.Since(start).Round(time.Millisecond))

	hdrs, small := archiveIndex(t, rootfs)
	regular := []string{
		"usr/bin/ganesha.nfsd", "usr/sbin/rpcbind",
		"usr/sbin/mount.nfs", "usr/bin/kmod", "usr/bin/ip", "usr/sbin/xtables-nft-multi",
		"usr/sbin/xtables-legacy-multi", "usr/sbin/nft", "usr/bin/ss",
	}
	for _, p := range regular {
		if h, ok := hdrs[p]; !ok || h.Mode&image.ModeTypeMask != image.ModeRegular || h.Mode&0o111 == 0 {
			t.Errorf("%s: want an executable file, got %+v (present %v)", p, h, ok)
		}
	}
	links := map[string]string{
		"etc/mtab": "/proc/self/mounts", "bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib",
		"usr/sbin/modprobe": "/bin/kmod", "var/run": "/run",
	}
	for p, target := range links {
		if h := hdrs[p]; h.Mode&image.ModeTypeMask != image.ModeSymlink || h.Linkname != target {
			t.Errorf("%s: want a symlink to %s, got %+v", p, target, h)
		}
	}
	for _, p := range []string{"usr/sbin/iptables", "usr/sbin/iptables-legacy", "usr/sbin/iptables-nft", "usr/lib/x86_64-linux-gnu/ganesha/libfsalvfs.so"} {
		if _, ok := hdrs[p]; !ok {
			t.Errorf("%s missing", p)
		}
	}
	for _, p := range []string{"run/ganesha", "var/lib/nfs/ganesha", "tmp", "dev"} {
		if h := hdrs[p]; h.Mode&image.ModeTypeMask != image.ModeDir {
			t.Errorf("%s: want a directory, got %+v", p, h)
		}
	}
	if !strings.Contains(small["etc/hosts"], "127.0.0.1\tlocalhost nfslab-node") {
		t.Errorf("/etc/hosts = %q", small["etc/hosts"])
	}
	if !strings.Contains(small["etc/idmapd.conf"], "[General]\nDomain = nfslab.local") {
		t.Errorf("/etc/idmapd.conf = %q", small["etc/idmapd.conf"])
	}
	for name := range hdrs {
		for _, bad := range []string{"usr/share/doc/", "usr/share/man/", "usr/share/locale/", "usr/lib/python3", "var/lib/apt/lists/"} {
			if strings.HasPrefix(name+"/", bad) && name+"/" != bad {
				t.Errorf("%s should have been trimmed", name)
			}
		}
	}
}

func TestIntegrationStockKernelModules(t *testing.T) {
	cache := integrationCache(t)
	log := testLogger(t)
	r := Resolver{Cache: cache}
	start := time.Now()
	k, err := r.DebianStock(t.Context(), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stock kernel %+v in %s", k, time.Since(start).Round(time.Millisecond))
	for _, p := range []string{k.Vmlinuz, k.Config, filepath.Join(k.ModulesDir, "modules.dep")} {
		if _, err := os.Stat(p); err != nil {
			t.Error(err)
		}
	}
	start = time.Now()
	again, err := Resolve(t.Context(), cache, StockName, log, nil)
	if err != nil || again != k {
		t.Errorf("second resolve: %+v, %v; want %+v", again, err, k)
	}
	t.Logf("cached resolve in %s", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	archive, err := r.ModulesArchive(t.Context(), log, k, LabModules())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("modules archive %s in %s", archive, time.Since(start).Round(time.Millisecond))
	hdrs, _ := archiveIndex(t, archive)
	base := "usr/lib/modules/" + k.Release
	for _, p := range []string{base + "/modules.dep", base + "/modules.dep.bin", base + "/modules.alias.bin", base + "/modules.builtin.bin"} {
		if _, ok := hdrs[p]; !ok {
			t.Errorf("%s missing", p)
		}
	}
	found := map[string]bool{}
	for name, h := range hdrs {
		if strings.HasPrefix(name, "lib/") || name == "lib" {
			t.Errorf("%s: a top-level lib/ would replace the rootfs's /lib symlink", name)
		}
		if h.UID != 0 || h.GID != 0 {
			t.Errorf("%s owned by %d:%d", name, h.UID, h.GID)
		}
		if strings.Contains(name, ".ko") {
			found[ModuleName(path.Base(name))] = true
		}
	}
	idx, err := ReadModuleIndex(k.ModulesDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range LabModules() {
		if n := ModuleName(m); !found[n] && !idx.Builtin[n] {
			t.Errorf("module %s neither archived nor built in", m)
		}
	}
	if _, err := r.ModulesArchive(t.Context(), log, k, []string{"nfsv4", "no_such_module"}); err == nil || !strings.Contains(err.Error(), "no_such_module") {
		t.Errorf("missing module: err = %v", err)
	}
}

// TestIntegrationAptMissingLists checks the advice given when apt knows no packages.
func TestIntegrationAptMissingLists(t *testing.T) {
	if _, err := exec.LookPath("apt-cache"); err != nil {
		t.Skip("no apt-cache")
	}
	empty := t.TempDir()
	os.MkdirAll(filepath.Join(empty, "lists", "partial"), 0o755)
	conf := filepath.Join(t.TempDir(), "apt.conf")
	os.WriteFile(conf, []byte("Dir::State::Lists \""+filepath.Join(empty, "lists")+"\";\nDir::Cache \""+empty+"\";\n"), 0o644)
	t.Setenv("APT_CONFIG", conf)
	apt, err := debian.Open(t.Context(), testLogger(t), debian.Archive{}, "")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = resolveStock(t.Context(), apt, "linux-image-amd64")
	if err == nil || !strings.Contains(err.Error(), "apt-get update") {
		t.Errorf("err = %v, want advice to run apt-get update", err)
	}
}

// bootInit is a tiny static init for TestIntegrationBoot: it loads the modules given on its
// command line and checks the programs the agent relies on, then powers the VM off.
const bootInit = `package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

func main() {
	syscall.Mount("proc", "/proc", "proc", 0, "")
	syscall.Mount("sysfs", "/sys", "sysfs", 0, "")
	syscall.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	os.Setenv("PATH", "/usr/sbin:/usr/bin")
	up, _ := os.ReadFile("/proc/uptime")
	fmt.Printf("NFSLAB-INIT uptime=%s\n", strings.Fields(string(up))[0])
	cmdline, _ := os.ReadFile("/proc/cmdline")
	for _, f := range strings.Fields(string(cmdline)) {
		if mods, ok := strings.CutPrefix(f, "nfslab.modules="); ok {
			for _, m := range strings.Split(mods, ",") {
				if out, err := exec.Command("modprobe", m).CombinedOutput(); err != nil {
					fmt.Printf("NFSLAB-MODPROBE-FAILED %s: %v %s\n", m, err, out)
				}
			}
		}
	}
	for _, c := range [][]string{{"ganesha.nfsd", "-v"}, {"readlink", "/etc/mtab"}, {"iptables", "-t", "nat", "-L"}, {"ip", "link"}, {"sh", "-c", "command -v rpcbind modprobe iptables-legacy iptables-nft mount.nfs"}} {
		out, err := exec.Command(c[0], c[1:]...).CombinedOutput()
		fmt.Printf("NFSLAB-RUN %s err=%v\n%s\n", c[0], err, out)
	}
	fmt.Println("NFSLAB-DONE")
	os.WriteFile("/proc/sysrq-trigger", []byte("o"), 0)
	time.Sleep(10 * time.Second)
}
`

// TestIntegrationBoot boots the stock kernel with rootfs + modules + a tiny init under qemu
// (TCG). It takes ~15 s, so it also needs NFSLAB_TEST_BOOT=1.
func TestIntegrationBoot(t *testing.T) {
	cache := integrationCache(t)
	if os.Getenv("NFSLAB_TEST_BOOT") != "1" {
		t.Skip("set NFSLAB_TEST_BOOT=1 to boot a VM")
	}
	log := testLogger(t)
	rootfs, err := cache.Rootfs(t.Context(), log)
	if err != nil {
		t.Fatal(err)
	}
	r := Resolver{Cache: cache}
	k, err := r.DebianStock(t.Context(), log)
	if err != nil {
		t.Fatal(err)
	}
	mods, err := r.ModulesArchive(t.Context(), log, k, LabModules())
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "main.go"), []byte(bootInit), 0o644)
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module bootinit\n\ngo 1.22\n"), 0o644)
	build := exec.CommandContext(t.Context(), "go", "build", "-o", "init", ".")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the test init: %v\n%s", err, out)
	}
	agent := filepath.Join(src, "agent.cpio")
	if err := image.AgentArchive(agent, filepath.Join(src, "init"), ""); err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(src, "initrd")
	if err := image.Assemble(initrd, rootfs, mods, agent); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	start := time.Now()
	qemu := exec.CommandContext(ctx, "qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "max",
		"-smp", "2", "-m", "2048", "-nographic", "-no-reboot", "-nic", "none",
		"-kernel", k.Vmlinuz, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 rdinit=/init quiet nfslab.modules="+strings.Join(LabModules(), ","))
	out, err := qemu.CombinedOutput()
	console := string(out)
	t.Logf("qemu ran %s", time.Since(start).Round(100*time.Millisecond))
	if err != nil {
		t.Fatalf("qemu: %v\n%s", err, console)
	}
	for _, want := range []string{"NFSLAB-INIT", "NFS-Ganesha Release = V4", "/proc/self/mounts", "Chain POSTROUTING", "NFSLAB-DONE"} {
		if !strings.Contains(console, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	for _, l := range strings.Split(console, "\n") {
		if strings.Contains(l, "NFSLAB-MODPROBE-FAILED") || strings.Contains(l, "NFSLAB-INIT") || strings.Contains(l, " err=exit") {
			t.Log(strings.TrimSpace(l))
		}
		if strings.Contains(l, "NFSLAB-MODPROBE-FAILED") {
			t.Fail()
		}
	}
}
