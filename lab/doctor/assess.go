package doctor

import (
	"fmt"
	"slices"
	"strings"
)

// Status says whether a kernel carries one fix.
type Status string

// Statuses of a fix in a kernel.
const (
	Carried Status = "carried"
	Missing Status = "missing"
	// Unknown: the table cannot place this kernel for this fix; Reason says why.
	Unknown Status = "unknown"
)

// Verdict is the answer for a kernel: does it carry every required fix.
type Verdict string

// Kernel verdicts.
const (
	Fixed         Verdict = "fixed"
	NotFixed      Verdict = "not-fixed"
	VerdictUnsure Verdict = "unknown"
)

// FixStatus is one fix in one kernel.
type FixStatus struct {
	Fix
	Status Status `json:"status"`
	Reason string `json:"reason"`
	// Source is where the deciding row was read; empty when no row decided.
	Source string `json:"source,omitempty"`
}

// KernelReport is the verdict for one kernel release.
type KernelReport struct {
	Release string `json:"release"`
	// Read says how the release string was understood.
	Read    string      `json:"read"`
	Verdict Verdict     `json:"verdict"`
	Reason  string      `json:"reason"`
	Fixes   []FixStatus `json:"fixes"`
}

// AssessString parses a release string and assesses it; a string that is not a kernel
// release is an unknown verdict, never a fixed one.
func (t *Table) AssessString(release string) KernelReport {
	rel, err := ParseRelease(release)
	if err != nil {
		return KernelReport{Release: release, Read: "not a kernel release", Verdict: VerdictUnsure, Reason: err.Error()}
	}
	return t.Assess(rel)
}

// Assess decides, fix by fix, whether the kernel carries it, and the verdict: not-fixed if a
// required fix is missing, unknown if one cannot be placed, else fixed.
func (t *Table) Assess(rel Release) KernelReport {
	rep := KernelReport{Release: rel.Raw, Read: rel.Describe()}
	if rel.Kind == KindUpstream && rel.RC > 0 && rel.Patch > 0 {
		// A stable release candidate: certain to hold only what the release before it did.
		rel.Patch, rel.RC = rel.Patch-1, 0
		rep.Read += fmt.Sprintf("; compared as %d.%d.%d, the release it is built on", rel.Major, rel.Minor, rel.Patch)
	}
	var missing, unknown []string
	var firstDoubt string
	for _, f := range t.Fixes {
		st := t.status(rel, f)
		rep.Fixes = append(rep.Fixes, st)
		if !f.Required {
			continue
		}
		name := fmt.Sprintf("%s (%s)", f.ID, f.Commit)
		switch st.Status {
		case Missing:
			if f.NotShown != "" {
				name = fmt.Sprintf("%s (%s: required by the documentation; no lab cell hangs without it)", f.ID, f.Commit)
			}
			missing = append(missing, name)
		case Unknown:
			unknown = append(unknown, name)
			if firstDoubt == "" {
				firstDoubt = st.Reason
			}
		}
	}
	switch {
	case len(missing) > 0:
		rep.Verdict, rep.Reason = NotFixed, "lacks "+strings.Join(missing, ", ")
	case len(unknown) > 0:
		rep.Verdict, rep.Reason = VerdictUnsure, fmt.Sprintf("cannot tell for %s (%s)", strings.Join(unknown, ", "), firstDoubt)
	default:
		rep.Verdict, rep.Reason = Fixed, "carries every required fix"
	}
	return rep
}

func (t *Table) status(rel Release, f Fix) FixStatus {
	st := FixStatus{Fix: f}
	set := func(s Status, src, format string, a ...any) FixStatus {
		st.Status, st.Source, st.Reason = s, src, fmt.Sprintf(format, a...)
		return st
	}
	mrow := t.line(LineMainline, 0, 0).row(f.ID) // validate guarantees one
	m := mrow.first
	if rel.Kind == KindDistro {
		return set(Unknown, "", "%s: its number says nothing about upstream, and the table has no rows for it", rel.Raw)
	}
	// Mainline: a kernel built on a final X.Y at or after the fix's carries it.
	switch cmp := compareMinor(rel, m); {
	case cmp == 0 && rel.Kind == KindUpstream && rel.RC > 0:
		return rcStatus(rel, mrow, set)
	case cmp >= 0:
		return set(Carried, mrow.Source, "mainline %s carries it; this kernel is built on %d.%d", mrow.First, rel.Major, rel.Minor)
	}
	switch rel.Kind {
	case KindUpstream:
		return t.stableStatus(rel, f, mrow, set)
	case KindDebian, KindUbuntu, KindRHEL:
		return t.distroStatus(rel, f, set)
	}
	return set(Unknown, "", "unhandled kind %q", rel.Kind)
}

