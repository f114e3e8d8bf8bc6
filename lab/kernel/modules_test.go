package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeModules writes a lib/modules/<release> index like depmod's, with the three compression
// styles and a '-' in a file name.
func fakeModules(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"modules.dep": `kernel/fs/nfs/nfsv4.ko: kernel/fs/nfs/nfs.ko.xz kernel/net/sunrpc/sunrpc.ko kernel/net/dns_resolver/dns_resolver.ko.zst
kernel/fs/nfs/nfs.ko.xz: kernel/net/sunrpc/sunrpc.ko
kernel/net/sunrpc/sunrpc.ko:
kernel/net/dns_resolver/dns_resolver.ko.zst:
kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/net/802/stp.ko: kernel/net/llc/llc.ko
kernel/net/llc/llc.ko:
kernel/net/netfilter/nf_conntrack.ko: kernel/lib/libcrc32c.ko
kernel/lib/libcrc32c.ko:
kernel/crypto/crc32c_generic.ko:
kernel/drivers/net/veth.ko:
kernel/net/ipv4/netfilter/iptable-nat.ko: kernel/net/netfilter/nf_nat.ko kernel/net/netfilter/nf_conntrack.ko kernel/lib/libcrc32c.ko
kernel/net/netfilter/nf_nat.ko: kernel/net/netfilter/nf_conntrack.ko kernel/lib/libcrc32c.ko
`,
		"modules.softdep": "# Soft dependencies extracted from modules themselves.\nsoftdep libcrc32c pre: crc32c\nsoftdep nfs post: not_here\n",
		"modules.builtin": "kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_pci.ko\n",
		"modules.alias":   "# Aliases extracted from modules themselves.\nalias fs-nfs4 nfsv4\nalias crc32c crc32c_generic\nalias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestModuleName(t *testing.T) {
	tests := map[string]string{
		"kernel/fs/nfs/nfsv4.ko":        "nfsv4",
		"nfs.ko.xz":                     "nfs",
		"dns_resolver.ko.zst":           "dns_resolver",
		"kernel/x/iptable-nat.ko.gz":    "iptable_nat",
		"iptable-nat":                   "iptable_nat",
		"xt_MASQUERADE":                 "xt_MASQUERADE",
		"kernel/net/9p/9pnet_virtio.ko": "9pnet_virtio",
	}
	for in, want := range tests {
		if got := ModuleName(in); got != want {
			t.Errorf("ModuleName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClosure(t *testing.T) {
	idx, err := ReadModuleIndex(fakeModules(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		want    []string
		got     []string
		missing []string
	}{
		{name: "deps across compression styles", want: []string{"nfsv4"},
			got: []string{"dns_resolver", "nfs", "nfsv4", "sunrpc"}},
		{name: "shared deps counted once", want: []string{"bridge", "veth", "bridge"},
			got: []string{"bridge", "llc", "stp", "veth"}},
		{name: "dash and underscore are one name; softdeps followed, missing softdeps ignored",
			want: []string{"iptable-nat"}, got: []string{"crc32c_generic", "iptable_nat", "libcrc32c", "nf_conntrack", "nf_nat"}},
		{name: "built-in modules need nothing", want: []string{"virtio_pci", "virtio"}, got: []string{}},
		{name: "exact alias", want: []string{"fs-nfs4"}, got: []string{"dns_resolver", "nfs", "nfsv4", "sunrpc"}},
		{name: "unknown modules are all named", want: []string{"veth", "nope", "9p", "pci:v00001AF4d*sv*sd*bc*sc*i*"},
			missing: []string{"9p", "nope", "pci:v00001AF4d*sv*sd*bc*sc*i*"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := idx.Closure("6.1.0-test", tt.want)
			if tt.missing != nil {
				var m *MissingModulesError
				if !errors.As(err, &m) || !slices.Equal(m.Missing, tt.missing) {
					t.Fatalf("err = %v, want missing %q", err, tt.missing)
				}
				if !strings.Contains(err.Error(), "6.1.0-test") || !strings.Contains(err.Error(), "nope") {
					t.Errorf("error %q does not name the kernel and module", err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.got) {
				t.Errorf("Closure(%q) = %q, %v; want %q", tt.want, got, err, tt.got)
			}
		})
	}
}

func TestLoadable(t *testing.T) {
	idx, err := ReadModuleIndex(fakeModules(t))
	if err != nil {
		t.Fatal(err)
	}
	// A loadable module (any spelling) is kept; a built-in one, an alias and a missing one are not.
	got := idx.Loadable([]string{"nf-nat", "virtio_pci", "fs-nfs4", "nft_counter"})
	if want := []string{"nf_nat"}; !slices.Equal(got, want) {
		t.Errorf("Loadable = %v, want %v", got, want)
	}
}

func TestReadModuleIndexErrors(t *testing.T) {
	if _, err := ReadModuleIndex(t.TempDir()); err == nil || !strings.Contains(err.Error(), "modules.dep") {
		t.Errorf("no modules.dep: err = %v", err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "modules.dep"), []byte("no colon here\n"), 0o644)
	if _, err := ReadModuleIndex(dir); err == nil || !strings.Contains(err.Error(), "modules.dep:1") {
		t.Errorf("malformed modules.dep: err = %v", err)
	}
}

func TestBzImageVersion(t *testing.T) {
	img := make([]byte, 0x3000)
	copy(img[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(img[0x20e:], 0x2000)
	copy(img[0x2200:], "6.1.192 (root@lab) #1 SMP PREEMPT_DYNAMIC\x00garbage")
	dir := t.TempDir()
	tree := filepath.Join(dir, "arch", "x86", "boot")
	os.MkdirAll(tree, 0o755)
	p := filepath.Join(tree, "bzImage")
	os.WriteFile(p, img, 0o644)
	os.WriteFile(filepath.Join(dir, ".config"), []byte(fullConfig(nil)), 0o644)

	k, err := Resolve(t.Context(), imageCacheForTest(t), p, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if k.Release != "6.1.192" || k.Vmlinuz != p || k.Name != p || k.ModulesDir != "" || k.Config != filepath.Join(dir, ".config") {
		t.Errorf("Resolve(bzImage) = %+v", k)
	}
	if got, err := ModulesArchive(t.Context(), imageCacheForTest(t), k, LabModules()); got != "" || err != nil {
		t.Errorf("ModulesArchive(no modules) = %q, %v; want empty", got, err)
	}

	notKernel := filepath.Join(dir, "vmlinuz-not")
	os.WriteFile(notKernel, make([]byte, 0x400), 0o644)
	if _, err := Resolve(t.Context(), imageCacheForTest(t), notKernel, nil, nil); err == nil || !strings.Contains(err.Error(), "HdrS") {
		t.Errorf("Resolve(not a bzImage) err = %v", err)
	}
	for _, name := range []string{"no-such-kernel", "/no/such/bzImage", "vulnerable-9.9"} {
		if _, err := Resolve(t.Context(), imageCacheForTest(t), name, nil, nil); err == nil {
			t.Errorf("Resolve(%q): no error", name)
		}
	}
}

// fullConfig is a .config with every required feature built in, except the options in drop.
func fullConfig(drop map[string]bool) string {
	var b strings.Builder
	for _, f := range RequiredFeatures() {
		for _, o := range f.Options {
			if drop[o] {
				fmt.Fprintf(&b, "# %s is not set\n", o)
			} else {
				fmt.Fprintf(&b, "%s=y\n", o)
			}
		}
	}
	return b.String()
}

func TestCheckConfig(t *testing.T) {
	tests := []struct {
		name    string
		config  string
		modules bool
		missing []string // Feature.What of the expected missing features
	}{
		{name: "everything built in", config: fullConfig(nil)},
		{name: "no NFSv4", config: fullConfig(map[string]bool{"CONFIG_NFS_V4": true, "CONFIG_NFS_V4_1": true}), missing: []string{"NFSv4 client", "NFSv4.1 client"}},
		{name: "no cgroup BPF", config: fullConfig(map[string]bool{"CONFIG_CGROUP_BPF": true}), missing: []string{"cgroup BPF (socket-LB)"}},
		{name: "either NAT option will do", config: fullConfig(map[string]bool{"CONFIG_IP_NF_NAT": true})},
		{name: "modules count when the kernel has them", config: strings.ReplaceAll(fullConfig(nil), "CONFIG_VETH=y", "CONFIG_VETH=m"), modules: true},
		{name: "modules do not count without them", config: strings.ReplaceAll(fullConfig(nil), "CONFIG_VETH=y", "CONFIG_VETH=m"), missing: []string{"veth (pods)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "config")
			if err := os.WriteFile(p, []byte(tt.config), 0o644); err != nil {
				t.Fatal(err)
			}
			k := Kernel{Name: "k", Config: p}
			if tt.modules {
				k.ModulesDir = "/lib/modules/k"
			}
			err := CheckConfig(k)
			var mf *MissingFeaturesError
			if len(tt.missing) == 0 {
				if err != nil {
					t.Fatalf("CheckConfig: %v", err)
				}
				return
			}
			if !errors.As(err, &mf) {
				t.Fatalf("CheckConfig = %v, want a *MissingFeaturesError", err)
			}
			var got []string
			for _, f := range mf.Missing {
				got = append(got, f.What)
			}
			if strings.Join(got, "|") != strings.Join(tt.missing, "|") {
				t.Errorf("missing %v, want %v", got, tt.missing)
			}
		})
	}
}

// TestCheckConfigKind: the kind form's features are checked on their own list, and the error
// names the form and each missing feature with its option.
func TestCheckConfigKind(t *testing.T) {
	var b strings.Builder
	for _, f := range KindFeatures() {
		if f.Options[0] != "CONFIG_OVERLAY_FS" && f.Options[0] != "CONFIG_IP_VS_RR" {
			fmt.Fprintf(&b, "%s=y\n", f.Options[0])
		}
	}
	p := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	err := CheckConfigFor(Kernel{Name: "k", Config: p}, "the kind form", KindFeatures())
	var mf *MissingFeaturesError
	if !errors.As(err, &mf) || len(mf.Missing) != 2 {
		t.Fatalf("CheckConfigFor = %v, want overlayfs and IPVS missing", err)
	}
	for _, want := range []string{"lacks what the kind form needs", "overlayfs (Docker's overlay2 storage) (CONFIG_OVERLAY_FS)", "CONFIG_IP_VS_RR"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
