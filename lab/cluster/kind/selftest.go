package kind

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/nfslab/nfslab/lab/event"
)

// selfImage is the image RunNodeLikeContainer imports: one file, the agent's own static binary.
const selfImage = "nfslab/self:latest"

// RunNodeLikeContainer runs a container the way kind runs its nodes (privileged, a private
// cgroup namespace, seccomp and AppArmor unconfined, tmpfs on /run and /tmp, no network) from
// an image that holds only the agent's own static binary, and checks that it ran: the proof that
// runc, overlayfs, cgroup v2 and namespaces work on the kernel under test, without a registry.
func RunNodeLikeContainer(ctx context.Context) (event.ContainerObs, error) {
	start := time.Now()
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		return event.ContainerObs{}, fmt.Errorf("open the agent's binary: %w", err)
	}
	defer self.Close()
	st, err := self.Stat()
	if err != nil {
		return event.ContainerObs{}, fmt.Errorf("open the agent's binary: %w", err)
	}
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := tw.WriteHeader(&tar.Header{Name: "nfslab", Mode: 0o755, Size: st.Size(), Typeflag: tar.TypeReg})
		if err == nil {
			_, err = io.Copy(tw, self)
		}
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	imp := exec.CommandContext(ctx, "docker", "--host", "unix://"+Socket, "import", "-", selfImage)
	imp.Stdin = pr
	if out, err := imp.CombinedOutput(); err != nil {
		pr.CloseWithError(err)
		return event.ContainerObs{}, fmt.Errorf("docker import of the agent's binary: %w: %s", err, strings.TrimSpace(string(out)))
	}
	imported := time.Since(start)
	out, err := Docker(ctx, "run", "--rm", "--privileged", "--cgroupns", "private",
		"--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
		"--tmpfs", "/run", "--tmpfs", "/tmp", "--network", "none",
		selfImage, "/nfslab", "scenarios")
	if err != nil {
		return event.ContainerObs{}, fmt.Errorf("run a node-like container: %w", err)
	}
	if !strings.Contains(string(out), "default") {
		return event.ContainerObs{}, fmt.Errorf("run a node-like container: it printed %q, not the list of scenarios", strings.TrimSpace(string(out)))
	}
	return event.ContainerObs{
		Image: selfImage, ImportSeconds: imported.Seconds(), RunSeconds: (time.Since(start) - imported).Seconds(),
	}, nil
}
