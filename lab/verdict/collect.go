package verdict

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/nfslab/nfslab/lab/event"
)

// Collect walks one cell's timeline (that cell's events, in the order they were emitted) and
// reduces it to Evidence. port is the NFS port the node mounted.
//
// An event is after the fault when its Phase says so, or when it has no Phase and comes after
// the fault-injected step. The service's VIP and backends come from the cluster's service
// records (event.ServiceObs): the old backend is the one the service listed before the fault,
// the new one the first other backend it listed after the fault. "The datapath pointed at the
// new backend" is an observed fact only: the time of the first record of the datapath read back
// forwarding to it (ServiceObs.Datapath). A watched EndpointSlice update is not: without a
// read-back record, no socket is evidence.
//
// Reconnect targets are, in first-seen order: the remote IPs of the kernel's sockets to the NFS
// port that are connection attempts made after the fault (SYN-SENT, or ESTABLISHED connections
// not already open before the fault); and the addresses handed to the kernel's own connects
// after the fault, with the socket-LB hook's output. A process's own connect (a record without
// Kernel) is neither a reconnect nor evidence. Of these, evidence that the kernel client itself
// asked for the old backend (Evidence.AskedOld) is: a kernel connect whose input is the old
// backend's IP (the address handed to kernel_connect(), or received by the socket-LB hook on a
// kernel socket), named with its caller; and a kernel socket to the old backend that is new in a
// snapshot whose previous snapshot was read after the datapath was read back pointing at the
// new backend. A backend that served again at the old backend's IP after the fault (a container
// restarted in place) makes that address alive: nothing aimed at it is evidence. The socket-LB
// hook's counter of non-VIP connects counts every process's connects: it is reported as a
// reconnect target, never evidence.
func Collect(port int, events []event.Event) Evidence {
	svc := services(events)
	ev := Evidence{VIP: svc.vip, OldBackend: svc.old, NewBackend: svc.new}
	if ev.NewBackend == "" && svc.oldServesAgain {
		ev.NewBackend = ev.OldBackend
	}
	var (
		faultSeen  bool
		bReady     event.Mono
		last       event.Mono
		haveLast   bool
		preFault   = map[string]bool{} // local→remote of connections open before the fault
		prevSocks  = map[string]bool{} // local→remote in the previous socket snapshot
		prevSnap   event.Mono
		targets    = map[string]bool{}
		asked      = map[string]bool{}
		nonVIPPrev uint64
	)
	addTarget := func(ip string) {
		if ip != "" && !targets[ip] {
			targets[ip] = true
			ev.ReconnectTargets = append(ev.ReconnectTargets, ip)
		}
	}
	askedOld := func(what string) {
		if !asked[what] {
			asked[what] = true
			ev.AskedOld = append(ev.AskedOld, what)
		}
	}
	// A backend that kept its IP (its container restarted in place) is alive again: asking
	// for its address is no sign of the bug, whether or not its endpoint was seen to leave.
	isOld := func(ip string) bool { return ip != "" && ip == ev.OldBackend && !svc.oldServesAgain }
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
					ev.SetupError, ev.SetupStep, ev.SetupErrno = msg, e.Step, e.Errno
				}
			case ev.FailoverError == "":
				ev.FailoverError, ev.FailoverStep = msg, e.Step
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
				// A snapshot record carries the time its read began, so the previous snapshot was
				// read no earlier than the previous record.
				since := max(e.Sockets.SinceNS, prevSnap)
				cur := map[string]bool{}
				for _, s := range e.Sockets.Sockets {
					ip, p, ok := splitHostPort(s.Remote)
					if !ok || p != port {
						continue
					}
					state := normState(s.State)
					conn := s.Local + "→" + s.Remote
					cur[conn] = true
					if !after {
						if state == "ESTABLISHED" {
							preFault[conn] = true
						}
						continue
					}
					if state != "SYN-SENT" && (state != "ESTABLISHED" || preFault[conn]) {
						continue
					}
					addTarget(ip)
					if isOld(ip) && !prevSocks[conn] && svc.pointedNew != 0 && since >= svc.pointedNew {
						askedOld(fmt.Sprintf("a new kernel socket to %s after the datapath pointed at %s", s.Remote, ev.NewBackend))
					}
				}
				prevSocks, prevSnap = cur, e.Mono
			case e.Connect != nil && after && e.Connect.Kernel:
				c := e.Connect
				in, p, ok := splitHostPort(c.Input)
				if !ok || (p != 0 && p != port) {
					continue
				}
				addTarget(in)
				if out, _, ok := splitHostPort(c.Output); ok {
					addTarget(out)
				}
				if isOld(in) {
					askedOld(fmt.Sprintf("%s was handed %s by %s", c.Source, c.Input, c.Caller()))
				}
			case e.Hook != nil:
				h := e.Hook
				if after && h.NonVIP > nonVIPPrev {
					if ip, _, ok := splitHostPort(h.LastNonVIPDest); ok {
						addTarget(ip)
					}
				}
				nonVIPPrev = h.NonVIP // a smaller value means the program was reloaded
			case e.Instr != nil:
				ev.InstrumentFailures = append(ev.InstrumentFailures, e.Instr.String())
			}
		}
	}
	if ev.BackendBReady && haveLast {
		ev.SinceBReady = max(last.Sub(bReady), 0)
	}
	return ev
}

// serviceFacts are the service's addresses as the cluster reported them.
type serviceFacts struct {
	vip, old, new string
	pointedNew    event.Mono // when the datapath was read back pointing at the new backend (0: never)
	// oldServesAgain: a backend served at the old backend's IP after the fault (its container
	// restarted in place, the pod kept its IP).
	oldServesAgain bool
}

// services reads the cluster's service records: the VIP, the backend listed before the fault,
// the first other backend listed after it, and when the datapath was read back pointing at it.
// Records of the datapath read back are preferred over watched ones, when there are any; only
// they set pointedNew.
func services(events []event.Event) serviceFacts {
	var f serviceFacts
	datapathRecords := slices.ContainsFunc(events, func(e event.Event) bool { return e.Service != nil && e.Service.Datapath })
	faultSeen := false
	dropped := false // the old backend left the endpoints after the fault
	found := false   // the new backend was found
	var servedAfter []string
	for _, e := range events {
		if e.Kind == event.KindStep && e.Step == event.StepFaultInjected {
			faultSeen = true
		}
		after := e.Phase == event.PhaseAfter || (e.Phase == "" && faultSeen)
		if b := e.Backend; b != nil && after && b.State == event.BackendServing {
			servedAfter = append(servedAfter, b.IP)
		}
		s := e.Service
		if s == nil {
			continue
		}
		if f.vip == "" {
			f.vip = s.VIP
		}
		if datapathRecords && !s.Datapath {
			continue
		}
		switch {
		case !after && len(s.Endpoints) > 0:
			f.old = s.Endpoints[0]
		case after && !found && len(s.Endpoints) > 0 && (!slices.Contains(s.Endpoints, f.old) || (dropped && slices.Equal(s.Endpoints, []string{f.old}))):
			// Back after having left, the old address is a new backend with the same IP (a
			// container restarted in place).
			f.new, found = s.Endpoints[0], true
			if s.Datapath {
				f.pointedNew = e.Mono
			}
		case after && !slices.Contains(s.Endpoints, f.old):
			dropped = true
		}
	}
	f.oldServesAgain = f.old != "" && (f.new == f.old || slices.Contains(servedAfter, f.old))
	return f
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
