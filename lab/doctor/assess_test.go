package doctor

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func loadTable(t *testing.T) *Table {
	t.Helper()
	tab, err := LoadTable()
	if err != nil {
		t.Fatalf("embedded table: %v", err)
	}
	return tab
}

// TestVerdicts pins the verdict of kernels people run, written down independently of
// fixes.yaml: a wrong row in the table makes one of these fail.
func TestVerdicts(t *testing.T) {
	tab := loadTable(t)
	tests := []struct {
		release string
		want    Verdict
		why     string // in the reason
	}{
		// Debian bookworm: ABI numbers, compared with Debian's rows only.
		{"6.1.0-56-amd64", Fixed, "every required fix"},
		{"6.1.0-18-cloud-amd64", Fixed, ""},
		{"6.1.0-17-amd64", NotFixed, "msg_namelen"},
		{"6.1.0-13-arm64", NotFixed, "sock_sendmsg"},
		{"6.1.0-12-amd64", NotFixed, "kernel_connect"},
		{"5.10.0-28-amd64", VerdictUnsure, "no debian 5.10 rows"},
		// Ubuntu -generic, per Cilium's list.
		{"5.4.0-187-generic", Fixed, ""},
		{"5.4.0-186-generic", NotFixed, "kernel_connect"},
		{"5.15.0-113-generic", Fixed, ""},
		{"5.15.0-112-generic", NotFixed, ""},
		{"6.5.0-41-generic", Fixed, ""},
		{"6.5.0-40-generic", NotFixed, ""},
		{"6.8.0-31-generic", Fixed, ""},
		{"6.2.0-39-generic", VerdictUnsure, "no ubuntu 6.2 rows"},
		{"5.15.0-1063-aws", VerdictUnsure, "says nothing about upstream"},
		// RHEL and rebuilds.
		{"4.18.0-553.8.1.el8_10.x86_64", Fixed, ""},
		{"4.18.0-553.16.1.el8_10.x86_64", Fixed, ""},
		{"4.18.0-553.5.1.el8_10.x86_64", NotFixed, ""},
		{"4.18.0-553.el8_10.x86_64", NotFixed, ""},
		{"4.18.0-477.27.1.el8_8.x86_64", VerdictUnsure, "z-stream"},
		{"5.14.0-427.31.1.el9_4.x86_64", Fixed, ""},
		{"5.14.0-427.13.1.el9_4.x86_64", NotFixed, "kernel_connect"},
		{"5.14.0-503.11.1.el9_5.x86_64", Fixed, ""},
		{"5.14.0-427.31.1.el9_4.x86_64+rt", Fixed, ""},
		{"5.14.0-284.11.1.el9_2.x86_64", VerdictUnsure, ""},
		{"5.14.0-362.el9.x86_64", NotFixed, "sock_sendmsg"},
		{"5.15.0-209.161.7.2.el9uek.x86_64", VerdictUnsure, ""},
		// Mainline and stable.
		{"6.6.30", Fixed, ""},
		{"6.6.11", Fixed, ""},
		{"6.6.10", NotFixed, "msg_namelen"},
		{"6.6.0", NotFixed, "msg_namelen"},
		{"6.6", NotFixed, "msg_namelen"},
		{"6.7.0", Fixed, ""},
		{"6.7", Fixed, ""},
		{"6.7.0-rc8", NotFixed, "msg_namelen"},
		{"6.8.0-rc1", Fixed, ""},
		{"6.6.0-rc4", NotFixed, "sock_sendmsg"},
		{"6.6.0-rc5", NotFixed, "msg_namelen"},
		{"6.1.192", Fixed, ""},
		{"6.1.72", Fixed, ""},
		{"6.1.71", NotFixed, "msg_namelen"},
		{"6.1.53", NotFixed, "sock_sendmsg"},
		{"6.1.52", NotFixed, "kernel_connect"},
		{"6.1.0", NotFixed, "kernel_connect"},
		{"5.15.147", Fixed, ""},
		{"5.15.146", NotFixed, ""},
		{"5.10.208", Fixed, ""},
		{"5.10.207", NotFixed, ""},
		{"5.4.267", Fixed, ""},
		{"5.4.266", NotFixed, ""},
		{"6.4.16", NotFixed, "sock_sendmsg"},
		{"6.4.17", VerdictUnsure, "not one of its releases"},
		{"6.5.13", NotFixed, "msg_namelen"},
		{"6.5.2", NotFixed, "kernel_connect"},
		{"5.19.17", VerdictUnsure, "5.19.y"},
		{"4.19.297", VerdictUnsure, "4.19.y"},
		{"6.6.3-rc1", NotFixed, "msg_namelen"},
		{"6.6.12-rc1", Fixed, ""},
		{"7.0.0", Fixed, ""},
		// Upstream numbers with a vendor's suffix.
		{"6.12.41+deb13-amd64", Fixed, ""},
		{"6.8.5-301.fc40.x86_64", Fixed, ""},
		{"5.10.219-208.866.amzn2.x86_64", Fixed, ""},
		{"6.1.52-1-lts", NotFixed, ""},
		{"6.7.0-00001-gabcdef12", Fixed, ""},
		{"6.8.0-060800rc1-generic", VerdictUnsure, ""},
		{"6.1.0-0.deb11.13-amd64", VerdictUnsure, ""},
		{"6.4.0-150600.23.7-default", VerdictUnsure, ""},
		// Not kernels: never fixed.
		{"", VerdictUnsure, "not a Linux kernel release"},
		{"garbage", VerdictUnsure, "not a Linux kernel release"},
		{"6", VerdictUnsure, "not a Linux kernel release"},
		{"6.x", VerdictUnsure, "not a Linux kernel release"},
		{"99.1.1", VerdictUnsure, "outside any Linux release"},
		{"6.1.0-56-amd64 extra", VerdictUnsure, "not a Linux kernel release"},
		{"6.8.0-rc0", VerdictUnsure, "no -rc0"},
		{"6.1abc", VerdictUnsure, "unexpected"},
	}
	for _, tt := range tests {
		t.Run(tt.release, func(t *testing.T) {
			got := tab.AssessString(tt.release)
			if got.Verdict != tt.want {
				t.Fatalf("verdict %s (%s), want %s\nread as: %s\nfixes: %+v", got.Verdict, got.Reason, tt.want, got.Read, got.Fixes)
			}
			if !strings.Contains(got.Reason, tt.why) {
				t.Errorf("reason %q does not mention %q", got.Reason, tt.why)
			}
		})
	}
}

