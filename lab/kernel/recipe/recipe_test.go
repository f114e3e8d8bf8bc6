package recipe

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/nfslab/nfslab/lab/hosttools"
	"github.com/nfslab/nfslab/lab/kernel/debian"
)

func TestNames(t *testing.T) {
	got := Names()
	if !slices.Contains(got, "vulnerable-6.1") {
		t.Fatalf("Names() = %v, want it to contain vulnerable-6.1", got)
	}
	if !slices.IsSorted(got) {
		t.Errorf("Names() = %v, not sorted", got)
	}
}

// TestLookupShipped checks every recipe nfslab ships: its source, what its patch changes (the
// calls each recipe is about, as they must read after the patch) and that its config has
// what the lab needs.
func TestLookupShipped(t *testing.T) {
	socket61 := []string{
		"+\treturn sock->ops->connect(sock, addr, addrlen, flags);",
		"+\treturn sock->ops->bind(sock, addr, addrlen);",
		"+\treturn __sock_sendmsg(sock, msg);",
		"-\tmemcpy(&address, addr, addrlen);",
		"-\tmsg->msg_name = save_addr;",
	}
	socket612 := []string{
		"+\treturn READ_ONCE(sock->ops)->connect(sock, addr, addrlen, flags);",
		"+\treturn READ_ONCE(sock->ops)->bind(sock, addr, addrlen);",
		"+\treturn __sock_sendmsg(sock, msg);",
		"-\tmemcpy(&address, addr, addrlen);",
		"-\tmsg->msg_name = save_addr;",
	}
	smb := []string{
		"-\trc = kernel_connect(socket, saddr, slen,",
		"+\trc = socket->ops->connect(socket, saddr, slen,",
		"-\t\trc = kernel_bind(socket,",
		"+\t\trc = socket->ops->bind(socket,",
	}
	namelen := []string{
		"-\tint save_len = msg->msg_namelen;",
		"-\tmsg->msg_namelen = save_len;",
		" \tmsg->msg_name = save_addr;", // the address copy stays
	}
	tests := []struct {
		name, source, archive, localVersion string
		patched                             []string
		patchLines                          []string
	}{
		{"vulnerable-6.1", "linux-source-6.1", "", "-nfslab-vulnerable", []string{"net/socket.c"}, socket61},
		{"control-6.1", "linux-source-6.1", "", "-nfslab-control", nil, nil},
		{"partial-6.1", "linux-source-6.1", "", "-nfslab-partial", []string{"fs/smb/client/connect.c"}, smb},
		{"namelen-6.1", "linux-source-6.1", "", "-nfslab-namelen", []string{"net/socket.c"}, namelen},
		{"vulnerable-6.12", "linux-source-6.12", "", "-nfslab-vulnerable", []string{"net/socket.c"}, socket612},
		{"control-6.12", "linux-source-6.12", "", "-nfslab-control", nil, nil},
		{"vulnerable-5.10", "linux-source-5.10", "bullseye", "-nfslab-vulnerable", []string{"net/socket.c"}, socket61},
		{"control-5.10", "linux-source-5.10", "bullseye", "-nfslab-control", nil, nil},
	}
	var names []string
	for _, tt := range tests {
		names = append(names, tt.name)
	}
	for _, n := range Names() {
		if !slices.Contains(names, n) {
			t.Errorf("shipped recipe %s is not checked here", n)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Lookup(tt.name)
			if err != nil {
				t.Fatal(err)
			}
			if r.Name != tt.name || r.SourcePackage != tt.source || r.Archive != tt.archive || r.Description == "" {
				t.Errorf("Lookup = %+v", r)
			}
			if want := []string{"x86_64_defconfig", "kvm_guest.config"}; !slices.Equal(r.BaseConfigs, want) {
				t.Errorf("BaseConfigs = %v, want %v", r.BaseConfigs, want)
			}
			if got := patchedFiles(r.Patch); !slices.Equal(got, tt.patched) {
				t.Errorf("patch touches %v, want %v", got, tt.patched)
			}
			for _, want := range tt.patchLines {
				if !strings.Contains(string(r.Patch), want) {
					t.Errorf("patch lacks the line %q", want)
				}
			}
			checkLabConfig(t, r.ConfigFragment, tt.localVersion)
		})
	}
}

