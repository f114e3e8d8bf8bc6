// Package doctor answers three questions without starting a VM: does a kernel release carry
// the fixes for BPF sock_addr hooks rewriting addresses the kernel owns (cilium/cilium#21541),
// is this machine at risk and can the lab run here, and which nodes of a Kubernetes cluster
// are at risk. The kernel facts live in fixes.yaml, one sourced row per fix and kernel line.
package doctor

import (
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

//go:embed fixes.yaml
var fixesYAML []byte

// Fix is one upstream commit the table follows.
type Fix struct {
	ID     string `json:"id"`
	Commit string `json:"commit"`
	Title  string `json:"title"`
	Covers string `json:"covers"`
	// Required fixes decide a kernel's verdict; the others are reported beside it.
	Required bool `json:"required"`
	// A required fix says what nfslab's own cells show about it, in one of two ways.
	// ShownBy names the cell that hangs without it, as "scenario: cell ID" (the cell runs on a
	// kernel that lacks it, under a socket-LB).
	ShownBy string `json:"shown_by,omitempty"`
	// NotShown says that no cell hangs without it, which cells were run to ask, and why it is
	// listed as required anyway.
	NotShown string `json:"not_shown,omitempty"`
}

// LabEvidence is the fix's line about what the lab shows: which cell hangs without it, or why
// it is required though no cell does; "" for a fix the verdict does not depend on.
func (f Fix) LabEvidence() string {
	switch {
	case f.ShownBy != "":
		scen, cell, _ := strings.Cut(f.ShownBy, ":")
		return fmt.Sprintf("hangs without it: nfslab run --scenario %s --cell %s", strings.TrimSpace(scen), strings.TrimSpace(cell))
	case f.NotShown != "":
		return "no lab cell hangs without it: " + f.NotShown
	}
	return ""
}

// LineKind is how a kernel line numbers its releases.
type LineKind string

// Kinds of kernel line.
const (
	LineMainline LineKind = "mainline"
	LineStable   LineKind = "stable"
	LineDebian   LineKind = "debian"
	LineUbuntu   LineKind = "ubuntu"
	LineRHEL     LineKind = "rhel"
)

// Row says which release of a line first carries a fix, and where that was read.
type Row struct {
	Fix   string `json:"fix"`
	First string `json:"first"`
	// RCs, for a mainline row whose First is a final release: "none" if no release candidate
	// carried the fix, "unknown" if that was not checked.
	RCs    string `json:"rcs,omitempty"`
	Source string `json:"source"`

	first Release
}

// Line is a kernel line: mainline, a stable series, or a distribution's kernel.
type Line struct {
	Name string   `json:"line"`
	Kind LineKind `json:"kind"`
	// Base is the upstream X.Y a distribution line is built on.
	Base string `json:"base,omitempty"`
	// EOL is the last release of an ended stable series, and where that was read.
	EOL       string `json:"eol,omitempty"`
	EOLSource string `json:"eol_source,omitempty"`
	Note      string `json:"note,omitempty"`
	Rows      []Row  `json:"rows"`

	major, minor int
	eol          Release
}

// Table is the fix table.
type Table struct {
	Fixes []Fix  `json:"fixes"`
	Lines []Line `json:"lines"`
}

// LoadTable returns the table embedded in nfslab, validated.
func LoadTable() (*Table, error) {
	return ParseTable(fixesYAML)
}

// ParseTable decodes and validates a fix table; every problem is reported at once.
func ParseTable(data []byte) (*Table, error) {
	var t Table
	if err := yaml.UnmarshalStrict(data, &t); err != nil {
		return nil, fmt.Errorf("fix table: %w", err)
	}
	if err := t.validate(); err != nil {
		return nil, err
	}
	return &t, nil
}

func (t *Table) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("fix table: "+format, a...)) }
	fixes := map[string]bool{}
	for i, f := range t.Fixes {
		if f.ID == "" || f.Commit == "" || f.Title == "" {
			bad("fixes[%d]: id, commit and title are required", i)
		}
		if fixes[f.ID] {
			bad("fixes[%d]: duplicate id %q", i, f.ID)
		}
		if f.Required && (f.ShownBy == "") == (f.NotShown == "") {
			bad("fixes[%d] (%s): a required fix needs exactly one of shown_by (the lab cell that hangs without it) and not_shown (why it is required though no cell hangs)", i, f.ID)
		}
		if scen, cell, ok := strings.Cut(f.ShownBy, ":"); f.ShownBy != "" && (!ok || strings.TrimSpace(scen) == "" || strings.Count(strings.TrimSpace(cell), "/") < 3) {
			bad("fixes[%d] (%s): shown_by %q: want \"scenario: kernel/datapath/nfs/fault\"", i, f.ID, f.ShownBy)
		}
		fixes[f.ID] = true
	}
	names := map[string]bool{}
	mainline := map[string]bool{}
	for i := range t.Lines {
		l := &t.Lines[i]
		where := fmt.Sprintf("lines[%d] (%s)", i, l.Name)
		if names[l.Name] {
			bad("%s: duplicate line", where)
		}
		names[l.Name] = true
		if err := l.parseBase(); err != nil {
			bad("%s: %v", where, err)
			continue
		}
		seen := map[string]bool{}
		for j := range l.Rows {
			r := &l.Rows[j]
			at := fmt.Sprintf("%s.rows[%d]", where, j)
			if !fixes[r.Fix] {
				bad("%s: unknown fix %q", at, r.Fix)
			}
			if seen[r.Fix] {
				bad("%s: second row for %q", at, r.Fix)
			}
			seen[r.Fix] = true
			if strings.TrimSpace(r.Source) == "" {
				bad("%s: source is required", at)
			}
			if err := l.parseFirst(r); err != nil {
				bad("%s: first %q: %v", at, r.First, err)
			}
			if l.Kind == LineMainline {
				mainline[r.Fix] = true
			}
		}
	}
	for _, f := range t.Fixes {
		if !mainline[f.ID] {
			bad("fix %q has no mainline row", f.ID)
		}
	}
	return errors.Join(errs...)
}

