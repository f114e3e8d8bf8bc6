package verdict

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/nfslab/nfslab/lab/event"
)

// Facts are what the lab knows about a cell before it runs: the addresses the evidence is
// judged against.
type Facts struct {
	VIP        string // the service address
	OldBackend string // backend A's IP
	NewBackend string // backend B's IP
	Port       int    // the NFS port
}

// Collect walks one cell's timeline (that cell's events, in the order they were emitted) and
// reduces it to Evidence.
//
// An event is after the fault when its Phase says so, or when it has no Phase and comes after
// the fault-injected step. Reconnect targets are, in first-seen order: the remote IPs of the
// kernel's sockets to the NFS port that are connection attempts made after the fault (SYN-SENT,
// or ESTABLISHED connections not already open before the fault: an old connection to the dead
// backend lingering for a moment is not a reconnect); the inputs of connect() calls a tracer
// saw after the fault; and the socket-LB hook's last non-VIP destination whenever its
// counter of such connects grew after the fault.
func Collect(c Facts, events []event.Event) Evidence {
	ev := Evidence{VIP: c.VIP, OldBackend: c.OldBackend, NewBackend: c.NewBackend}
	var (
		faultSeen  bool
		bReady     event.Mono
		last       event.Mono
		haveLast   bool
		preFault   = map[string]bool{} // local→remote of connections open before the fault
		targets    = map[string]bool{}
		nonVIPPrev uint64
	)
	addTarget := func(ip string) {
		if ip != "" && !targets[ip] {
			targets[ip] = true
			ev.ReconnectTargets = append(ev.ReconnectTargets, ip)
		}
	}
	for _, e := range events {
		if !haveLast || e.Mono > last {
			last, haveLast = e.Mono, true
		}
		after := e.Phase == event.PhaseAfter || (e.Phase == "" && faultSeen)
		afterB := ev.BackendBReady

		switch e.Kind {
		case event.KindError:
			msg := e.Msg
			if msg == "" {
				msg = "failed"
			}
			if e.Step != "" {
				msg = string(e.Step) + ": " + msg
			}
			switch {
			case !faultSeen && e.Phase != event.PhaseAfter:
				if ev.SetupError == "" {
					ev.SetupError = msg
				}
			case ev.FailoverError == "":
				ev.FailoverError = msg
			}
		case event.KindStep:
			switch e.Step {
			case event.StepBaselineIO:
				ev.BaselineIOOK = true
			case event.StepFaultInjected:
				ev.FaultInjected, faultSeen = true, true
			case event.StepBackendBReady:
				if !ev.BackendBReady {
					ev.BackendBReady, bReady = true, e.Mono
				}
			case event.StepDeadline:
				ev.DeadlinePassed = true
			case event.StepIOStuck: // the agent's own summary of a stuck probe
				if afterB {
					ev.ProbeStuck = true
				}
			case event.StepIORecovered: // ditto for the first good probe, when no probe record came
				if afterB && ev.FirstIOOKAfter == nil {
					d := max(e.Mono.Sub(bReady), 0)
					ev.FirstIOOKAfter = &d
				}
			}
		case event.KindObserve:
			switch {
			case e.Probe != nil && afterB:
				p := e.Probe
				switch {
				case p.OK:
					if ev.FirstIOOKAfter == nil {
						end := p.FinishNS
						if end == 0 {
							end = e.Mono
						}
						d := max(end.Sub(bReady), 0)
						ev.FirstIOOKAfter = &d
					}
				case p.Stuck:
					ev.ProbeStuck = true
				default:
					ev.ProbeErrors++
				}
			case e.Sockets != nil:
				for _, s := range e.Sockets.Sockets {
					ip, port, ok := splitHostPort(s.Remote)
					if !ok || port != c.Port {
						continue
					}
					state := normState(s.State)
					conn := s.Local + "→" + s.Remote
					if !after {
						if state == "ESTABLISHED" {
							preFault[conn] = true
						}
						continue
					}
					if state == "SYN-SENT" || (state == "ESTABLISHED" && !preFault[conn]) {
						addTarget(ip)
					}
				}
			case e.Connect != nil && after:
				if ip, port, ok := splitHostPort(e.Connect.Input); ok && (port == 0 || port == c.Port) {
					addTarget(ip)
				}
			case e.Hook != nil:
				h := e.Hook
				if after && h.NonVIP > nonVIPPrev {
					if ip, _, ok := splitHostPort(h.LastNonVIPDest); ok {
						addTarget(ip)
					}
				}
				nonVIPPrev = h.NonVIP // a smaller value means the program was reloaded
			}
		}
	}
	if ev.BackendBReady && haveLast {
		ev.SinceBReady = max(last.Sub(bReady), 0)
	}
	return ev
}

// splitHostPort reads "ip:port", "[ip]:port" or a bare "ip"; port is 0 when absent.
func splitHostPort(s string) (ip string, port int, ok bool) {
	s = strings.TrimSpace(s)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().String(), int(ap.Port()), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().String(), 0, true
	}
	if h, p, err := net.SplitHostPort(s); err == nil {
		if a, err := netip.ParseAddr(h); err == nil {
			if n, err := strconv.Atoi(p); err == nil {
				return a.Unmap().String(), n, true
			}
		}
	}
	return "", 0, false
}

// normState maps socket state spellings (ss's "ESTAB", /proc's "SYN_SENT") to one form.
func normState(s string) string {
	s = strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(s), "_", "-"))
	if s == "ESTAB" {
		return "ESTABLISHED"
	}
	return s
}
