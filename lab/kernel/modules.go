package kernel

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nfslab/nfslab/lab/image"
)

// BootModules are what the agent loads before anything else: the virtio transport and the
// serial port to the host.
func BootModules() []string { return []string{"virtio_pci", "virtio_console"} }

// PreloadModules are what the agent loads right after saying hello, so that a missing one fails
// loudly at boot, not mid-cell: the NFS clients, the pod topology, conntrack's netlink
// interface (each cell flushes the table), and what the kube-proxy datapath's iptables rules
// use, which a VM restored from a snapshot then has loaded already (under TCG the first
// kube-proxy cell of a VM otherwise waits for the kernel to load them). The rest of LabModules
// is loaded on demand by the kernel.
func PreloadModules() []string {
	return []string{
		"nfsv4", "nfsv3", "veth", "bridge", "dummy", "nf_conntrack_netlink",
		"nf_tables", "nft_compat", "nft_chain_nat", "xt_comment", "xt_conntrack", "xt_tcpudp",
		"xt_nat", "xt_mark", "xt_addrtype", "xt_MASQUERADE",
	}
}

// LabModules are the modules the lab packs for the guest: the NFS client, the pod topology
// (veth, bridge, dummy), virtio and 9p for the host channel, and netfilter for the kube-proxy
// datapaths (iptables over nf_tables and legacy, nftables, IPVS). It includes BootModules and
// PreloadModules.
func LabModules() []string {
	return []string{
		"nfsv4", "nfsv3", "veth", "bridge", "dummy", "virtio_console", "virtio_pci", "9p",
		"9pnet_virtio", "nf_tables", "nft_compat", "nft_chain_nat", "nf_nat", "nf_conntrack",
		"xt_comment", "xt_tcpudp", "xt_nat", "xt_conntrack", "xt_mark", "xt_addrtype",
		"xt_multiport", "xt_statistic", "xt_MASQUERADE", "iptable_nat", "iptable_filter",
		"ip_tables", "x_tables", "ip_vs", "ip_vs_rr", "nf_conntrack_netlink", "overlay",
		"br_netfilter", "tun",
		// nftables-mode kube-proxy and REJECT rules for services without endpoints.
		"nft_ct", "nft_nat", "nft_masq", "nft_reject_inet", "nft_numgen", "nft_fib_inet",
		"ipt_REJECT",
		// netem, for faults that delay or drop traffic.
		"sch_netem",
		// The SMB client, for SMB cells, and the ciphers and hashes SMB 3.1.1 asks the crypto
		// API for at mount time (signing, encryption, preauth integrity).
		"cifs", "gcm", "ccm", "cmac", "ctr", "ecb", "ghash_generic", "sha512_generic", "nls_utf8",
	}
}

// KindModules are what the kind form adds to LabModules: the Docker disk (virtio-blk, ext4),
// Docker's storage and bridge (overlay, br_netfilter and the matches its rules use), and what
// kube-proxy's ipvs and nftables modes program (ipsets, IPVS schedulers, fib and limit
// expressions). Built-in ones are skipped when packing.
func KindModules() []string {
	return []string{
		"virtio_blk", "ext4", "overlay", "br_netfilter", "xt_physdev", "xt_REDIRECT", "xt_owner",
		"xt_CT", "iptable_raw", "iptable_mangle",
		"ip_vs_wrr", "ip_vs_lc", "ip_vs_sh", "xt_ipvs", "ip_set", "ip_set_hash_ip",
		"ip_set_hash_ipport", "ip_set_hash_ipportip", "ip_set_hash_ipportnet", "ip_set_hash_net",
		"ip_set_bitmap_port", "xt_set",
		"nft_fib_ipv4", "nft_fib_ipv6", "nft_limit",
		// kube-proxy's nftables mode rejects in its "ip" table (the family-specific reject, not
		// nft_reject_inet): without it every sync fails with ENOENT and no rule is written.
		"nft_reject_ipv4", "nft_reject_ipv6",
		"virtio_net", // nfslab run --keep: the VM's network, for the API server's forward
		// Real Cilium (CiliumFeatures): clsact and the BPF classifier for its device programs,
		// AF_ALG hashing, the XFRM netlink family, which every netlink handle of the agent
		// opens (without it the agent exits at start: "protocol not supported"), and the socket
		// match and TPROXY target of its static proxy rules, which it installs even without
		// its L7 proxy (without them every iptables reconciliation fails).
		"sch_ingress", "cls_bpf", "algif_hash", "xfrm_user", "xt_socket", "xt_TPROXY",
	}
}

