package agent

import (
	"fmt"
	"os/exec"
	"strconv"
	"syscall"

	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/nfs"
)

// ProbeCommand is the hidden subcommand the agent re-executes itself with to run one I/O probe
// in a child process: on a hard mount a stuck probe sits in the kernel, and only that child is
// abandoned, never the agent.
const ProbeCommand = "agent-probe"

// probeRun is one I/O probe child.
type probeRun struct {
	seq    int
	start  event.Mono
	finish event.Mono
	done   chan error    // receives the probe's result once
	exited chan struct{} // closed when the child has exited
	// kill sends SIGKILL to the probe (NFS waits are killable; a task in an unkillable wait
	// is not).
	kill func() error
}

// startProbe starts a probe child on dir. A start failure is delivered on done like any result.
func startProbe(dir string, seq int, baseline bool) *probeRun {
	p := &probeRun{seq: seq, start: now(), done: make(chan error, 1), exited: make(chan struct{})}
	args := []string{ProbeCommand, dir, strconv.Itoa(seq)}
	if baseline {
		args = append(args, "baseline")
	}
	cmd := exec.Command("/proc/self/exe", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	p.kill = func() error { return nil }
	if err := cmd.Start(); err != nil {
		p.finish = now()
		p.done <- fmt.Errorf("start probe: %w", err)
		close(p.exited)
		return p
	}
	p.kill = cmd.Process.Kill
	go func() {
		err := cmd.Wait()
		p.finish = now()
		if err != nil {
			err = fmt.Errorf("probe %d: %w: %s", seq, err, stderr.String())
		}
		p.done <- err
		close(p.exited)
	}()
	return p
}

// ProbeMain is the body of the probe child: args are the mount directory, the sequence number,
// and "baseline" for the probe that writes the file every later probe reads back.
func ProbeMain(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: %s DIR SEQ [baseline]", ProbeCommand)
	}
	seq, err := strconv.Atoi(args[1])
	if err != nil {
		return fmt.Errorf("probe sequence %q: %w", args[1], err)
	}
	if len(args) > 2 && args[2] == "baseline" {
		return nfs.WriteBaseline(args[0])
	}
	return nfs.Probe(args[0], seq)
}

// limitedBuffer keeps the first 4 KiB written to it.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 4096 - len(l.b); room > 0 {
		if len(p) < room {
			room = len(p)
		}
		l.b = append(l.b, p[:room]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }
