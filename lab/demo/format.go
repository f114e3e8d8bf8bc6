// Package demo is the host's side of nfslab demo at the presenter's terminal: the lab's events
// in plain words (Describe), a screen that interleaves them with the output of the shell in the
// VM (Screen), and the relay of the presenter's keys (Session).
package demo

import (
	"fmt"
	"strings"

	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/tty"
)

// Line is one line for the presenter: its text and colour (a tty colour; "" for none).
type Line struct {
	Text  string
	Color string
}

// Describe says what an event means in plain words, or false for an event the presenter does
// not need to see (the hello, the verdict record: the host judges the cell itself).
func Describe(ev event.Event) (Line, bool) {
	switch ev.Kind {
	case event.KindStep:
		return Line{fmt.Sprintf("%s: %s", ev.Step, ev.Msg), tty.Cyan}, true
	case event.KindError:
		if ev.Step == "" {
			return Line{"agent error: " + ev.Msg, tty.Red}, true
		}
		return Line{fmt.Sprintf("FAILED %s: %s", ev.Step, ev.Msg), tty.Red}, true
	case event.KindBye:
		return Line{"agent done: " + ev.Msg, ""}, true
	case event.KindObserve:
		return observation(ev)
	}
	return Line{}, false
}

// observation describes a piece of evidence.
func observation(ev event.Event) (Line, bool) {
	switch {
	case ev.Connect != nil:
		return Line{connect(ev.Connect), tty.Yellow}, true
	case ev.Service != nil:
		s := ev.Service
		to := "no endpoint"
		if len(s.Endpoints) > 0 {
			to = strings.Join(s.Endpoints, ", ")
		}
		return Line{fmt.Sprintf("service %s → %s", s.VIP, to), ""}, true
	case ev.Backend != nil:
		b := ev.Backend
		return Line{fmt.Sprintf("pod %s (%s) %s", b.Name, b.IP, b.State), ""}, true
	case ev.Sockets != nil:
		return Line{sockets(ev.Sockets), ""}, true
	case ev.Probe != nil:
		return probe(ev.Probe)
	case ev.Kernel != nil:
		return Line{"kernel: " + ev.Kernel.Line, ""}, true
	case ev.Mount != nil:
		m := ev.Mount
		return Line{fmt.Sprintf("/proc/mounts: %s type %s, addr=%s", m.Source, m.FSType, m.Addr), ""}, true
	case ev.Hook != nil:
		h := ev.Hook
		text := fmt.Sprintf("socket-LB counters: %d rewritten, %d refused, %d to a non-VIP address", h.Rewrites, h.Refused, h.NonVIP)
		if h.LastNonVIPDest != "" {
			text += " (last " + h.LastNonVIPDest + ")"
		}
		return Line{text, ""}, true
	case ev.Instr != nil:
		in := ev.Instr
		if in.Error != "" && in.Lost > 0 {
			return Line{fmt.Sprintf("instrument %s lost %d records: %s", in.Name, in.Lost, in.Error), tty.Red}, true
		}
		if in.Error != "" {
			return Line{fmt.Sprintf("instrument %s failed: %s", in.Name, in.Error), tty.Red}, true
		}
		return Line{fmt.Sprintf("instrument %s lost %d records", in.Name, in.Lost), tty.Red}, true
	}
	// A window's summary is in its step's message.
	return Line{}, false
}

// connect says what a tracer saw of one connect attempt.
func connect(c *event.ConnectObs) string {
	src, hook, _ := strings.Cut(c.Source, ":")
	if src != "socket-lb" {
		// The kprobe: "kprobe:kernel_connect".
		text := fmt.Sprintf("%s handed %s", hook, c.Input)
		if c.Comm != "" {
			text += " (" + c.Comm + ")"
		}
		return text
	}
	who := "socket-LB hook"
	if hook != "connect4" {
		who = "socket-LB " + hook + " hook"
	}
	switch c.Action {
	case "rewrite":
		return fmt.Sprintf("%s rewrote %s → %s", who, c.Input, c.Output)
	case "refuse":
		return fmt.Sprintf("%s refused %s: the service has no endpoint", who, c.Input)
	case "non-vip":
		return fmt.Sprintf("%s was handed %s, not a service address", who, c.Input)
	case "pass-through":
		return fmt.Sprintf("%s let %s through", who, c.Input)
	}
	return fmt.Sprintf("%s: %s %s → %s", who, c.Action, c.Input, c.Output)
}

// sockets lists the kernel's own sockets of a snapshot.
func sockets(s *event.SocketsObs) string {
	var list []string
	for _, k := range s.Sockets {
		if k.Kernel {
			list = append(list, fmt.Sprintf("%s → %s %s", k.Local, k.Remote, k.State))
		}
	}
	if len(list) == 0 {
		return "kernel sockets to the server: none"
	}
	return "kernel sockets to the server: " + strings.Join(list, "; ")
}

func probe(p *event.ProbeObs) (Line, bool) {
	name := fmt.Sprintf("I/O probe %d", p.Seq)
	if p.Seq == 0 {
		name = "baseline I/O"
	}
	switch {
	case p.Stuck:
		return Line{fmt.Sprintf("%s stuck for %.1f s", name, p.Seconds), tty.Red}, true
	case p.OK:
		return Line{fmt.Sprintf("%s ok (write+fsync+read in %.2f s)", name, p.Seconds), tty.Green}, true
	}
	return Line{fmt.Sprintf("%s failed after %.1f s: %s", name, p.Seconds, p.Error), tty.Red}, true
}
