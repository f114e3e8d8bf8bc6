package reports

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/nfslab/nfslab/lab/event"
)

// Geometry of a cell's timeline, in SVG user units (the picture scales with the page).
const (
	tlWidth     = 960.0
	tlPlotLeft  = 150.0 // lane labels to the left of it
	tlPlotRight = 940.0
	tlLabelRow  = 15.0 // height of a row of milestone labels
	tlLaneH     = 26.0
	tlAxisH     = 26.0
	tlCharW     = 6.4 // rough width of a character of the labels, to keep them apart
)

// laneNames are the lanes of a timeline, top to bottom.
func laneNames() []string {
	return []string{"backend", "I/O probes", "kernel_connect()", "socket-LB hook", "kernel sockets"}
}

// timelineSVG is one cell's timeline, laid out: x is proportional to the time since the cell's
// first record (X = PlotLeft + T/Span·PlotWidth). Every positioned element keeps its time T
// (seconds) so that the scale can be checked.
type timelineSVG struct {
	Width, Height, Span float64
	PlotLeft, PlotRight float64
	PlotWidth           float64
	LanesTop, AxisY     float64
	Lanes               []tlLane
	Ticks               []tlTick
	Bands               []tlBand
	Milestones          []tlMilestone
	Probes              []tlBar
	Dots                []tlDot
	Empty               bool
}

type tlLane struct {
	Label string
	Y, H  float64 // top and height
	Mid   float64
}

type tlTick struct {
	X, T  float64
	Label string
}

// tlBand is a stretch of the backend lane: A serving, no backend, B serving.
type tlBand struct {
	X, W, T, Y, H       float64
	Class, Label, Title string
	TextX, TextY        float64
}

// tlMilestone is a step of the cell drawn as a vertical line across the lanes.
type tlMilestone struct {
	X, T         float64
	Label, Class string
	Title        string
	LabelY, Y2   float64
	// AlignEnd puts the label left of the line: it would not fit right of it.
	AlignEnd bool
}

// tlBar is an I/O probe from its start to its end (or as far as it ran, when stuck).
type tlBar struct {
	X, W, T, Y, H float64
	Class, Title  string
}

// tlDot is one record on a lane: a pod's state, the service's endpoints (small, at the foot of
// the backend lane), a connect a tracer saw, a kernel socket.
type tlDot struct {
	X, Y, T       float64
	Class, Title  string
	Hollow, Small bool
}

// milestone says whether an event is drawn as a milestone, and how: the steps that mark the
// failover, and every error.
func milestone(e event.Event) (label, class string, ok bool) {
	if e.Kind == event.KindError {
		return strings.TrimSpace("error " + string(e.Step)), "ms-stuck", true
	}
	if e.Kind != event.KindStep {
		return "", "", false
	}
	switch e.Step {
	case event.StepBackendServing:
		return "backend A serving", "ms-a", true
	case event.StepMounted:
		return "mounted", "ms-setup", true
	case event.StepFaultInjected:
		return "fault", "ms-fault", true
	case event.StepNoEndpoints:
		return "endpoints back", "ms-fault", true
	case event.StepBackendBReady:
		return "backend B ready", "ms-b", true
	case event.StepIORecovered:
		return "first good I/O", "ms-ok", true
	case event.StepIOStuck:
		return "I/O stuck", "ms-stuck", true
	case event.StepDeadline:
		return "deadline", "ms-stuck", true
	}
	return "", "", false
}

// span returns the first and last time of a cell's records, probe starts and ends included.
func span(events []event.Event) (first, last event.Mono) {
	for i, e := range events {
		lo, hi := e.Mono, e.Mono
		if p := e.Probe; p != nil {
			if p.StartNS > 0 {
				lo = min(lo, p.StartNS)
			}
			hi = max(hi, p.FinishNS)
		}
		if i == 0 {
			first, last = lo, hi
			continue
		}
		first, last = min(first, lo), max(last, hi)
	}
	return first, last
}