// KindPreloadModules are loaded by the agent before it starts Docker: the disk and the
// storage driver must be there before anything mounts them, and br_netfilter is not
// autoloaded (Docker only warns when it is missing).
func KindPreloadModules() []string {
	return []string{"virtio_blk", "ext4", "overlay", "br_netfilter"}
}

// LineModules are modules that only some kernel lines build as modules of their own; each is
// packed where the kernel has it. nft_counter is one on 5.10 (later lines build it into
// nf_tables), and iptables-nft puts a counter in every rule: without it, every kube-proxy rule
// fails with ENOENT.
func LineModules() []string { return []string{"nft_counter"} }

// ModulesFile is the file name of the modules cpio inside its artefact directory.
const ModulesFile = "modules.cpio"

// modulesRecipe names the way ModulesArchive lays out its archive; bump it when that changes.
const modulesRecipe = "modules-v1"

// modulesRoot is where modules go in the guest. The rootfs is usr-merged (/lib -> usr/lib): a
// top-level lib/ directory in an appended archive would replace that symlink and break every
// program in the guest.
const modulesRoot = "usr/lib/modules"

// ModuleName normalises a module name or file name: directory, .ko[.xz|.zst|.gz] suffix
// removed and '-' replaced by '_' (the kernel treats them as the same).
func ModuleName(s string) string {
	s = path.Base(filepath.ToSlash(s))
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		s = strings.TrimSuffix(s, ext)
	}
	s = strings.TrimSuffix(s, ".ko")
	return strings.ReplaceAll(s, "-", "_")
}

// ModuleIndex is what depmod recorded about a kernel's modules.
type ModuleIndex struct {
	// Path maps a module name to its file, relative to the modules directory.
	Path map[string]string
	// Deps maps a module name to the names of the modules it needs loaded first.
	Deps map[string][]string
	// Soft maps a module name to its soft dependencies (modules.softdep, pre and post).
	Soft map[string][]string
	// Builtin holds the names of modules built into the kernel.
	Builtin map[string]bool
	// Alias maps exact (wildcard-free) aliases to the modules that provide them.
	Alias map[string][]string
}

