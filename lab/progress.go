package lab

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/tty"
)

// progress prints one line per step for people watching a run: the time since the run began,
// the step, and how long the step took (the time since the cell's previous step). On a terminal
// the lines are coloured; in CI and in files they are plain.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	style tty.Style
	start time.Time
	last  map[string]event.Mono // per cell: when its previous step ended
}

func newProgress(w io.Writer, style tty.Style) *progress {
	return &progress{w: w, style: style, start: time.Now(), last: map[string]event.Mono{}}
}

func (p *progress) say(format string, args ...any) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	stamp := p.style.Paint(tty.Dim, fmt.Sprintf("[%6.1fs]", time.Since(p.start).Seconds()))
	fmt.Fprintf(p.w, "%s %s\n", stamp, fmt.Sprintf(format, args...))
}

// took returns how long a cell's step took, " (1.23 s)", from the event times of its steps.
func (p *progress) took(cell string, at event.Mono) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	prev, ok := p.last[cell]
	p.last[cell] = at
	if !ok || at < prev {
		return ""
	}
	return p.style.Paint(tty.Dim, fmt.Sprintf(" (%.2f s)", at.Sub(prev).Seconds()))
}

// verdictColor is how a verdict is shown on a terminal.
func verdictColor(v string) string {
	switch v {
	case "recovered":
		return tty.Green
	case "bug-reproduced":
		return tty.Yellow
	case "failed":
		return tty.Red
	}
	return tty.Bold
}

// event prints the events people care about while a cell runs: steps, errors, stuck probes,
// and the cell's end. Observations go to the report, not the terminal.
func (p *progress) event(cell string, ev event.Event) {
	name := p.style.Paint(tty.Cyan, cell)
	switch ev.Kind {
	case event.KindStep:
		p.say("  %s: %s: %s%s", name, ev.Step, ev.Msg, p.took(cell, ev.Mono))
	case event.KindError:
		if cell == "" {
			p.say("  %s: %s", p.style.Paint(tty.Red, "agent error"), ev.Msg)
		} else {
			p.say("  %s: %s %s: %s", name, p.style.Paint(tty.Red, "FAILED"), ev.Step, ev.Msg)
		}
	case event.KindCellDone:
		if ev.Verdict != nil {
			v := string(ev.Verdict.Verdict)
			p.say("  %s: verdict %s (%s)", name, p.style.Paint(verdictColor(v), v), ev.Verdict.Reason)
		}
	case event.KindBye:
		p.say("vm: agent done: %s", ev.Msg)
	case event.KindProgress:
		if cell == "" {
			p.say("  %s", ev.Msg)
		} else {
			p.say("  %s: %s", name, ev.Msg)
		}
	case event.KindObserve:
		switch {
		case ev.Kernel != nil:
			p.say("  %s: kernel: %s", name, ev.Kernel.Line)
		case ev.Engine != nil:
			p.engine(ev.Engine)
		case ev.Cluster != nil && ev.Cell < 0: // a cell's copy of its cluster's record was said at its creation
			p.cluster(ev.Cluster)
		}
	}
}

// engine prints what the kind form's Docker engine reported.
func (p *progress) engine(eng *event.EngineObs) {
	p.say("engine: Docker %s up in %.1f s (storage %s on %s, cgroup v%s)", eng.ServerVersion,
		eng.ReadySeconds, eng.Driver, eng.BackingFS, eng.CgroupVersion)
	for _, l := range eng.Loaded {
		p.say("engine: loaded %s in %.1f s", strings.Join(l.Images, ", "), l.Seconds)
	}
	if c := eng.Container; c != nil {
		p.say("engine: a node-like container ran (image built in %.1f s, run in %.1f s)", c.ImportSeconds, c.RunSeconds)
	}
}

// cluster prints a kind cluster's creation (and, for a machine check, its NFS smoke test and
// deletion).
func (p *progress) cluster(c *event.ClusterObs) {
	switch {
	case c.SwitchedFrom != "" && c.Error != "":
		p.say("kind: cluster %s: switching kube-proxy from %s to %s failed after %.1f s (a new cluster follows): %s", c.Name, c.SwitchedFrom, c.ProxyMode, c.SwitchSeconds, c.Error)
	case c.SwitchedFrom != "":
		p.say("kind: cluster %s: kube-proxy switched from %s to %s in %.1f s", c.Name, c.SwitchedFrom, c.ProxyMode, c.SwitchSeconds)
	case c.Error != "":
		p.say("kind: cluster %s (kube-proxy %s) failed after %.1f s: %s", c.Name, c.ProxyMode, c.CreateSeconds, c.Error)
	case c.DeleteSeconds > 0:
		p.say("kind: cluster %s created in %.1f s, node %s Ready at %.1f s (kubelet %s, kube-proxy %s), deleted in %.1f s",
			c.Name, c.CreateSeconds, c.Node, c.ReadySeconds, c.KubeletVersion, c.ProxyMode, c.DeleteSeconds)
	default:
		p.say("kind: cluster %s created in %.1f s, node %s Ready at %.1f s (kubelet %s, kernel %s, kube-proxy %s)",
			c.Name, c.CreateSeconds, c.Node, c.ReadySeconds, c.KubeletVersion, c.KernelVersion, c.ProxyMode)
	}
	if c.DeleteError != "" {
		p.say("kind: warning: the cluster could not be deleted in the VM (the VM goes, and its disk is a snapshot): %s", c.DeleteError)
	}
	if n := c.NFS; n != nil {
		p.say("kind: NFS: Service %s, pod %s (%s) Ready at %.1f s, in the EndpointSlice at %.1f s; mounted in %.1f s (%d refused before) as %s (addr=%s); read back: %v",
			n.VIP, n.Pod, n.PodIP, n.PodReadySeconds, n.EndpointsSeconds, n.MountSeconds, n.MountAttempts, n.MountSource, n.MountAddr, n.ReadBack)
	}
}