// TestEveryRow walks the table: the first release of each row carries the fix, the release
// before it (on the same line) lacks it, and what decided says where it was read.
func TestEveryRow(t *testing.T) {
	tab := loadTable(t)
	rows := 0
	for _, l := range tab.Lines {
		for _, r := range l.Rows {
			rows++
			t.Run(l.Name+"/"+r.Fix, func(t *testing.T) {
				at := rowRelease(l, r.first)
				st := fixOf(t, tab, at, r.Fix)
				if st.Status != Carried {
					t.Errorf("%s: %s %s (%s), want carried", at, r.Fix, st.Status, st.Reason)
				}
				if st.Source == "" {
					t.Errorf("%s: %s carried without a source", at, r.Fix)
				}
				before, ok := previous(l, r)
				if !ok {
					return
				}
				st = fixOf(t, tab, before, r.Fix)
				if st.Status == Carried {
					t.Errorf("%s (before %s): %s carried (%s)", before, r.First, r.Fix, st.Reason)
				}
			})
		}
	}
	if rows < 40 {
		t.Errorf("only %d rows: the table lost some", rows)
	}
}

// rowRelease renders a row's first release as `uname -r` would print it on that line.
func rowRelease(l Line, first Release) string {
	switch l.Kind {
	case LineDebian:
		return fmt.Sprintf("%d.%d.0-%d-amd64", first.Major, first.Minor, first.ABI)
	case LineUbuntu:
		return fmt.Sprintf("%d.%d.0-%d-generic", first.Major, first.Minor, first.ABI)
	case LineRHEL:
		return first.Raw + ".x86_64"
	case LineMainline:
		if first.RC > 0 {
			return fmt.Sprintf("%d.%d.0-rc%d", first.Major, first.Minor, first.RC)
		}
		return fmt.Sprintf("%d.%d.0", first.Major, first.Minor)
	default:
		return first.Raw
	}
}

// previous is the release just before a row's first on its line, if the line numbers one.
func previous(l Line, r Row) (string, bool) {
	f := r.first
	switch l.Kind {
	case LineDebian:
		return fmt.Sprintf("%d.%d.0-%d-amd64", f.Major, f.Minor, f.ABI-1), f.ABI > 1
	case LineUbuntu:
		return fmt.Sprintf("%d.%d.0-%d-generic", f.Major, f.Minor, f.ABI-1), f.ABI > 1
	case LineStable:
		return fmt.Sprintf("%d.%d.%d", f.Major, f.Minor, f.Patch-1), f.Patch > 1
	case LineMainline:
		if f.RC > 1 {
			return fmt.Sprintf("%d.%d.0-rc%d", f.Major, f.Minor, f.RC-1), true
		}
		return fmt.Sprintf("%d.%d.0", f.Major, f.Minor-1), f.Minor > 0
	case LineRHEL:
		b := append([]int(nil), f.Build...)
		b[len(b)-1]--
		tag := fmt.Sprintf("el%d", f.EL)
		if f.ELMinor >= 0 {
			tag += fmt.Sprintf("_%d", f.ELMinor)
		}
		return fmt.Sprintf("%d.%d.%d-%s.%s.x86_64", f.Major, f.Minor, f.Patch, joinInts(b), tag), b[len(b)-1] >= 0
	}
	return "", false
}

func fixOf(t *testing.T, tab *Table, release, fix string) FixStatus {
	t.Helper()
	rep := tab.AssessString(release)
	for _, st := range rep.Fixes {
		if st.ID == fix {
			return st
		}
	}
	t.Fatalf("%s: no status for %s (verdict %s: %s)", release, fix, rep.Verdict, rep.Reason)
	return FixStatus{}
}