// ReadModuleIndex reads modules.dep, and if present modules.softdep, modules.builtin and
// modules.alias, from a lib/modules/<release> directory.
func ReadModuleIndex(modulesDir string) (*ModuleIndex, error) {
	idx := &ModuleIndex{
		Path: map[string]string{}, Deps: map[string][]string{}, Soft: map[string][]string{},
		Builtin: map[string]bool{}, Alias: map[string][]string{},
	}
	err := eachLine(filepath.Join(modulesDir, "modules.dep"), true, func(l string) error {
		file, deps, ok := strings.Cut(l, ":")
		if !ok {
			return fmt.Errorf("malformed line %q", l)
		}
		name := ModuleName(file)
		idx.Path[name] = strings.TrimSpace(file)
		for _, d := range strings.Fields(deps) {
			idx.Deps[name] = append(idx.Deps[name], ModuleName(d))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = eachLine(filepath.Join(modulesDir, "modules.softdep"), false, func(l string) error {
		f := strings.Fields(l)
		if len(f) < 2 || f[0] != "softdep" {
			return nil
		}
		name := ModuleName(f[1])
		for _, d := range f[2:] {
			if d != "pre:" && d != "post:" {
				idx.Soft[name] = append(idx.Soft[name], ModuleName(d))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = eachLine(filepath.Join(modulesDir, "modules.builtin"), false, func(l string) error {
		idx.Builtin[ModuleName(l)] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = eachLine(filepath.Join(modulesDir, "modules.alias"), false, func(l string) error {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == "alias" && !strings.ContainsAny(f[1], "*?[") {
			a := strings.ReplaceAll(f[1], "-", "_")
			idx.Alias[a] = append(idx.Alias[a], ModuleName(f[2]))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return idx, nil
}

// eachLine calls fn on each non-empty, non-comment line of file. A missing optional file is
// no error.
func eachLine(file string, required bool, fn func(string) error) error {
	f, err := os.Open(file)
	if err != nil {
		if !required && os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("reading module index: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	n := 0
	for sc.Scan() {
		n++
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if err := fn(l); err != nil {
			return fmt.Errorf("%s:%d: %w", file, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", file, err)
	}
	return nil
}

// MissingModulesError names wanted modules a kernel does not have.
type MissingModulesError struct {
	Release string
	Missing []string
}

func (e *MissingModulesError) Error() string {
	return fmt.Sprintf("kernel %s has no module(s) %s (not in modules.dep, modules.builtin or modules.alias)",
		e.Release, strings.Join(e.Missing, ", "))
}

// Closure returns the sorted names of the loadable modules needed to load want: the wanted
// modules with their dependencies and (existing) soft dependencies, transitively. Names may
// use '-' or '_' and may be exact aliases (e.g. fs-nfs4: every module providing an alias is
// included, as modprobe would load them all). Built-in modules need nothing and
// are left out. Any name that is neither a module, built in, nor an alias is reported in a
// *MissingModulesError.
func (idx *ModuleIndex) Closure(release string, want []string) ([]string, error) {
	seen := map[string]bool{}
	var missing []string
	var queue []string
	for _, w := range want {
		n := ModuleName(w)
		switch {
		case idx.Path[n] != "":
			queue = append(queue, n)
		case idx.Builtin[n]:
		case len(idx.Alias[n]) > 0:
			queue = append(queue, idx.Alias[n]...)
		default:
			missing = append(missing, w)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, &MissingModulesError{Release: release, Missing: missing}
	}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		if seen[n] || idx.Path[n] == "" {
			continue // built-in, or a soft dependency this kernel does not have
		}
		seen[n] = true
		queue = append(queue, idx.Deps[n]...)
		for _, s := range idx.Soft[n] {
			// A soft dependency may be an alias (libcrc32c: "pre: crc32c"), as for modprobe.
			if idx.Path[s] == "" && len(idx.Alias[s]) > 0 {
				queue = append(queue, idx.Alias[s]...)
			} else {
				queue = append(queue, s)
			}
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// Loadable returns the names that are loadable modules of this kernel (not built in, not
// missing), normalised.
func (idx *ModuleIndex) Loadable(names []string) []string {
	var out []string
	for _, n := range names {
		if n = ModuleName(n); idx.Path[n] != "" {
			out = append(out, n)
		}
	}
	return out
}

// indexFiles are copied from the kernel's modules directory when present: modules.order keeps
// depmod's ordering, modules.builtin* let modprobe succeed quietly for built-in modules.
var indexFiles = []string{"modules.order", "modules.builtin", "modules.builtin.modinfo"}

// ModulesArchive returns the path of a cpio archive with the closure of want (module names,
// usually LabModules) and of the LineModules kernel k has, from kernel k, under usr/lib/modules/<release>/ with indexes made by
// depmod, so that modprobe and the kernel's autoloading work in the guest. It is cached by
// release, module list and module contents. If a wanted module does not exist the error is a
// *MissingModulesError.
func (r Resolver) ModulesArchive(ctx context.Context, log *slog.Logger, k Kernel, want []string) (string, error) {
	if k.ModulesDir == "" {
		return "", fmt.Errorf("kernel %s (%s) has no modules directory", k.Name, k.Release)
	}
	idx, err := ReadModuleIndex(k.ModulesDir)
	if err != nil {
		return "", err
	}
	want = append(slices.Clone(want), idx.Loadable(LineModules())...)
	closure, err := idx.Closure(k.Release, want)
	if err != nil {
		return "", err
	}
	files := make([]string, len(closure))
	for i, n := range closure {
		files[i] = idx.Path[n]
	}
	contents, err := hashFiles(k.ModulesDir, append(files, indexFiles...))
	if err != nil {
		return "", err
	}
	inputs := image.Inputs{
		"recipe":   modulesRecipe,
		"release":  k.Release,
		"want":     strings.Join(sortedNames(want), ","),
		"modules":  strings.Join(closure, ","),
		"contents": contents,
	}
	dir, err := r.Cache.Artefact(ctx, log, "modules", inputs, func(ctx context.Context, dir string) error {
		return buildModulesArchive(ctx, log, k, files, closure, dir)
	})
	if err != nil {
		return "", fmt.Errorf("modules archive for %s: %w", k.Release, err)
	}
	return filepath.Join(dir, ModulesFile), nil
}

func sortedNames(want []string) []string {
	out := make([]string, len(want))
	for i, w := range want {
		out[i] = ModuleName(w)
	}
	sort.Strings(out)
	return out
}

// hashFiles returns a sha256 over the names and contents of files (relative to dir); missing
// files count as absent.
func hashFiles(dir string, files []string) (string, error) {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00", f)
		fh, err := os.Open(filepath.Join(dir, f))
		if os.IsNotExist(err) {
			fmt.Fprint(h, "absent\x00")
			continue
		}
		if err != nil {
			return "", fmt.Errorf("hashing modules: %w", err)
		}
		_, err = io.Copy(h, fh)
		fh.Close()
		if err != nil {
			return "", fmt.Errorf("hashing modules: %w", err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func buildModulesArchive(ctx context.Context, log *slog.Logger, k Kernel, files, closure []string, dir string) error {
	start := time.Now()
	staging := filepath.Join(dir, "staging")
	relDir := filepath.Join(staging, filepath.FromSlash(modulesRoot), k.Release)
	for _, f := range append(append([]string{}, files...), indexFiles...) {
		src := filepath.Join(k.ModulesDir, f)
		if _, err := os.Stat(src); os.IsNotExist(err) {
			continue // an optional index file
		}
		if err := copyFile(src, filepath.Join(relDir, f)); err != nil {
			return fmt.Errorf("staging modules: %w", err)
		}
	}
	// depmod looks in <base>/lib/modules/<release>; the base is staging/usr.
	if err := runDepmod(ctx, filepath.Join(staging, "usr"), k.Release, dir); err != nil {
		return err
	}
	idx, err := ReadModuleIndex(relDir)
	if err != nil {
		return fmt.Errorf("checking depmod output: %w", err)
	}
	for _, n := range closure {
		if idx.Path[n] == "" {
			return fmt.Errorf("depmod did not index %s", n)
		}
	}
	out := filepath.Join(dir, ModulesFile)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	cw := image.NewCpioWriter(f)
	for _, d := range []string{"usr", "usr/lib", modulesRoot} {
		if err := cw.Dir(d, 0o755); err != nil {
			return err
		}
	}
	if err := cw.AddTree(filepath.Join(staging, filepath.FromSlash(modulesRoot)), image.TreeOptions{Prefix: modulesRoot, RootOwned: true}); err != nil {
		return fmt.Errorf("writing %s: %w", ModulesFile, err)
	}
	if err := cw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.txt"), []byte(strings.Join(closure, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	st, _ := os.Stat(out)
	log.Info("modules archive built", "release", k.Release, "modules", len(closure),
		"size_MB", fmt.Sprintf("%.1f", float64(st.Size())/(1<<20)), "elapsed", time.Since(start).Round(time.Millisecond))
	return image.RemoveTree(staging)
}

func copyFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return image.CopyFile(src, dst)
}
