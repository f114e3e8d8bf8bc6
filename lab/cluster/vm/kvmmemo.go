package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/nfslab/nfslab/internal/atomicfile"
)

// KVMMemo remembers that KVM did not bring a VM up on this host, so that later boots with
// AccelAuto go straight to TCG instead of waiting out KVM's boot timeout again (on a host
// whose /dev/kvm opens but whose KVM cannot run a guest, qemu hangs rather than failing).
//
// The memo holds for one Host: what decides whether KVM works here, the host's kernel release
// and qemu's version. A new kernel or qemu tries KVM again, and so does a boot with AccelKVM,
// which forgets the memo when it succeeds. The zero value remembers nothing.
type KVMMemo struct {
	File string // where the memo is kept, e.g. in the artefact cache; "" for no memo
	Host string // the host's kernel release and qemu's version
}

// KVMMemoFile is the memo's file name in a cache directory.
const KVMMemoFile = "kvm-failed.txt"

// NewKVMMemo is the memo kept in the cache directory dir for a host running kernel release
// hostKernel with qemu's version qemu (QEMUVersion).
func NewKVMMemo(dir, hostKernel, qemu string) KVMMemo {
	return KVMMemo{File: filepath.Join(dir, KVMMemoFile), Host: hostKernel + "; " + qemu}
}

// QEMUVersion is the first line of qemu-system-x86_64 --version, or "" when it cannot run.
func QEMUVersion(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "qemu-system-x86_64", "--version").Output()
	if err != nil {
		return ""
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return first
}

// Failed returns why KVM failed when it last failed on this host, and when; ok is false when
// the memo is empty, unreadable or about another host.
func (m KVMMemo) Failed() (reason string, at time.Time, ok bool) {
	if m.File == "" {
		return "", time.Time{}, false
	}
	b, err := os.ReadFile(m.File)
	if err != nil {
		return "", time.Time{}, false
	}
	host, rest, _ := strings.Cut(string(b), "\n")
	stamp, reason, _ := strings.Cut(rest, "\n")
	if host != m.Host {
		return "", time.Time{}, false
	}
	at, err = time.Parse(time.RFC3339, stamp)
	if err != nil {
		return "", time.Time{}, false
	}
	return strings.TrimSpace(reason), at, true
}

// Record remembers that KVM failed now, and why.
func (m KVMMemo) Record(why error, now time.Time) error {
	if m.File == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(m.File), 0o755); err != nil {
		return fmt.Errorf("remember that KVM failed: %w", err)
	}
	reason := strings.ReplaceAll(why.Error(), "\n", " ")
	body := m.Host + "\n" + now.UTC().Format(time.RFC3339) + "\n" + reason + "\n"
	// Written aside and renamed, so that VMs failing at once never leave a mixed memo.
	if err := atomicfile.WriteBytes(m.File, 0o644, []byte(body)); err != nil {
		return fmt.Errorf("remember that KVM failed: %w", err)
	}
	return nil
}

// Forget drops the memo (KVM brought a VM up).
func (m KVMMemo) Forget() error {
	if m.File == "" {
		return nil
	}
	if err := os.Remove(m.File); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("forget that KVM failed: %w", err)
	}
	return nil
}