func TestParseTableRejects(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown field", "fixes: []\nlines: []\ncolour: blue\n", []string{"colour"}},
		{"row without source", `
fixes: [{id: a, commit: "1", title: t, required: true}]
lines:
  - {line: mainline, kind: mainline, rows: [{fix: a, first: "6.6-rc5"}]}
`, []string{"source is required"}},
		{"unknown fix and no mainline row", `
fixes: [{id: a, commit: "1", title: t}]
lines:
  - {line: "6.1", kind: stable, rows: [{fix: b, first: "6.1.5", source: s}]}
`, []string{`unknown fix "b"`, `fix "a" has no mainline row`}},
		{"release of another line", `
fixes: [{id: a, commit: "1", title: t}]
lines:
  - {line: mainline, kind: mainline, rows: [{fix: a, first: "6.7", rcs: none, source: s}]}
  - {line: "6.1", kind: stable, rows: [{fix: a, first: "6.2.5", source: s}]}
  - {line: deb, kind: debian, base: "6.1", rows: [{fix: a, first: "6.1.0-x", source: s}]}
`, []string{"not a 6.1 release", `"6.1.0-x"`}},
		{"final mainline release without rcs", `
fixes: [{id: a, commit: "1", title: t}]
lines:
  - {line: mainline, kind: mainline, rows: [{fix: a, first: "6.7", source: s}]}
`, []string{"rcs"}},
		{"eol without source", `
fixes: [{id: a, commit: "1", title: t}]
lines:
  - {line: mainline, kind: mainline, rows: [{fix: a, first: "6.7-rc1", source: s}]}
  - {line: "6.4", kind: stable, eol: "6.4.16", rows: []}
`, []string{"eol_source"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseTable([]byte(tt.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestParseRelease(t *testing.T) {
	tests := []struct {
		in   string
		want Release
	}{
		{"6.1.0-56-amd64", Release{Kind: KindDebian, Major: 6, Minor: 1, ABI: 56, Flavour: "amd64"}},
		{"5.15.0-113-generic", Release{Kind: KindUbuntu, Major: 5, Minor: 15, ABI: 113, Flavour: "generic"}},
		{"4.18.0-553.8.1.el8_10.x86_64", Release{Kind: KindRHEL, Major: 4, Minor: 18, Build: []int{553, 8, 1}, EL: 8, ELMinor: 10}},
		{"5.14.0-410.el9.x86_64", Release{Kind: KindRHEL, Major: 5, Minor: 14, Build: []int{410}, EL: 9, ELMinor: -1}},
		{"6.6.30", Release{Kind: KindUpstream, Major: 6, Minor: 6, Patch: 30}},
		{"6.8.0-rc1", Release{Kind: KindUpstream, Major: 6, Minor: 8, RC: 1}},
		{"6.12.41+deb13-amd64", Release{Kind: KindUpstream, Major: 6, Minor: 12, Patch: 41, Suffix: "+deb13-amd64"}},
		{"5.15.0-1063-aws", Release{Kind: KindDistro, Major: 5, Minor: 15, ABI: 1063, Flavour: "aws"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRelease(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			tt.want.Raw = tt.in
			if tt.want.Kind != KindRHEL {
				tt.want.ELMinor = -1
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	if _, err := ParseRelease("garbage"); !errors.Is(err, ErrNotARelease) {
		t.Errorf("garbage: %v, want ErrNotARelease", err)
	}
}

// FuzzParseRelease: the parser never panics, what it accepts is a plausible version whose
// description is not empty, and whatever it is given is never judged fixed unless it parsed.
func FuzzParseRelease(f *testing.F) {
	for _, s := range []string{
		"6.1.0-56-amd64", "5.15.0-113-generic", "4.18.0-553.8.1.el8_10.x86_64", "6.6.30", "6.8.0-rc1",
		"garbage", "", "6.7.0-00001-gabcdef12", "5.14.0-427.31.1.el9_4.x86_64+rt", "6.1.0-0.deb11.13-amd64",
		"99999999999999999999.1", "6.1.99999999999999999999", "6.6.3-rc1",
	} {
		f.Add(s)
	}
	tab, err := LoadTable()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rel, err := ParseRelease(s)
		rep := tab.AssessString(s)
		if err != nil {
			if !errors.Is(err, ErrNotARelease) {
				t.Fatalf("%q: error %v does not wrap ErrNotARelease", s, err)
			}
			if rep.Verdict != VerdictUnsure {
				t.Fatalf("%q: not a release, yet verdict %s", s, rep.Verdict)
			}
			return
		}
		if rel.Major < 2 || rel.Major > maxMajor || rel.Minor > maxMinor || rel.Patch > maxPatch {
			t.Fatalf("%q: implausible version accepted: %+v", s, rel)
		}
		if rel.Describe() == "" || len(rep.Fixes) != len(tab.Fixes) {
			t.Fatalf("%q: empty description or missing fixes: %+v", s, rep)
		}
		if rel.Kind == KindDistro && rep.Verdict == Fixed {
			t.Fatalf("%q: a distribution kernel with its own numbering judged fixed", s)
		}
	})
}
