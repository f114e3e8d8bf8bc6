package nodeimage

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// kubeletCgroupScript is kind's ExecStartPre of the kubelet (cgroup v2): it writes the node's
// top-level cgroup.subtree_control, which the kernel allows only while the node's root cgroup
// holds no process, and refuses otherwise; the kubelet's unit then fails and is restarted.
const kubeletCgroupScript = "kind/bin/create-kubelet-cgroup-v2.sh"

// kubeletCgroupCheck is the line of kind's script that checks the root cgroup is empty.
const kubeletCgroupCheck = `if grep -qv '^0$' /sys/fs/cgroup/cgroup.procs ; then`

// kubeletCgroupMove is what nfslab puts before that check. Until subtree_control is written,
// every `docker exec` into the node joins its root cgroup. Under TCG kind's own execs, one
// after another, can hold the root whenever the kubelet's unit retries, and once kubeadm init
// (one long exec) has started before the script ever succeeded, the kubelet never starts and
// kind waits out kubeadm's timeouts (seen once: 809 restarts in 20 minutes). The processes in
// the root are moved to init.scope (systemd's), as kind's entrypoint does at start.
const kubeletCgroupMove = `# nfslab: move the processes of ` + "`docker exec`" + `s out of the root cgroup first (see
# lab/cluster/kind/nodeimage/kubeletcgroup.go in nfslab).
for pid in $(grep -v '^0$' /sys/fs/cgroup/cgroup.procs); do
	echo "$pid" >/sys/fs/cgroup/init.scope/cgroup.procs 2>/dev/null || true
done
`

// patchKubeletCgroup rewrites kind's script at root with kubeletCgroupMove before its check.
func patchKubeletCgroup(root string) error {
	p := filepath.Join(root, kubeletCgroupScript)
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	text, err := withKubeletCgroupMove(string(b))
	if err != nil {
		return fmt.Errorf("%s: %w", kubeletCgroupScript, err)
	}
	return os.WriteFile(p, []byte(text), 0o755)
}

// withKubeletCgroupMove is script with kubeletCgroupMove before its check, which it must have
// once.
func withKubeletCgroupMove(script string) (string, error) {
	if n := strings.Count(script, kubeletCgroupCheck); n != 1 {
		return "", fmt.Errorf("kind's check of the root cgroup (%q) is there %d times, want once: this kind version needs another patch", kubeletCgroupCheck, n)
	}
	return strings.Replace(script, kubeletCgroupCheck, kubeletCgroupMove+kubeletCgroupCheck, 1), nil
}
