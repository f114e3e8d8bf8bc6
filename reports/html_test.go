package reports

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nfslab/nfslab/lab/event"
)

// stuckCell is a cell of the vulnerable kernel behind socket-LB: the reconnects go to the dead
// backend A and I/O stays stuck. Times are seconds after the cell's first record at 100 s.
func stuckCell() Cell {
	at := func(s float64) event.Mono { return event.Mono((100 + s) * 1e9) }
	step := func(s float64, st event.Step, ph event.Phase, msg string) event.Event {
		return event.Event{Mono: at(s), Kind: event.KindStep, Step: st, Phase: ph, Msg: msg}
	}
	conn := func(s float64, ph event.Phase, src, in, out, action string) event.Event {
		return event.Event{Mono: at(s), Kind: event.KindObserve, Phase: ph, Connect: &event.ConnectObs{Source: src, Input: in, Output: out, Action: action, Kernel: true, Comm: "kworker/u4:1"}}
	}
	sock := func(s float64, local, state string) event.Event {
		return event.Event{Mono: at(s), Kind: event.KindObserve, Phase: event.PhaseAfter, Sockets: &event.SocketsObs{Sockets: []event.Socket{
			{Local: local, Remote: "10.0.0.11:2049", State: state, Kernel: true},
		}}}
	}
	const kp, hook = "kprobe:kernel_connect", "socket-lb:connect4"
	return Cell{
		ID: "vulnerable-6.1/socket-lb/4.1/delete-pod", Kernel: "vulnerable-6.1", KernelRelease: "6.1.192-lab",
		Datapath: "socket-lb", NFS: "4.1", Fault: "delete-pod",
		Verdict: "bug-reproduced", Expected: "recovered", Pass: false,
		Reason: "I/O stuck 5.00s after backend B became ready; reconnects went to backend A 10.0.0.11", ReasonCode: "io-stuck-asked-old-backend",
		VIP: "10.96.0.50", BackendA: "10.0.0.11", BackendB: "10.0.0.12",
		MountAddrBefore: "10.96.0.50", MountAddrAfter: "10.96.0.50", ProbeTimeout: 5,
		ReconnectTargets: []string{"10.0.0.11"},
		AskedOld:         []string{"kprobe:kernel_connect was handed 10.0.0.11:2049", "socket-lb:connect4 was handed 10.0.0.11:2049"},
		KernelLog:        []string{"nfs: server 10.96.0.50 not responding, timed out"},
		Events: []event.Event{
			step(0, event.StepTopology, event.PhaseBefore, "node"),
			{Mono: at(1), Kind: event.KindObserve, Phase: event.PhaseBefore, Backend: &event.BackendObs{Name: "c0-pod-a", IP: "10.0.0.11", State: event.BackendServing}},
			step(1, event.StepBackendServing, event.PhaseBefore, "nfs-ganesha serving on 10.0.0.11:2049"),
			conn(1.1, event.PhaseBefore, kp, "10.96.0.50:2049", "", ""),
			conn(1.1, event.PhaseBefore, hook, "10.96.0.50:2049", "10.0.0.11:2049", "rewrite"),
			step(2, event.StepMounted, event.PhaseBefore, "mounted"),
			{Mono: at(2.3), Kind: event.KindObserve, Phase: event.PhaseBefore, Probe: &event.ProbeObs{Seq: 0, OK: true, Seconds: 0.25, StartNS: at(2.05), FinishNS: at(2.3)}},
			{Mono: at(2.9), Kind: event.KindObserve, Phase: event.PhaseAfter, Backend: &event.BackendObs{Name: "c0-pod-a", IP: "10.0.0.11", State: event.BackendKilled}},
			step(3, event.StepFaultInjected, event.PhaseAfter, "delete-pod: pod a (10.0.0.11) is gone"),
			{Mono: at(3.9), Kind: event.KindObserve, Phase: event.PhaseAfter, Service: &event.ServiceObs{Name: "nfslab/nfs", VIP: "10.96.0.50", Endpoints: []string{"10.0.0.12"}, Datapath: true}},
			step(4, event.StepBackendBReady, event.PhaseAfter, "nfs-ganesha serving on 10.0.0.12:2049"),
			conn(4.5, event.PhaseAfter, kp, "10.0.0.11:2049", "", ""),
			conn(4.5, event.PhaseAfter, hook, "10.0.0.11:2049", "10.0.0.11:2049", "non-vip"),
			sock(4.6, "10.0.0.1:800", "SYN-SENT"),
			conn(7.5, event.PhaseAfter, kp, "10.0.0.11:2049", "", ""),
			conn(7.5, event.PhaseAfter, hook, "10.0.0.11:2049", "10.0.0.11:2049", "non-vip"),
			sock(7.6, "10.0.0.1:801", "SYN-SENT"),
			{Mono: at(9.05), Kind: event.KindObserve, Phase: event.PhaseAfter, Probe: &event.ProbeObs{Seq: 1, Stuck: true, Seconds: 5, StartNS: at(4.05)}},
			step(9.05, event.StepIOStuck, event.PhaseAfter, "probe 1 stuck for 5 s"),
			{Mono: at(9.1), Kind: event.KindCellDone, Phase: event.PhaseAfter, Verdict: &event.VerdictRecord{Verdict: "bug-reproduced"}},
		},
	}
}