type setFunc func(s Status, src, format string, a ...any) FixStatus

// rcStatus decides for a release candidate of the mainline release that first carried a fix.
func rcStatus(rel Release, mrow *Row, set setFunc) FixStatus {
	m := mrow.first
	switch {
	case m.RC > 0 && rel.RC >= m.RC:
		return set(Carried, mrow.Source, "mainline carries it since %s", mrow.First)
	case m.RC > 0:
		return set(Missing, mrow.Source, "mainline first carried it in %s, after -rc%d", mrow.First, rel.RC)
	case mrow.RCs == "none":
		return set(Missing, mrow.Source, "mainline first carried it in the final %s, after every release candidate", mrow.First)
	default:
		return set(Unknown, mrow.Source, "mainline carries it since %s; which %d.%d release candidate first did is not in the table", mrow.First, m.Major, m.Minor)
	}
}

// stableStatus decides for an upstream release older than the mainline release of the fix.
func (t *Table) stableStatus(rel Release, f Fix, mrow *Row, set setFunc) FixStatus {
	series := fmt.Sprintf("%d.%d", rel.Major, rel.Minor)
	if rel.RC > 0 || rel.Patch == 0 {
		return set(Missing, mrow.Source, "%s predates the fix: mainline first carried it in %s, and %s.y backports start after %s.0", rel.Describe(), mrow.First, series, series)
	}
	l := t.line(LineStable, rel.Major, rel.Minor)
	if l == nil {
		return set(Unknown, "", "the table has no rows for the %s.y stable series", series)
	}
	if l.EOL != "" && rel.Patch > l.eol.Patch {
		return set(Unknown, l.EOLSource, "%s.y ended with %s: %d.%d.%d is not one of its releases", series, l.EOL, rel.Major, rel.Minor, rel.Patch)
	}
	r := l.row(f.ID)
	switch {
	case r != nil && rel.Patch >= r.first.Patch:
		return set(Carried, r.Source, "%s.y carries it since %s", series, r.First)
	case r != nil:
		return set(Missing, r.Source, "%s.y first carried it in %s", series, r.First)
	case l.EOL != "":
		return set(Missing, l.EOLSource, "%s.y ended with %s without a backport", series, l.EOL)
	default:
		return set(Unknown, "", "the table has no %s.y row for this fix", series)
	}
}

// distroStatus compares a distribution kernel with its own distribution's rows only.
func (t *Table) distroStatus(rel Release, f Fix, set setFunc) FixStatus {
	kind := map[Kind]LineKind{KindDebian: LineDebian, KindUbuntu: LineUbuntu, KindRHEL: LineRHEL}[rel.Kind]
	l := t.line(kind, rel.Major, rel.Minor)
	if l == nil {
		return set(Unknown, "", "the table has no %s %d.%d rows (a distribution's own numbering is compared with its own rows only)", kind, rel.Major, rel.Minor)
	}
	r := l.row(f.ID)
	if r == nil {
		return set(Unknown, "", "the table has no %s row for this fix", l.Name)
	}
	if rel.Kind != KindRHEL {
		if rel.ABI >= r.first.ABI {
			return set(Carried, r.Source, "%s carries it since ABI %d (%s)", l.Name, r.first.ABI, r.First)
		}
		return set(Missing, r.Source, "%s first carried it with ABI %d (%s)", l.Name, r.first.ABI, r.First)
	}
	if rel.EL != r.first.EL {
		return set(Unknown, "", "an el%d build on the %s line", rel.EL, l.Name)
	}
	switch cmp := slices.Compare(rel.Build, r.first.Build); {
	case rel.Build[0] > r.first.Build[0]:
		return set(Carried, r.Source, "builds after %s carry it (later minor release or stream build)", r.First)
	case rel.Build[0] == r.first.Build[0] && cmp >= 0:
		return set(Carried, r.Source, "%s carries it since %s", l.Name, r.First)
	case rel.Build[0] == r.first.Build[0]:
		return set(Missing, r.Source, "%s first carried it in %s", l.Name, r.First)
	case rel.ELMinor < 0 && r.first.ELMinor < 0:
		return set(Missing, r.Source, "CentOS Stream first carried it in %s", r.First)
	default:
		return set(Unknown, r.Source, "an older minor release than %s: its z-stream (EUS) may carry a backport the table does not know", r.First)
	}
}

// compareMinor orders the X.Y a kernel is built on against a mainline release's.
func compareMinor(rel, m Release) int {
	if rel.Major != m.Major {
		return rel.Major - m.Major
	}
	return rel.Minor - m.Minor
}