// checkLabConfig checks that a recipe's fragment asks for what the lab needs.
func checkLabConfig(t *testing.T, fragment []byte, localVersion string) {
	t.Helper()
	opts, err := ParseConfig(fragment)
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]string{}
	for _, o := range opts {
		set[o.Name] = o.Value
	}
	for _, name := range []string{
		"NFS_FS", "NFS_V4_1", "SUNRPC", "CIFS", "BPF_SYSCALL", "CGROUP_BPF", "NET_NS", "VETH", "BRIDGE",
		"IP_NF_NAT", "NFT_COMPAT", "IP_VS_RR", "9P_FS", "KPROBES", "KPROBE_EVENTS", "BPF_EVENTS",
		"FTRACE_SYSCALLS", "BLK_DEV_INITRD", "DEVTMPFS", "TMPFS", "BPF_JIT",
	} {
		if set["CONFIG_"+name] != "y" {
			t.Errorf("fragment: CONFIG_%s = %q, want y", name, set["CONFIG_"+name])
		}
	}
	for _, name := range []string{"SOUND", "DRM", "WLAN", "USB_SUPPORT", "SCSI", "ATA"} {
		if v, ok := set["CONFIG_"+name]; !ok || v != "n" {
			t.Errorf("fragment: CONFIG_%s = %q, want it not set", name, v)
		}
	}
	if got, want := set["CONFIG_LOCALVERSION"], `"`+localVersion+`"`; got != want {
		t.Errorf("fragment: CONFIG_LOCALVERSION = %s, want %s", got, want)
	}
}