// parseBase checks the line's kind and reads its X.Y (the stable series' name, or Base).
func (l *Line) parseBase() error {
	base := l.Base
	switch l.Kind {
	case LineMainline:
		return nil
	case LineStable:
		base = l.Name
	case LineDebian, LineUbuntu, LineRHEL:
	default:
		return fmt.Errorf("kind %q: want mainline, stable, debian, ubuntu or rhel", l.Kind)
	}
	maj, mnr, ok := strings.Cut(base, ".")
	var err1, err2 error
	l.major, err1 = strconv.Atoi(maj)
	l.minor, err2 = strconv.Atoi(mnr)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("base %q: want X.Y", base)
	}
	if l.EOL != "" {
		if l.Kind != LineStable || l.EOLSource == "" {
			return errors.New("eol is for stable lines, with eol_source")
		}
		eol, err := ParseRelease(l.EOL)
		if err != nil || eol.Kind != KindUpstream || eol.Major != l.major || eol.Minor != l.minor {
			return fmt.Errorf("eol %q: want a %d.%d.Z release", l.EOL, l.major, l.minor)
		}
		l.eol = eol
	}
	return nil
}

// parseFirst reads a row's First in the numbering of its line.
func (l *Line) parseFirst(r *Row) error {
	first, err := ParseRelease(r.First)
	if l.Kind == LineDebian || l.Kind == LineUbuntu {
		// Rows name the ABI without a flavour: read them as the line's own generic form.
		flavour := map[LineKind]string{LineDebian: "amd64", LineUbuntu: "generic"}[l.Kind]
		first, err = ParseRelease(r.First + "-" + flavour)
	}
	if err != nil {
		return err
	}
	want := map[LineKind]Kind{LineMainline: KindUpstream, LineStable: KindUpstream, LineDebian: KindDebian, LineUbuntu: KindUbuntu, LineRHEL: KindRHEL}[l.Kind]
	switch {
	case first.Kind != want:
		return fmt.Errorf("read as %s, want a %s release", first.Describe(), l.Kind)
	case first.Suffix != "":
		return fmt.Errorf("unexpected suffix %q", first.Suffix)
	case l.Kind == LineMainline && first.Patch != 0:
		return errors.New("a mainline release is X.Y or X.Y-rcN")
	case l.Kind == LineMainline && first.RC == 0 && r.RCs != "none" && r.RCs != "unknown":
		return fmt.Errorf("rcs %q: a final mainline release needs rcs: none or unknown", r.RCs)
	case l.Kind != LineMainline && r.RCs != "":
		return errors.New("rcs is for mainline rows")
	case l.Kind == LineStable && (first.RC > 0 || first.Patch == 0):
		return errors.New("a stable release is X.Y.Z with Z > 0")
	case l.Kind != LineMainline && (first.Major != l.major || first.Minor != l.minor):
		return fmt.Errorf("not a %d.%d release", l.major, l.minor)
	}
	r.first = first
	return nil
}

// line returns the line of the given kind built on major.minor (any, for mainline).
func (t *Table) line(kind LineKind, major, minor int) *Line {
	for i := range t.Lines {
		l := &t.Lines[i]
		if l.Kind == kind && (kind == LineMainline || l.major == major && l.minor == minor) {
			return l
		}
	}
	return nil
}

// row returns the line's row for a fix.
func (l *Line) row(fix string) *Row {
	for i := range l.Rows {
		if l.Rows[i].Fix == fix {
			return &l.Rows[i]
		}
	}
	return nil
}
