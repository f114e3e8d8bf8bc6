package reports

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/nfslab/nfslab/lab/event"
)

// TestMarkdownForGitHub checks what makes summary.md fit for $GITHUB_STEP_SUMMARY: long parts
// folded in <details> blocks that GitHub renders (a blank line after </summary>, every block
// closed), and a bounded kernel log.
func TestMarkdownForGitHub(t *testing.T) {
	c := stuckCell()
	c.KernelLog = nil
	for i := range 50 {
		c.KernelLog = append(c.KernelLog, fmt.Sprintf("nfs: server 10.96.0.50 not responding, timed out (%d)", i))
	}
	r := &Result{Scenario: "fidelity", RunID: "r", Cells: []Cell{c}}
	var b bytes.Buffer
	markdown(&b, r)
	s := b.String()
	for _, want := range []string{
		"| vulnerable-6.1 (6.1.192-lab) | socket-lb | 4.1 | delete-pod | ✘ bug-reproduced | recovered | — | 10.96.0.50 → 10.96.0.50 | 10.0.0.11 |",
		"| kprobe:kernel_connect | the kernel | 10.0.0.11:2049 | — | — | 2 |",
		"<details><summary>Timeline (7 steps)</summary>\n\n| +s | step |",
		"| 9.05 | io-stuck |",
		"<details><summary>Kernel log (50 lines)</summary>\n\nThe last 40 lines; result.json has all of them.\n\n```\nnfs: server 10.96.0.50 not responding, timed out (10)\n",
		"timed out (49)\n```\n\n</details>",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("summary.md lacks %q", want)
		}
	}
	if strings.Contains(s, "timed out (9)\n") {
		t.Error("summary.md quotes more than the last 40 kernel log lines")
	}
	if open, closed := strings.Count(s, "<details>"), strings.Count(s, "</details>"); open != 2 || closed != 2 {
		t.Errorf("%d <details> and %d </details>, want 2 of each", open, closed)
	}
	if n := strings.Count(s, "</summary>\n\n"); n != 2 {
		t.Errorf("%d folded blocks start with a blank line, want 2 (GitHub renders Markdown inside only then)", n)
	}
	if t.Failed() {
		t.Log(s)
	}
}

func TestDatapathText(t *testing.T) {
	for _, tt := range []struct{ cluster, datapath, cilium, want string }{
		{"", "socket-lb", "", "socket-lb"},
		{"netns", "socket-lb", "", "socket-lb"},
		{"kind", "socket-lb", "", "kind: socket-lb"},
		{"kind", "cilium", "v1.19.7", "kind: cilium@v1.19.7"},
	} {
		if got := datapathText(Cell{Cluster: tt.cluster, Datapath: tt.datapath, Cilium: tt.cilium}); got != tt.want {
			t.Errorf("datapathText(%q, %q, %q) = %q, want %q", tt.cluster, tt.datapath, tt.cilium, got, tt.want)
		}
	}
}

// TestMarkdownReasonCode: each cell says the reason code its pass was computed from, and a lab
// failure says that it never counts as an expected verdict.
func TestMarkdownReasonCode(t *testing.T) {
	cells := []Cell{
		{ID: "a", Verdict: "failed", Expected: "failed", ExpectedReason: "mount-refused: EINVAL", ReasonCode: "mount-refused: EINVAL", Pass: true},
		{ID: "b", Verdict: "failed", Expected: "failed", ExpectedReason: "mount-refused: EINVAL", ReasonCode: "setup-error: backend-a-serving"},
	}
	var b bytes.Buffer
	markdown(&b, &Result{Scenario: "nfs-versions", Cells: cells})
	for _, want := range []string{
		"**failed** (expected failed for `mount-refused: EINVAL`)",
		"Reason code: `mount-refused: EINVAL`\n",
		"Reason code: `setup-error: backend-a-serving` — the lab itself failed in this cell, which never counts as an expected verdict.",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary.md lacks %q:\n%s", want, b.String())
		}
	}
}

// TestCiliumFacts: a Cilium cell's report says which Cilium it ran on and what Cilium's own
// service table held for the VIP on each side of the fault; a cell without Cilium says nothing.
func TestCiliumFacts(t *testing.T) {
	svc := func(ph event.Phase, cilium string) event.Event {
		return event.Event{Kind: event.KindObserve, Phase: ph, Service: &event.ServiceObs{VIP: "10.96.234.207", Cilium: cilium}}
	}
	cluster := event.Event{Kind: event.KindObserve, Phase: event.PhaseBefore, Cluster: &event.ClusterObs{Cilium: &event.CiliumObs{
		Version: "v1.19.7", Datapath: "cilium", ReadySeconds: 964.6,
		KubeProxyReplacement: "True   [eth0    172.18.0.2 (Direct Routing)]",
		RootPrograms:         "effective at /sys/fs/cgroup: CGroupInet4Connect cil_sock4_connect",
	}}}
	tests := []struct {
		name   string
		events []event.Event
		want   []ciliumFact
	}{
		{"no Cilium", []event.Event{svc(event.PhaseBefore, ""), {Kind: event.KindObserve, Cluster: &event.ClusterObs{ProxyMode: "iptables"}}}, nil},
		{"a Cilium cell", []event.Event{cluster, svc(event.PhaseBefore, ""), svc(event.PhaseBefore, "10.244.0.26:2049 (active)"),
			svc(event.PhaseAfter, ""), svc(event.PhaseAfter, "10.244.0.141:2049 (active)")},
			[]ciliumFact{
				{"Cilium", "v1.19.7 (cilium), its datapath ready 965 s after the apply; KubeProxyReplacement: True [eth0 172.18.0.2 (Direct Routing)]; effective at /sys/fs/cgroup: CGroupInet4Connect cil_sock4_connect"},
				{"Cilium's service table for the VIP", "10.244.0.26:2049 (active) before the fault, 10.244.0.141:2049 (active) after"},
			}},
		{"never read after the fault", []event.Event{svc(event.PhaseBefore, "10.244.0.26:2049 (active)")},
			[]ciliumFact{{"Cilium's service table for the VIP", "10.244.0.26:2049 (active) before the fault, not read after"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ciliumFacts(tt.events); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ciliumFacts = %q, want %q", got, tt.want)
			}
		})
	}
}