func TestLookup(t *testing.T) {
	meta := `{"description":"d","source_package":"linux-source-6.1","base_configs":["x86_64_defconfig"],"patch":"p.patch","config":["c.config"]}`
	patch := "hdr\n--- a/net/socket.c\n+++ b/net/socket.c\n@@ -1 +1 @@\n-a\n+b\n"
	good := func() fstest.MapFS {
		return fstest.MapFS{
			"k1/recipe.json":  {Data: []byte(meta)},
			"k1/p.patch":      {Data: []byte(patch)},
			"k1/c.config":     {Data: []byte("CONFIG_A=y\n# CONFIG_B is not set\n")},
			"other/README.md": {Data: []byte("not a recipe")},
		}
	}
	tests := []struct {
		name    string
		edit    func(fstest.MapFS)
		lookup  string
		wantErr string
	}{
		{name: "ok", lookup: "k1"},
		{name: "unknown lists known", lookup: "nope", wantErr: `unknown kernel recipe "nope"; known recipes: k1`},
		{name: "dir without recipe.json is not a recipe", lookup: "other", wantErr: "known recipes: k1"},
		{name: "bad json", lookup: "k1", wantErr: "parsing k1/recipe.json",
			edit: func(m fstest.MapFS) { m["k1/recipe.json"] = &fstest.MapFile{Data: []byte("{")} }},
		{name: "unknown field", lookup: "k1", wantErr: "unknown field",
			edit: func(m fstest.MapFS) {
				m["k1/recipe.json"] = &fstest.MapFile{Data: []byte(strings.Replace(meta, `"d"`, `"d","extra":1`, 1))}
			}},
		{name: "missing patch", lookup: "k1", wantErr: "reading kernel recipe k1",
			edit: func(m fstest.MapFS) { delete(m, "k1/p.patch") }},
		{name: "patch path escapes", lookup: "k1", wantErr: "bad file name",
			edit: func(m fstest.MapFS) {
				m["k1/recipe.json"] = &fstest.MapFile{Data: []byte(strings.Replace(meta, `"p.patch"`, `"../x"`, 1))}
			}},
		{name: "patch is no diff", lookup: "k1", wantErr: "patch touches no file",
			edit: func(m fstest.MapFS) { m["k1/p.patch"] = &fstest.MapFile{Data: []byte("hello\n")} }},
		{name: "bad fragment", lookup: "k1", wantErr: "config fragment: line 2",
			edit: func(m fstest.MapFS) { m["k1/c.config"] = &fstest.MapFile{Data: []byte("CONFIG_A=y\nA=y\n")} }},
		{name: "empty fragment", lookup: "k1", wantErr: "sets no option",
			edit: func(m fstest.MapFS) { m["k1/c.config"] = &fstest.MapFile{Data: []byte("# nothing\n")} }},
		{name: "bad package name", lookup: "k1", wantErr: "bad source package name",
			edit: func(m fstest.MapFS) {
				m["k1/recipe.json"] = &fstest.MapFile{Data: []byte(strings.Replace(meta, `linux-source-6.1`, `-x`, 1))}
			}},
		{name: "no config", lookup: "k1", wantErr: "names no config fragment",
			edit: func(m fstest.MapFS) {
				m["k1/recipe.json"] = &fstest.MapFile{Data: []byte(strings.Replace(meta, `["c.config"]`, `[]`, 1))}
			}},
		{name: "config not a list", lookup: "k1", wantErr: "parsing k1/recipe.json",
			edit: func(m fstest.MapFS) {
				m["k1/recipe.json"] = &fstest.MapFile{Data: []byte(strings.Replace(meta, `["c.config"]`, `"c.config"`, 1))}
			}},
		{name: "option set in two fragments", lookup: "k1", wantErr: "CONFIG_A already set on line 1",
			edit: func(m fstest.MapFS) {
				m["k1/recipe.json"] = &fstest.MapFile{Data: []byte(strings.Replace(meta, `["c.config"]`, `["c.config","common/x.config"]`, 1))}
				m["common/x.config"] = &fstest.MapFile{Data: []byte("CONFIG_A=n")}
			}},
		{name: "unknown archive", lookup: "k1", wantErr: `unknown Debian archive "potato"`,
			edit: func(m fstest.MapFS) {
				m["k1/recipe.json"] = &fstest.MapFile{Data: []byte(strings.Replace(meta, `"d"`, `"d","archive":"potato"`, 1))}
			}},
		{name: "no base configs", lookup: "k1", wantErr: "no base configs",
			edit: func(m fstest.MapFS) {
				m["k1/recipe.json"] = &fstest.MapFile{Data: []byte(strings.Replace(meta, `"x86_64_defconfig"`, ``, 1))}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := good()
			if tt.edit != nil {
				tt.edit(fsys)
			}
			r, err := lookup(fsys, tt.lookup)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("lookup(%q) error = %v, want it to contain %q", tt.lookup, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Name != "k1" || r.Description != "d" || string(r.Patch) != patch || len(r.ConfigFragment) == 0 {
				t.Errorf("lookup = %+v", r)
			}
		})
	}
}

// TestLookupControl covers a control recipe: no patch, another recipe's config and a shared
// one, its own LOCALVERSION.
func TestLookupControl(t *testing.T) {
	fsys := fstest.MapFS{
		"k1/recipe.json":     {Data: []byte(`{"description":"d","source_package":"linux-source-6.1","base_configs":["x86_64_defconfig"],"patch":"p.patch","config":["c.config"]}`)},
		"k1/p.patch":         {Data: []byte("--- a/net/socket.c\n+++ b/net/socket.c\n@@ -1 +1 @@\n-a\n+b\n")},
		"k1/c.config":        {Data: []byte("CONFIG_A=y\nCONFIG_LOCALVERSION=\"-k1\"\n")},
		"ctl/recipe.json":    {Data: []byte(`{"description":"c","source_package":"linux-source-6.1","base_configs":["x86_64_defconfig"],"config":["k1/c.config","common/line.config"],"localversion":"-ctl"}`)},
		"bad/recipe.json":    {Data: []byte(`{"description":"b","source_package":"linux-source-6.1","base_configs":["x86_64_defconfig"],"config":["../k1/c.config"]}`)},
		"common/line.config": {Data: []byte("CONFIG_L=y")},
	}
	r, err := lookup(fsys, "ctl")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Patch) != 0 {
		t.Errorf("control recipe has a patch: %q", r.Patch)
	}
	if got, want := string(r.ConfigFragment), "CONFIG_A=y\nCONFIG_LOCALVERSION=\"-ctl\"\nCONFIG_L=y\n"; got != want {
		t.Errorf("fragment %q, want %q", got, want)
	}
	k1, err := lookup(fsys, "k1")
	if err != nil {
		t.Fatal(err)
	}
	if r.Key("v") == k1.Key("v") {
		t.Error("control and patched recipe share a cache key")
	}
	if _, err := lookup(fsys, "bad"); err == nil || !strings.Contains(err.Error(), "bad file name") {
		t.Errorf("lookup(bad) = %v, want a bad file name error", err)
	}
	for _, tt := range []struct{ in, v, want string }{
		{"CONFIG_A=y\n", "-x", "CONFIG_A=y\n\nCONFIG_LOCALVERSION=\"-x\"\n"},
		{"# CONFIG_LOCALVERSION is not set\n", "-x", "CONFIG_LOCALVERSION=\"-x\"\n"},
	} {
		if got := string(setLocalVersion([]byte(tt.in), tt.v)); got != tt.want {
			t.Errorf("setLocalVersion(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestKey(t *testing.T) {
	base := Recipe{
		Name:           "r",
		SourcePackage:  "linux-source-6.1",
		Description:    "first",
		BaseConfigs:    []string{"x86_64_defconfig", "kvm_guest.config"},
		Patch:          []byte("--- a/f\n+++ b/f\n"),
		ConfigFragment: []byte("CONFIG_A=y\n"),
	}
	const version = "6.1.192-2"
	// The key of base must never change unless FormatVersion does: a change here rebuilds
	// every cached kernel.
	const golden = "afe40b89314a97bf03de3ee772717caf57a2f90e3404a4ae12793bf83ba39f35"
	if got := base.Key(version); got != golden {
		t.Fatalf("Key = %s, want %s (bump FormatVersion and update the golden key if intended)", got, golden)
	}
	tests := []struct {
		name    string
		edit    func(*Recipe)
		version string
		same    bool
	}{
		{name: "identical", edit: func(*Recipe) {}, version: version, same: true},
		{name: "description is cosmetic", edit: func(r *Recipe) { r.Description = "second" }, version: version, same: true},
		{name: "source version", edit: func(*Recipe) {}, version: "6.1.193-1"},
		{name: "patch", edit: func(r *Recipe) { r.Patch = append([]byte(nil), "--- a/g\n+++ b/g\n"...) }, version: version},
		{name: "config", edit: func(r *Recipe) { r.ConfigFragment = []byte("CONFIG_A=n\n") }, version: version},
		{name: "name", edit: func(r *Recipe) { r.Name = "s" }, version: version},
		{name: "source package", edit: func(r *Recipe) { r.SourcePackage = "linux-source-6.12" }, version: version},
		{name: "base configs", edit: func(r *Recipe) { r.BaseConfigs = []string{"x86_64_defconfig"} }, version: version},
		{name: "fields do not run together", version: version,
			edit: func(r *Recipe) {
				r.Patch = []byte("--- a/f\n+++ b/f\nCONFIG_A=y\n")
				r.ConfigFragment = nil
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base
			tt.edit(&r)
			got := r.Key(tt.version)
			if len(got) != 64 {
				t.Fatalf("Key = %q, want 64 hex digits", got)
			}
			if (got == golden) != tt.same {
				t.Errorf("Key = %s, golden %s, want same=%v", got, golden, tt.same)
			}
			if again := r.Key(tt.version); again != got {
				t.Errorf("Key not stable: %s then %s", got, again)
			}
		})
	}
}

func TestCheckTools(t *testing.T) {
	tools := buildTools()
	tools.Tools = []hosttools.Tool{
		{Command: "gcc", Package: "build-essential"},
		{Command: "make", Package: "build-essential"},
		{Command: "bc", Package: "bc"},
		{File: "/usr/include/gelf.h", Package: "libelf-dev"},
	}
	tests := []struct {
		name        string
		missingCmds []string
		missingHdrs []string
		wantMissing []string
		wantInstall string
	}{
		{name: "all there"},
		{name: "one command", missingCmds: []string{"bc"}, wantMissing: []string{"bc"}, wantInstall: "apt-get install -y bc"},
		{name: "package deduplicated", missingCmds: []string{"gcc", "make"}, wantMissing: []string{"gcc", "make"},
			wantInstall: "apt-get install -y build-essential"},
		{name: "header", missingCmds: []string{"make"}, missingHdrs: []string{"/usr/include/gelf.h"},
			wantMissing: []string{"make", "/usr/include/gelf.h"}, wantInstall: "apt-get install -y build-essential libelf-dev"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			look := func(c string) error {
				if slices.Contains(tt.missingCmds, c) {
					return exec.ErrNotFound
				}
				return nil
			}
			exists := func(p string) bool { return !slices.Contains(tt.missingHdrs, p) }
			err := tools.CheckWith(look, exists)
			if tt.wantMissing == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var me *hosttools.MissingError
			if !errors.As(err, &me) {
				t.Fatalf("err = %v, want *hosttools.MissingError", err)
			}
			if !slices.Equal(me.Missing, tt.wantMissing) || me.InstallCommand() != tt.wantInstall {
				t.Errorf("missing %v install %q, want %v %q", me.Missing, me.InstallCommand(), tt.wantMissing, tt.wantInstall)
			}
			if !strings.Contains(me.Error(), tt.wantInstall) || !strings.HasPrefix(me.Error(), "missing host tools for building a kernel: ") {
				t.Errorf("Error() = %q lacks the purpose or the install line", me.Error())
			}
		})
	}
}

func TestKbuildStep(t *testing.T) {
	tests := []struct {
		line, tag, target string
		ok                bool
	}{
		{"  CC      net/socket.o", "CC", "net/socket.o", true},
		{"  HOSTCC  scripts/basic/fixdep", "HOSTCC", "scripts/basic/fixdep", true},
		{"  LD      vmlinux.o", "LD", "vmlinux.o", true},
		{"  CC [M]  fs/nfs/inode.o", "CC", "fs/nfs/inode.o", true},
		{"Kernel: arch/x86/boot/bzImage is ready  (#1)", "", "", false},
		{"net/socket.c:12:1: error: expected ';'", "", "", false},
		{"   indented text", "", "", false},
		{"  lower case", "", "", false},
		{"  CC", "", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		tag, target, ok := kbuildStep(tt.line)
		if tag != tt.tag || target != tt.target || ok != tt.ok {
			t.Errorf("kbuildStep(%q) = %q, %q, %v; want %q, %q, %v", tt.line, tag, target, ok, tt.tag, tt.target, tt.ok)
		}
	}
}

// TestPatchAppliesToSource extracts the files the shipped patch touches from the real source
// tarball and dry-runs the patch on them.
func TestPatchAppliesToSource(t *testing.T) {
	// Unpacking from a source tarball costs ~30 s of xz, so each tarball is unpacked once,
	// with the files every recipe of it patches.
	patched := map[string][]string{}
	for _, name := range Names() {
		if r, err := Lookup(name); err == nil {
			patched[r.Tarball()] = append(patched[r.Tarball()], patchedFiles(r.Patch)...)
		}
	}
	unpacked := map[string]string{} // tarball → where it was unpacked, for the rest of the test
	root := t.TempDir()
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			r, err := Lookup(name)
			if err != nil {
				t.Fatal(err)
			}
			if r.Archive != "" {
				t.Skipf("the source comes from Debian %s, downloaded by a build (findSource)", r.Archive)
			}
			if _, err := os.Stat(r.Tarball()); err != nil {
				t.Skipf("%s not installed (apt-get install %s)", r.Tarball(), r.SourcePackage)
			}
			if testing.Short() {
				t.Skip("unpacking from the source tarball takes ~10 s")
			}
			for _, c := range []string{"tar", "patch"} {
				if _, err := exec.LookPath(c); err != nil {
					t.Skipf("%s not installed", c)
				}
			}
			if len(r.Patch) == 0 {
				t.Skip("a control kernel: no patch")
			}
			dir, ok := unpacked[r.Tarball()]
			if !ok {
				dir = filepath.Join(root, r.SourcePackage)
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				args := []string{"-xJf", r.Tarball(), "-C", dir}
				for _, f := range slices.Compact(slices.Sorted(slices.Values(patched[r.Tarball()]))) {
					args = append(args, r.SourcePackage+"/"+f)
				}
				if out, err := exec.CommandContext(t.Context(), "tar", args...).CombinedOutput(); err != nil {
					t.Fatalf("tar %v: %v\n%s", args, err, out)
				}
				unpacked[r.Tarball()] = dir
			}
			p := filepath.Join(t.TempDir(), "recipe.patch")
			if err := os.WriteFile(p, r.Patch, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(t.Context(), "patch", "--dry-run", "-p1", "--forward", "--batch", "--fuzz=0", "-i", p)
			cmd.Dir = filepath.Join(dir, r.SourcePackage)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("patch --dry-run: %v\n%s", err, out)
			}
			if strings.Contains(string(out), "offset") || strings.Contains(string(out), "fuzz") {
				t.Errorf("patch applies only with an offset or fuzz:\n%s", out)
			}
		})
	}
}

