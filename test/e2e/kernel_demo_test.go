package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// demoIDLine is the first line of `nfslab demo`: "nfslab: demo <id>: cell …".
var demoIDLine = regexp.MustCompile(`nfslab: demo ([0-9]{8}-[0-9]{6}-[0-9a-f]{6}): cell `)

// tmuxSession is an nfslab demo in a detached tmux session on a private tmux server, driven as a
// person would drive it: keys in, the screen read back.
type tmuxSession struct {
	t      *testing.T
	socket string // the private server's socket (tmux -S), in the test's temporary directory
	name   string
}

func (s *tmuxSession) tmux(args ...string) string {
	s.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", s.socket}, args...)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("tmux %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// screen is the pane's history and screen, wrapped lines joined.
func (s *tmuxSession) screen() string {
	return s.tmux("capture-pane", "-p", "-J", "-S", "-2000", "-t", s.name)
}

// send types keys (tmux send-keys names: "Enter", "C-]", or text).
func (s *tmuxSession) send(keys ...string) {
	s.t.Helper()
	s.tmux(append([]string{"send-keys", "-t", s.name}, keys...)...)
}

// waitFor polls the screen until it contains every one of want, or fails after d.
func (s *tmuxSession) waitFor(d time.Duration, want ...string) string {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for {
		scr := s.screen()
		missing := ""
		for _, w := range want {
			if !strings.Contains(scr, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return scr
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the screen did not show %q within %s; it shows:\n%s", missing, d, scr)
		}
		time.Sleep(time.Second)
	}
}

// TestDemo drives nfslab demo through tmux as a presenter would: wait for the shell on the node,
// look at the mount, take the two steps (nfslab-next in the shell, then Ctrl-] on the keyboard),
// see the tracer's lines and the verdict appear between the shell's, use the shell after the
// verdict, leave it, and check that nothing of the lab is left.
func TestDemo(t *testing.T) {
	requireE2E(t)
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux is not installed (apt-get install tmux)")
	}
	bin := buildNfslab(t)
	tests := []struct {
		kernel  string
		verdict string
		tracer  []string // tracer lines after backend B is ready
		// hangs: the mount hangs after the verdict, and the presenter leaves with Ctrl-\
		// while a command hangs on it; else a file is created in it and the shell is left
		// with exit.
		hangs bool
	}{
		{
			kernel: "debian-stock", verdict: "recovered",
			tracer: []string{"[nfslab] kernel_connect handed 10.96.0.50:2049", "[nfslab] socket-LB hook rewrote 10.96.0.50:2049 → 10.0.0.12:2049"},
		},
		{
			// The bug: SUNRPC asks for the dead backend's address, and the mount hangs.
			kernel: "vulnerable-6.1", verdict: "bug-reproduced",
			tracer: []string{"[nfslab] kernel_connect handed 10.0.0.11:2049", "[nfslab] socket-LB hook was handed 10.0.0.11:2049, not a service address"},
			hangs:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.kernel, func(t *testing.T) {
			tmp, runs := t.TempDir(), t.TempDir()
			s := &tmuxSession{t: t, socket: filepath.Join(t.TempDir(), "tmux.sock"), name: "demo"}
			args := withCache(bin, "demo", "--kernel", tt.kernel, "--datapath", "socket-lb", "--accel", "tcg")
			cmdline := fmt.Sprintf("env TMPDIR=%s NFSLAB_RUN_DIR=%s %s; echo nfslab-demo-exit=$?; sleep 3600", tmp, runs, strings.Join(args, " "))
			s.tmux("new-session", "-d", "-s", s.name, "-x", "160", "-y", "50", cmdline)
			defer func() {
				t.Logf("the screen at the end:\n%s", s.screen())
				exec.Command("tmux", "-S", s.socket, "kill-server").Run()
			}()

			// A cold cache builds the kernel first (minutes); a VM boots in under a minute.
			scr := s.waitFor(20*time.Minute, "root@nfslab-node:~# ")
			m := demoIDLine.FindStringSubmatch(scr)
			if m == nil {
				t.Fatalf("no run ID on the screen:\n%s", scr)
			}
			id := m[1]
			for _, w := range []string{"[nfslab] mounted: 10.96.0.50:/export on /mnt/nfslab/c0", "[nfslab] baseline-io-ok", "nfslab-next (or Ctrl-] on the keyboard)"} {
				if !strings.Contains(scr, w) {
					t.Errorf("before the shell, the screen lacks %q", w)
				}
			}
			if strings.Contains(scr, "fault-injected") {
				t.Fatalf("the fault came before the presenter said so:\n%s", scr)
			}

			// The shell's terminal has the presenter's size, and follows it.
			s.send("stty size", "Enter")
			s.waitFor(time.Minute, "\n50 160\n")
			s.tmux("resize-window", "-t", s.name, "-x", "120", "-y", "40")
			time.Sleep(time.Second)
			s.send("stty size", "Enter")
			s.waitFor(time.Minute, "\n40 120\n")

			s.send("mount | grep nfs4", "Enter")
			s.waitFor(time.Minute, "10.96.0.50:/export on /mnt/nfslab/c0 type nfs4 (rw,")
			s.send("ls /mnt/nfslab/c0; echo before=$?", "Enter")
			s.waitFor(time.Minute, "\nbaseline\nbefore=0")
			time.Sleep(2 * time.Second)
			if scr := s.screen(); strings.Contains(scr, "fault-injected") {
				t.Fatalf("the fault came before the presenter said so:\n%s", scr)
			}

			// Step 1 from the shell, step 2 from the keyboard.
			s.send("nfslab-next", "Enter")
			s.waitFor(2*time.Minute, "next (1 of 2): kill backend A (fault delete-pod)", "[nfslab] fault-injected: delete-pod: pod c0-pod-a (10.0.0.11) is gone")
			time.Sleep(3 * time.Second)
			if scr := s.screen(); strings.Contains(scr, "backend-b-ready") {
				t.Fatalf("backend B came before the presenter said so:\n%s", scr)
			}
			s.send("C-]")
			s.waitFor(2*time.Minute, "[nfslab] Ctrl-]: next step", "[nfslab] backend-b-ready: nfs served on 10.0.0.12:2049")
			s.waitFor(5*time.Minute, append([]string{"[nfslab] verdict " + tt.verdict + " (expected " + tt.verdict + ")"}, tt.tracer...)...)
			s.send("nfslab-next", "Enter")
			s.waitFor(time.Minute, "nothing left to step")

			// The shell is still the node's after the verdict.
			s.send("ss -tn", "Enter")
			s.waitFor(time.Minute, "Peer Address:Port")
			if tt.hangs {
				s.send("touch /mnt/nfslab/c0/from-the-shell; echo touched=$?", "Enter")
				time.Sleep(5 * time.Second)
				if scr := s.screen(); strings.Contains(scr, "\ntouched=") {
					t.Fatalf("touch did not hang on the mount:\n%s", scr)
				}
				s.send("C-\\")
				s.waitFor(time.Minute, "[nfslab] Ctrl-\\: leaving the shell")
			} else {
				s.send("touch /mnt/nfslab/c0/from-the-shell; echo touched=$?", "Enter")
				s.waitFor(time.Minute, "\ntouched=0")
				s.send("exit", "Enter")
			}
			scr = s.waitFor(2*time.Minute, "nfslab-demo-exit=")
			for _, w := range []string{"[nfslab] teardown-", "nfslab: demo " + id + " done", "nfslab-demo-exit=0"} {
				if !strings.Contains(scr, w) {
					t.Errorf("after the shell, the screen lacks %q", w)
				}
			}
			if p := markedProcesses(id); len(p) > 0 {
				t.Errorf("processes of demo %s are left: %v", id, p)
			}
			if left, _ := filepath.Glob(filepath.Join(tmp, "nfslab-run-*")); len(left) > 0 {
				t.Errorf("work directories are left: %v", left)
			}
			if left, _ := filepath.Glob(filepath.Join(runs, "*.json")); len(left) > 0 {
				t.Errorf("run records are left: %v", left)
			}
		})
	}
}