func newTimeline(events []event.Event, roles addrRoles) timelineSVG {
	first, last := span(events)
	tl := timelineSVG{
		Width: tlWidth, PlotLeft: tlPlotLeft, PlotRight: tlPlotRight, PlotWidth: tlPlotRight - tlPlotLeft,
		Span: max(last.Sub(first).Seconds(), 0.001),
	}
	if len(events) == 0 {
		tl.Empty = true
		return tl
	}
	t := func(m event.Mono) float64 { return m.Sub(first).Seconds() }
	x := func(sec float64) float64 {
		return round2(tlPlotLeft + sec/tl.Span*(tlPlotRight-tlPlotLeft))
	}

	// Milestone labels go in rows above the lanes, each in the first row where it does not
	// run into the label before it.
	var rowEnd []float64
	for _, e := range events {
		label, class, ok := milestone(e)
		if !ok {
			continue
		}
		at := t(e.Mono)
		x0 := x(at)
		w := float64(len([]rune(label)))*tlCharW + 8
		from, alignEnd := x0, x0+w > tlWidth
		if alignEnd {
			from = x0 - w
		}
		row := 0
		for row < len(rowEnd) && rowEnd[row] > from {
			row++
		}
		if row == len(rowEnd) {
			rowEnd = append(rowEnd, 0)
		}
		rowEnd[row] = from + w
		tl.Milestones = append(tl.Milestones, tlMilestone{
			X: x0, T: round3(at), Label: label, Class: class, Title: fmt.Sprintf("+%.3f s %s %s: %s", at, e.Kind, e.Step, e.Msg),
			LabelY: float64(row+1) * tlLabelRow, AlignEnd: alignEnd,
		})
	}
	top := float64(max(len(rowEnd), 1))*tlLabelRow + 6
	tl.LanesTop = top
	for i, name := range laneNames() {
		y := top + float64(i)*tlLaneH
		tl.Lanes = append(tl.Lanes, tlLane{Label: name, Y: y, H: tlLaneH, Mid: y + tlLaneH/2})
	}
	tl.AxisY = top + float64(len(tl.Lanes))*tlLaneH
	tl.Height = tl.AxisY + tlAxisH
	for i := range tl.Milestones {
		tl.Milestones[i].Y2 = tl.AxisY
	}

	tl.Bands = backendBands(events, t, x, tl.Lanes[0], t(last))
	backendLane, probeLane, kprobeLane, hookLane, sockLane := tl.Lanes[0], tl.Lanes[1], tl.Lanes[2], tl.Lanes[3], tl.Lanes[4]
	for _, e := range events {
		switch {
		case e.Probe != nil:
			tl.Probes = append(tl.Probes, probeBar(e, t, x, probeLane))
		case e.Connect != nil:
			c := e.Connect
			lane := kprobeLane
			if !strings.HasPrefix(c.Source, "kprobe:") {
				lane = hookLane
			}
			to := c.Output
			if to == "" {
				to = c.Input
			}
			role := roles.of(to)
			title := fmt.Sprintf("+%.3f s %s: handed %s", t(e.Mono), c.Source, c.Input)
			if c.Output != "" {
				title += ", returned " + c.Output
			}
			if c.Action != "" {
				title += " (" + c.Action + ")"
			}
			title += " by " + c.Caller()
			title += " → " + or(role.Role, "?")
			tl.Dots = append(tl.Dots, tlDot{X: x(t(e.Mono)), Y: lane.Mid, T: round3(t(e.Mono)), Class: role.Class, Title: title, Hollow: c.Action == "refuse"})
		case e.Backend != nil:
			bk := e.Backend
			tl.Dots = append(tl.Dots, tlDot{
				X: x(t(e.Mono)), Y: backendLane.Mid, T: round3(t(e.Mono)), Class: roles.of(bk.IP).Class,
				Title:  fmt.Sprintf("+%.3f s pod %s (%s) %s", t(e.Mono), bk.Name, bk.IP, bk.State),
				Hollow: bk.State != event.BackendServing,
			})
		case e.Service != nil:
			sv := e.Service
			class, to := "none", "no endpoint"
			if len(sv.Endpoints) > 0 {
				class, to = roles.of(sv.Endpoints[0]).Class, strings.Join(sv.Endpoints, ", ")
			}
			tl.Dots = append(tl.Dots, tlDot{
				X: x(t(e.Mono)), Y: backendLane.Y + backendLane.H - 3, T: round3(t(e.Mono)), Class: class + " svc",
				Title: fmt.Sprintf("+%.3f s service %s %s → %s", t(e.Mono), sv.Name, sv.VIP, to), Hollow: len(sv.Endpoints) == 0, Small: true,
			})
		case e.Sockets != nil:
			for _, s := range e.Sockets.Sockets {
				role := roles.of(s.Remote)
				tl.Dots = append(tl.Dots, tlDot{
					X: x(t(e.Mono)), Y: sockLane.Mid, T: round3(t(e.Mono)), Class: role.Class,
					Title:  fmt.Sprintf("+%.3f s kernel socket %s → %s %s (%s)", t(e.Mono), s.Local, s.Remote, s.State, or(role.Role, "?")),
					Hollow: s.State != "ESTABLISHED",
				})
			}
		}
	}
	tl.Ticks = ticks(tl.Span, x)
	return tl
}

