package lab

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab/event"
	"github.com/nfslab/nfslab/lab/tty"
)

// TestProgress: step lines say how long the step took (from the agent's clock), colours only
// when the style allows them.
func TestProgress(t *testing.T) {
	for _, style := range []tty.Style{{}, {Terminal: true, Color: true}} {
		var buf bytes.Buffer
		p := newProgress(&buf, style)
		at := event.Mono(5 * time.Second)
		p.event("c1", event.Event{Kind: event.KindStep, Step: event.StepMounted, Msg: "mounted", Mono: at})
		p.event("c1", event.Event{Kind: event.KindStep, Step: event.StepBaselineIO, Msg: "io ok", Mono: at + event.Mono(1250*time.Millisecond)})
		p.event("c2", event.Event{Kind: event.KindStep, Step: event.StepMounted, Msg: "mounted", Mono: at + event.Mono(time.Second)})
		p.event("c1", event.Event{Kind: event.KindError, Step: event.StepFaultInjected, Msg: "boom"})
		out := buf.String()
		plain := tty.Strip(out)
		lines := strings.Split(strings.TrimSpace(plain), "\n")
		if len(lines) != 4 {
			t.Fatalf("%d lines:\n%s", len(lines), plain)
		}
		if strings.Contains(lines[0], " s)") || !strings.HasSuffix(lines[1], "io ok (1.25 s)") || strings.Contains(lines[2], " s)") {
			t.Errorf("step durations wrong (the first step of each cell has none):\n%s", plain)
		}
		if !strings.Contains(lines[3], "c1: FAILED "+string(event.StepFaultInjected)+": boom") {
			t.Errorf("error line %q", lines[3])
		}
		if colored := out != plain; colored != style.Color {
			t.Errorf("style %+v: coloured output = %v:\n%q", style, colored, out)
		}
	}
}