// domNode is an element of a parsed page, or a piece of text (name "#text").
type domNode struct {
	name string
	attr map[string]string
	kids []*domNode
	text string // of a #text node
}

// parseDOM parses an HTML page (as written by renderHTML, or as serialized by a browser) into
// a tree of elements.
func parseDOM(t *testing.T, r io.Reader) *domNode {
	t.Helper()
	d := xml.NewDecoder(r)
	d.Strict = false
	d.AutoClose = xml.HTMLAutoClose
	d.Entity = xml.HTMLEntity
	root := &domNode{name: "#document"}
	stack := []*domNode{root}
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("parse the page: %v", err)
		}
		top := stack[len(stack)-1]
		switch tok := tok.(type) {
		case xml.StartElement:
			n := &domNode{name: strings.ToLower(tok.Name.Local), attr: map[string]string{}}
			for _, a := range tok.Attr {
				name := a.Name.Local
				if a.Name.Space != "" {
					name = a.Name.Space + ":" + name
				}
				n.attr[name] = a.Value
			}
			top.kids = append(top.kids, n)
			stack = append(stack, n)
		case xml.EndElement:
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
		case xml.CharData:
			top.kids = append(top.kids, &domNode{name: "#text", text: string(tok)})
		}
	}
	return root
}

// all returns the elements below n (n excluded) for which keep is true, in document order.
func (n *domNode) all(keep func(*domNode) bool) []*domNode {
	var out []*domNode
	for _, k := range n.kids {
		if keep(k) {
			out = append(out, k)
		}
		out = append(out, k.all(keep)...)
	}
	return out
}

func (n *domNode) hasClass(c string) bool { return slices.Contains(strings.Fields(n.attr["class"]), c) }

// textContent is all the text inside n.
func (n *domNode) textContent() string {
	var b strings.Builder
	b.WriteString(n.text)
	for _, k := range n.kids {
		b.WriteString(k.textContent())
	}
	return b.String()
}

func elem(name string) func(*domNode) bool { return func(n *domNode) bool { return n.name == name } }

func elemClass(name, class string) func(*domNode) bool {
	return func(n *domNode) bool { return n.name == name && n.hasClass(class) }
}

