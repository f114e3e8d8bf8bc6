package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Format is the version of the JSON document `nfslab doctor -o json` prints. Fields are only
// added within a version.
const Format = "nfslab-doctor/v1"

// Report is one `nfslab doctor` run: a kernel release given by hand, this machine, or a
// cluster (exactly one of the three).
type Report struct {
	Format  string         `json:"format"`
	Kernel  *KernelReport  `json:"kernel,omitempty"`
	Host    *HostReport    `json:"host,omitempty"`
	Cluster *ClusterReport `json:"cluster,omitempty"`
	Outcome Outcome        `json:"outcome"`
	Reason  string         `json:"reason"`
}

// KernelOnly is the report for a kernel release given by hand: affected unless fixed.
func KernelOnly(k KernelReport) Report {
	return Report{Format: Format, Kernel: &k, Outcome: outcomeFor(k.Verdict), Reason: fmt.Sprintf("kernel %s: %s", k.Verdict, k.Reason)}
}

// ForHost wraps a host report.
func ForHost(h HostReport) Report {
	return Report{Format: Format, Host: &h, Outcome: h.Outcome, Reason: h.Reason}
}

// ForCluster wraps a cluster report.
func ForCluster(c ClusterReport) Report {
	return Report{Format: Format, Cluster: &c, Outcome: c.Outcome, Reason: c.Reason}
}

// WriteJSON writes the report as one indented JSON document.
func WriteJSON(w io.Writer, r Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write doctor report: %w", err)
	}
	return nil
}

// WriteText writes the report for a person: what was looked at, then the outcome.
func WriteText(w io.Writer, r Report) error {
	p := &printer{w: w}
	switch {
	case r.Kernel != nil:
		p.kernel(*r.Kernel)
	case r.Host != nil:
		p.host(*r.Host)
	case r.Cluster != nil:
		p.cluster(*r.Cluster)
	}
	p.f("\n%s: %s\n", r.Outcome, r.Reason)
	return p.err
}

// printer remembers the first write error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) f(format string, a ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, a...)
	}
}

func (p *printer) table(header string, rows [][]string) {
	if p.err != nil {
		return
	}
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	p.err = tw.Flush()
}

func (p *printer) kernel(k KernelReport) {
	p.f("kernel %s — %s\n  %s: %s\n\n", k.Release, k.Read, k.Verdict, k.Reason)
	var rows [][]string
	for _, f := range k.Fixes {
		need := "required"
		if !f.Required {
			need = "reported"
		}
		rows = append(rows, []string{"  " + f.ID, f.Commit, need, string(f.Status), f.Reason})
	}
	if len(rows) > 0 {
		p.table("  FIX\tCOMMIT\tROLE\tSTATUS\tWHY", rows)
	}
	first := true
	for _, f := range k.Fixes {
		if ev := f.LabEvidence(); ev != "" {
			if first {
				p.f("\n  what nfslab's own cells show about each required fix:\n")
				first = false
			}
			p.f("  %s: %s\n", f.ID, ev)
		}
	}
}

func (p *printer) host(h HostReport) {
	p.kernel(h.Kernel)
	sa := h.SockAddr
	p.f("\nconnect4/sendmsg4/recvmsg4 programs")
	if sa.Root != "" {
		p.f(" (cgroup2 root %s)", sa.Root)
	}
	p.f(":\n")
	switch {
	case sa.Error != "":
		p.f("  could not be listed: %s\n", sa.Error)
	default:
		p.programs("effective at the root (they see the kernel's own NFS/SMB sockets)", sa.Effective)
		p.programs(fmt.Sprintf("attached below the root (%d cgroups walked; they see only their cgroup's processes)", sa.Walked), sa.Elsewhere)
		if sa.Partial != "" {
			p.f("  walk incomplete: %s\n", sa.Partial)
		}
	}
	p.f("\nwhat nfslab needs here:\n")
	var rows [][]string
	for _, c := range h.Checks {
		mark := "ok"
		if !c.OK {
			mark = "--"
		}
		rows = append(rows, []string{"  " + mark, c.Name, c.Detail})
	}
	p.table("  \tCHECK\tDETAIL", rows)
}

func (p *printer) programs(what string, ps []Program) {
	if len(ps) == 0 {
		p.f("  %s: none\n", what)
		return
	}
	p.f("  %s:\n", what)
	for _, pr := range ps {
		p.f("    %-8s id %-6d %-16s %s\n", pr.Hook, pr.ID, pr.Name, pr.Cgroup)
	}
}

func (p *printer) cluster(c ClusterReport) {
	p.f("cluster %s\n", c.Server)
	s := c.SocketLB
	p.f("socket-LB: %s — %s", s.State, s.Reason)
	if s.Source != "" {
		p.f(" (ConfigMap %s)", s.Source)
	}
	p.f("\n")
	for _, n := range s.Notes {
		p.f("  note: %s\n", n)
	}
	p.f("\n")
	var rows [][]string
	for _, n := range c.Nodes {
		rows = append(rows, []string{n.Name, n.OSImage, n.Kernel.Release, string(n.Kernel.Verdict), string(n.Outcome), n.Reason})
	}
	p.table("NODE\tOS\tKERNEL\tKERNEL VERDICT\tAT RISK\tWHY", rows)
}
