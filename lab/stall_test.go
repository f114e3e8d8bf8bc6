package lab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab/event"
)

// The lines a wedged 6.1 guest printed, once a minute, in a kind run under TCG.
const rcuStall = `[   65.255290] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:
[   65.255290] rcu: All QSes seen, last rcu_preempt kthread activity 21002 (4294731732-4294710730), jiffies_till_next_fqs=3, root ->qsmask 0x0
[   65.255290] rcu: rcu_preempt kthread starved for 21002 jiffies! g19549 f0x2 RCU_GP_WAIT_FQS(5) ->state=0x0 ->cpu=0
`

func TestStallTracker(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	type step struct {
		at      time.Duration
		console string // console text read at this moment
		spoke   bool   // the agent sent an event at this moment
	}
	tests := []struct {
		name  string
		steps []step
		check time.Duration // when wedged is asked
		want  bool
		// silent: wedged because the agent said nothing for silenceLimit, not for stalls.
		silent bool
	}{
		{name: "quiet console", steps: []step{{at: 0, console: "[ 1.0] Run /init as init process\n"}}, check: 10 * time.Minute},
		{name: "the agent silent for the limit", steps: []step{{at: 0, console: "[ 1.0] Run /init as init process\n"}, {at: time.Minute, spoke: true}},
			check: time.Minute + silenceLimit, want: true, silent: true},
		{name: "the agent silent, not for the limit", steps: []step{{at: 10 * time.Minute, spoke: true, console: "cilium: (210 s) agents ready 0/1\n"}}, check: 10*time.Minute + silenceLimit - time.Second},
		{name: "a stall reported, not for long", steps: []step{{at: 0, console: rcuStall}}, check: 4 * time.Minute},
		{name: "stalls for the limit, agent silent", steps: []step{{at: 0, console: rcuStall}, {at: time.Minute, console: rcuStall}}, check: stallLimit, want: true},
		{name: "the agent spoke after the stall", steps: []step{{at: 0, console: rcuStall}, {at: 2 * time.Minute, spoke: true}}, check: 6 * time.Minute},
		{name: "stalls again after the agent spoke", steps: []step{{at: 0, console: rcuStall}, {at: 2 * time.Minute, spoke: true}, {at: 3 * time.Minute, console: rcuStall}}, check: 3*time.Minute + stallLimit, want: true},
		{name: "a soft lockup", steps: []step{{at: 0, console: "[ 80.1] watchdog: BUG: soft lockup - CPU#1 stuck for 23s! [containerd:812]\n"}}, check: stallLimit, want: true},
		{name: "a task hung on a hard NFS mount", steps: []step{{at: 0, console: "[ 245.1] INFO: task cat:412 blocked for more than 120 seconds.\n[ 245.1] \"echo 0 > /proc/sys/kernel/hung_task_timeout_secs\" disables this message.\n"}, {at: 9 * time.Minute, spoke: true}}, check: 10 * time.Minute},
		{name: "a kernel line that only mentions rcu", steps: []step{{at: 0, console: "[ 0.1] rcu: Preemptible hierarchical RCU implementation.\n"}}, check: 10 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newStallTracker(t0)
			for _, s := range tt.steps {
				if s.spoke {
					tr.agentSpoke(t0.Add(s.at))
				}
				if s.console != "" {
					tr.console(t0.Add(s.at), s.console)
				}
			}
			w, got := tr.wedged(t0.Add(tt.check), stallLimit, silenceLimit)
			if got != tt.want {
				t.Fatalf("wedged = %v, want %v", got, tt.want)
			}
			if got && (w.line == "" || !strings.Contains(w.Error(), w.line) || w.silent != tt.silent) {
				t.Errorf("the error %q does not quote the last line, or is not the one wanted (silent: %v)", w.Error(), tt.silent)
			}
		})
	}
}

func TestReadFrom(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	if _, _, err := readFrom(path, 0); err == nil {
		t.Fatal("reading a console that does not exist yet: no error")
	}
	if err := os.WriteFile(path, []byte("boot\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	text, off, err := readFrom(path, 0)
	if err != nil || text != "boot\n" || off != 5 {
		t.Fatalf("readFrom(0) = %q, %d, %v", text, off, err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(rcuStall)
	f.Close()
	text, off2, err := readFrom(path, off)
	if err != nil || text != rcuStall || off2 != off+int64(len(rcuStall)) {
		t.Fatalf("readFrom(%d) = %q, %d, %v: want only the new text", off, text, off2, err)
	}
}

// TestGuestProgress: the kernel log lines the agent relays (a soft lockup's report among them)
// do not keep a wedged VM's watch from ending it; everything else the agent sends does.
func TestGuestProgress(t *testing.T) {
	tests := []struct {
		name string
		ev   event.Event
		want bool
	}{
		{"a step", event.Event{Kind: event.KindStep, Step: event.StepMounted}, true},
		{"a probe", event.Event{Kind: event.KindObserve, Probe: &event.ProbeObs{}}, true},
		{"progress of a kind cluster", event.Event{Kind: event.KindProgress, Msg: "kind: (120 s) node: …"}, true},
		{"a relayed kernel line", event.Event{Kind: event.KindObserve, Kernel: &event.KernelLogObs{Line: " xs_tcp_send_request+0x27c/0x320 [sunrpc]"}}, false},
	}
	for _, tt := range tests {
		if got := guestProgress(tt.ev); got != tt.want {
			t.Errorf("%s: guestProgress = %v, want %v", tt.name, got, tt.want)
		}
	}
}