// checkSelfContained fails when the page could load anything: a script, an external
// reference in an attribute or in CSS, or a missing Content-Security-Policy.
func checkSelfContained(t *testing.T, root *domNode) {
	t.Helper()
	csp := root.all(func(n *domNode) bool { return n.name == "meta" && n.attr["http-equiv"] == "Content-Security-Policy" })
	if len(csp) != 1 || !strings.Contains(csp[0].attr["content"], "default-src 'none'") {
		t.Error("no Content-Security-Policy meta forbidding every fetch")
	}
	for _, n := range root.all(func(*domNode) bool { return true }) {
		switch n.name {
		case "script", "link", "img", "iframe", "object", "embed", "image", "use", "audio", "video", "source", "base", "form":
			t.Errorf("page has a <%s> element", n.name)
		}
		for k, v := range n.attr {
			switch {
			case k == "href" || k == "xlink:href":
				if !strings.HasPrefix(v, "#") {
					t.Errorf("<%s %s=%q> points outside the page", n.name, k, v)
				}
			case k == "src" || k == "srcset" || k == "action" || k == "formaction" || k == "poster" || k == "data" || strings.HasPrefix(k, "on"):
				t.Errorf("<%s> has a %s attribute", n.name, k)
			case k == "style" && strings.Contains(v, "url("):
				t.Errorf("<%s> style loads %q", n.name, v)
			}
		}
	}
	for _, s := range root.all(elem("style")) {
		if css := s.textContent(); strings.Contains(css, "url(") || strings.Contains(css, "@import") {
			t.Error("the style sheet loads something")
		}
	}
}

// checkScale checks that every timed mark of a timeline sits at X = left + T/span·width.
func checkScale(t *testing.T, svg *domNode) {
	t.Helper()
	num := func(n *domNode, k string) float64 {
		t.Helper()
		v, err := strconv.ParseFloat(n.attr[k], 64)
		if err != nil {
			t.Fatalf("<%s> %s=%q: %v", n.name, k, n.attr[k], err)
		}
		return v
	}
	span, left, right := num(svg, "data-span"), num(svg, "data-plot-left"), num(svg, "data-plot-right")
	if span <= 0 || right <= left {
		t.Fatalf("timeline span %v, plot %v..%v", span, left, right)
	}
	timed := svg.all(func(n *domNode) bool { _, ok := n.attr["data-t"]; return ok })
	if len(timed) == 0 {
		t.Fatal("timeline has no timed marks")
	}
	for _, n := range timed {
		tt := num(n, "data-t")
		var x float64
		switch n.name {
		case "circle":
			x = num(n, "cx")
		case "line":
			x = num(n, "x1")
		case "rect":
			x = num(n, "x")
		case "g":
			lines := n.all(elem("line"))
			if len(lines) != 1 {
				t.Fatalf("milestone with %d lines", len(lines))
			}
			x = num(lines[0], "x1")
		default:
			t.Fatalf("timed <%s>", n.name)
		}
		if want := left + tt/span*(right-left); math.Abs(x-want) > 0.02 || x < left-0.01 || x > right+0.01 {
			t.Errorf("<%s class=%q> at t=%v s drawn at x=%v, want %.2f", n.name, n.attr["class"], tt, x, want)
		}
	}
}

// milestones lists a timeline's milestone labels and times in document order.
func milestones(svg *domNode) (labels []string, times []string) {
	for _, g := range svg.all(elemClass("g", "milestone")) {
		for _, tx := range g.all(elem("text")) {
			labels = append(labels, tx.textContent())
		}
		times = append(times, g.attr["data-t"])
	}
	return labels, times
}