// backendBands draws who serves: backend A from its start to the fault, nobody until backend
// B is ready, then backend B to the end of the cell.
func backendBands(events []event.Event, t func(event.Mono) float64, x func(float64) float64, lane tlLane, end float64) []tlBand {
	at := map[event.Step]float64{}
	for _, e := range events {
		if e.Kind == event.KindStep {
			if _, seen := at[e.Step]; !seen {
				at[e.Step] = t(e.Mono)
			}
		}
	}
	var bands []tlBand
	add := func(from, to float64, class, label string) {
		x0, x1 := x(from), x(to)
		b := tlBand{
			X: x0, W: round2(max(x1-x0, 1)), T: round3(from), Y: lane.Y + 4, H: lane.H - 8, Class: class, Label: label,
			Title: fmt.Sprintf("%s from +%.3f s to +%.3f s", label, from, to),
		}
		if float64(len(label))*tlCharW < b.W-6 {
			b.TextX, b.TextY = x0+4, lane.Mid+4
		} else {
			b.Label = "" // does not fit: the title still says it
		}
		bands = append(bands, b)
	}
	aStart, hasA := at[event.StepBackendServing]
	fault, hasFault := at[event.StepFaultInjected]
	bReady, hasB := at[event.StepBackendBReady]
	switch {
	case hasA && hasFault:
		add(aStart, fault, "band-a", "A serving")
	case hasA:
		add(aStart, end, "band-a", "A serving")
	}
	switch {
	case hasFault && hasB:
		add(fault, bReady, "band-none", "no backend")
	case hasFault:
		add(fault, end, "band-none", "no backend")
	}
	if hasB {
		add(bReady, end, "band-b", "B serving")
	}
	return bands
}

func probeBar(e event.Event, t func(event.Mono) float64, x func(float64) float64, lane tlLane) tlBar {
	p := e.Probe
	start := p.StartNS
	if start == 0 {
		start = e.Mono - event.Mono(p.Seconds*1e9)
	}
	from := t(start)
	to := from + p.Seconds
	if p.FinishNS > 0 {
		to = t(p.FinishNS)
	}
	class, what := "probe-ok", "ok"
	switch {
	case p.Stuck:
		class, what = "probe-stuck", "stuck"
	case !p.OK:
		class, what = "probe-err", "failed: "+p.Error
	}
	x0 := x(from)
	return tlBar{
		X: x0, W: round2(max(x(to)-x0, 2)), T: round3(from), Y: lane.Y + 6, H: lane.H - 12, Class: class,
		Title: fmt.Sprintf("probe %d from +%.3f s, %.3f s: %s", p.Seq, from, p.Seconds, what),
	}
}

// ticks puts at most about ten labelled ticks on the time axis, at a round step (1, 2 or 5
// times a power of ten seconds).
func ticks(spanSec float64, x func(float64) float64) []tlTick {
	raw := spanSec / 10
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * mag
	for _, m := range []float64{1, 2, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []tlTick
	for i := 0; i <= 11; i++ {
		v := float64(i) * step
		if v > spanSec*(1+1e-9) {
			break
		}
		out = append(out, tlTick{X: x(v), T: round3(v), Label: strconv.FormatFloat(v, 'g', 4, 64) + " s"})
	}
	return out
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }
func round3(f float64) float64 { return math.Round(f*1000) / 1000 }