// TestBuildCached checks that Build returns an already built kernel without building, using
// the installed source package's real version.
func TestBuildCached(t *testing.T) {
	r, err := Lookup("vulnerable-6.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.Tarball()); err != nil {
		t.Skipf("%s not installed", r.Tarball())
	}
	_, version, err := debian.HostSource(t.Context(), slog.New(slog.DiscardHandler), r.SourcePackage, "TestBuildCached", func(string) {})
	if err != nil {
		t.Skip(err)
	}
	cache := t.TempDir()
	dir := filepath.Join(cache, "kernels", r.Name+"-"+r.Key(version))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{BzImageFile: "kernel", ConfigFile: "CONFIG_A=y\n", ReleaseFile: "6.1.192-nfslab-vulnerable\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var lines []string
	b, err := Build(t.Context(), r, cache, nil, func(s string) { lines = append(lines, s) })
	if err != nil {
		t.Fatal(err)
	}
	if !b.Cached || b.Release != "6.1.192-nfslab-vulnerable" || b.BzImage != filepath.Join(dir, BzImageFile) || b.Key != r.Key(version) {
		t.Errorf("Build = %+v", b)
	}
	if len(lines) != 0 {
		t.Errorf("a cache hit reported progress %q", lines)
	}
}

// TestBuildCancelled checks that a cancelled context stops Build and leaves no build directory.
func TestBuildCancelled(t *testing.T) {
	r, err := Lookup("vulnerable-6.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.Tarball()); err != nil {
		t.Skipf("%s not installed", r.Tarball())
	}
	if err := CheckBuildTools(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cache := t.TempDir()
	progress := func(s string) {
		if strings.HasPrefix(s, "kernel "+r.Name+": step 1 of ") && strings.Contains(s, "unpacking") {
			time.AfterFunc(time.Second, cancel) // while tar runs (~10 s)
		}
	}
	start := time.Now()
	_, err = Build(ctx, r, cache, nil, progress)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Build error = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Build returned %s after the start, want soon after the cancel at 1 s", d)
	}
	entries, _ := os.ReadDir(filepath.Join(cache, "kernels"))
	for _, e := range entries {
		if e.IsDir() {
			t.Errorf("left behind %s", e.Name())
		}
	}
}
