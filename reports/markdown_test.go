package reports

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
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