// checkPage checks the structure every report.html has: self-contained, one verdict row and
// one section per cell, each timeline to scale.
func checkPage(t *testing.T, root *domNode, r *Result) (sections []*domNode) {
	t.Helper()
	checkSelfContained(t, root)
	if got := root.all(func(n *domNode) bool { return n.attr["id"] == "run-verdict" }); len(got) != 1 || got[0].textContent() != passText(r) {
		t.Errorf("run verdict badge %v, want %s", got, passText(r))
	}
	rows := root.all(func(n *domNode) bool { return n.name == "tr" && n.attr["data-cell"] != "" })
	if len(rows) != len(r.Cells) {
		t.Fatalf("%d verdict rows, want %d", len(rows), len(r.Cells))
	}
	for i, row := range rows {
		c := r.Cells[i]
		cell := func(class string) string {
			got := row.all(elemClass("td", class))
			if len(got) != 1 {
				t.Fatalf("row %d: %d <td class=%s>", i, len(got), class)
			}
			return strings.TrimSpace(got[0].textContent())
		}
		if row.attr["data-cell"] != c.ID || cell("verdict") != c.Verdict || cell("expected") != c.Expected || cell("recovery") != htmlRecovery(c) {
			t.Errorf("row %d: %s %s/%s/%s, want %s %s/%s/%s", i, row.attr["data-cell"], cell("verdict"), cell("expected"), cell("recovery"),
				c.ID, c.Verdict, c.Expected, htmlRecovery(c))
		}
	}
	sections = root.all(elem("section"))
	if len(sections) != len(r.Cells) {
		t.Fatalf("%d cell sections, want %d", len(sections), len(r.Cells))
	}
	for i, s := range sections {
		if s.attr["data-cell"] != r.Cells[i].ID {
			t.Errorf("section %d is %q, want %q", i, s.attr["data-cell"], r.Cells[i].ID)
		}
		svgs := s.all(elemClass("svg", "timeline"))
		if len(r.Cells[i].Events) == 0 {
			if len(svgs) != 0 {
				t.Errorf("%s: a timeline without events", r.Cells[i].ID)
			}
			continue
		}
		if len(svgs) != 1 {
			t.Fatalf("%s: %d timelines, want 1", r.Cells[i].ID, len(svgs))
		}
		checkScale(t, svgs[0])
	}
	return sections
}

func TestHTML(t *testing.T) {
	r := sample()
	r.Cells = append(r.Cells, stuckCell())
	r.Cells[1].Reason = `<script>alert("x")</script> & more`
	ev := r.Cells[0].Events
	r.Cells[0].Events = append(ev[:len(ev)-1:len(ev)-1], event.Event{Mono: 16.87e9, Kind: event.KindStep, Step: event.StepIORecovered}, ev[len(ev)-1])
	var b bytes.Buffer
	if err := renderHTML(&b, r); err != nil {
		t.Fatal(err)
	}
	sections := checkPage(t, parseDOM(t, bytes.NewReader(b.Bytes())), r)

	t.Run("recovered", func(t *testing.T) {
		labels, times := milestones(sections[0].all(elem("svg"))[0])
		if want := []string{"mounted", "backend B ready", "first good I/O"}; !slices.Equal(labels, want) {
			t.Errorf("milestones %q, want %q", labels, want)
		}
		// mounted 2.5 s and backend B 6 s after the first record at 10 s; the probe ended at 6.87 s
		if want := []string{"2.5", "6", "6.87"}; !slices.Equal(times, want) {
			t.Errorf("milestone times %q, want %q", times, want)
		}
	})
	t.Run("escaped", func(t *testing.T) {
		if !strings.Contains(sections[1].textContent(), `<script>alert("x")</script> & more`) {
			t.Error("the reason is not shown as text")
		}
		errs := sections[1].all(elemClass("p", "error"))
		if len(errs) != 1 || !strings.Contains(errs[0].textContent(), "a | pipe") {
			t.Error("the cell's error is not shown")
		}
	})
	t.Run("stuck", func(t *testing.T) {
		s := sections[2]
		svg := s.all(elem("svg"))[0]
		labels, times := milestones(svg)
		if want := []string{"backend A serving", "mounted", "fault", "backend B ready", "I/O stuck"}; !slices.Equal(labels, want) {
			t.Errorf("milestones %q, want %q", labels, want)
		}
		if want := []string{"1", "2", "3", "4", "9.05"}; !slices.Equal(times, want) {
			t.Errorf("milestone times %q, want %q", times, want)
		}
		var bands []string
		for _, r := range svg.all(elemClass("rect", "band")) {
			bands = append(bands, r.attr["class"]+"@"+r.attr["data-t"])
		}
		if want := []string{"band band-a@1", "band band-none@3", "band band-b@4"}; !slices.Equal(bands, want) {
			t.Errorf("backend bands %q, want %q", bands, want)
		}
		if n := len(svg.all(elemClass("rect", "probe-stuck"))); n != 1 {
			t.Errorf("%d stuck probes drawn, want 1", n)
		}
		// 2 kprobe + 2 hook records and 2 sockets after the fault go to A; before it, the
		// hook rewrote the VIP to A; and pod A served, then was killed.
		if n := len(svg.all(elemClass("circle", "addr-a"))); n != 9 {
			t.Errorf("%d marks at backend A, want 9", n)
		}
		if n := len(svg.all(elemClass("circle", "hollow"))); n != 3 {
			t.Errorf("%d hollow marks (SYN-SENT sockets, a killed pod), want 3", n)
		}
		if n := len(svg.all(elemClass("circle", "svc"))); n != 1 {
			t.Errorf("%d service endpoint marks, want 1", n)
		}
		rows := s.all(elemClass("table", "attempts"))[0].all(elem("tr"))[1:]
		if len(rows) != 6 {
			t.Fatalf("%d reconnect rows, want 6", len(rows))
		}
		for _, row := range rows {
			if !strings.Contains(row.textContent(), "10.0.0.11:2049 backend A") {
				t.Errorf("reconnect row %q does not go to backend A", row.textContent())
			}
		}
		if !strings.Contains(s.textContent(), "10.96.0.50 before the fault, 10.96.0.50 after") {
			t.Error("mount addresses missing")
		}
		asked := s.all(elemClass("dd", "asked-old"))
		if len(asked) != 1 || len(asked[0].all(elem("div"))) != 2 || !strings.Contains(asked[0].textContent(), "kprobe:kernel_connect was handed 10.0.0.11:2049") {
			t.Error("the evidence that SUNRPC asked for backend A is missing")
		}
	})
}

func TestHTMLEdgeCases(t *testing.T) {
	many := stuckCell()
	for i := range maxAttemptRows {
		many.Events = append(many.Events, event.Event{Mono: event.Mono(110e9 + int64(i)*1e6), Kind: event.KindObserve, Phase: event.PhaseAfter,
			Connect: &event.ConnectObs{Source: "kprobe:kernel_connect", Input: "10.0.0.11:2049", Kernel: true}})
	}
	tests := []struct {
		name string
		r    *Result
		want []string // in the page's text
	}{
		{"no cells", &Result{Scenario: "s", RunID: "r"}, []string{"No cells ran."}},
		{"not run", &Result{Scenario: "s", Cells: []Cell{{ID: "k/d/4.1/f", Verdict: "inconclusive", Expected: "recovered", Reason: "not run"}}},
			[]string{"No timeline recorded.", "No reconnect was recorded after the fault.", "none seen", "not seen after the fault"}},
		{"failed instruments", &Result{Scenario: "s", Cells: []Cell{{ID: "k/d/4.1/f", Verdict: "inconclusive", Expected: "recovered",
			InstrumentFailures: []string{"kprobe:kernel_connect: lost 12 records"}}}},
			[]string{"Instruments that failed or lost records", "kprobe:kernel_connect: lost 12 records"}},
		{"many reconnects", &Result{Scenario: "s", Cells: []Cell{many}}, []string{"… and 6 more records in result.json."}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := renderHTML(&b, tt.r); err != nil {
				t.Fatal(err)
			}
			root := parseDOM(t, &b)
			checkPage(t, root, tt.r)
			for _, w := range tt.want {
				if !strings.Contains(root.textContent(), w) {
					t.Errorf("page lacks %q", w)
				}
			}
		})
	}
}

func TestWriteHTML(t *testing.T) {
	dir := t.TempDir()
	if err := WriteHTML(dir, sample()); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, HTMLFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	checkPage(t, parseDOM(t, f), sample())
	if err := WriteHTML(dir, nil); err == nil {
		t.Error("WriteHTML(nil) succeeded")
	}
}
