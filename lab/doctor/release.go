package doctor

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Kind says how a kernel release string numbers its kernel, and so which rows of the fix
// table it may be compared with.
type Kind string

// Kinds of kernel release.
const (
	// KindUpstream is mainline or stable numbering (6.6, 6.8-rc1, 6.1.53), possibly followed by
	// a vendor's suffix (6.8.5-301.fc40.x86_64, 6.12.41+deb13-amd64).
	KindUpstream Kind = "upstream"
	// KindDebian is Debian's X.Y.0-N-flavour: N is Debian's ABI number, not a patch level.
	KindDebian Kind = "debian"
	// KindUbuntu is Ubuntu's X.Y.0-N-generic: N is Ubuntu's ABI number.
	KindUbuntu Kind = "ubuntu"
	// KindRHEL is Red Hat's X.Y.0-R.elM[_m]: R is Red Hat's build number.
	KindRHEL Kind = "rhel"
	// KindDistro is another distribution kernel whose number is not the upstream one (Ubuntu's
	// cloud kernels, SUSE, Oracle UEK, Debian backports, …): nothing in the table applies.
	KindDistro Kind = "distro"
)

// Release is a parsed kernel release string (`uname -r`).
type Release struct {
	Raw  string `json:"raw"`
	Kind Kind   `json:"kind"`
	// Major, Minor and Patch are the upstream version, or the base a distribution kernel is
	// built on (6.1 for Debian's 6.1.0-56-amd64).
	Major int `json:"major"`
	Minor int `json:"minor"`
	Patch int `json:"patch"`
	// RC is the release candidate of an upstream pre-release (8 for 6.7-rc8), else 0.
	RC int `json:"rc,omitempty"`
	// ABI is Debian's or Ubuntu's ABI number.
	ABI int `json:"abi,omitempty"`
	// Build is a RHEL build number (553.8.1 as [553 8 1]).
	Build []int `json:"build,omitempty"`
	// EL and ELMinor come from RHEL's dist tag: el9_4 is 9 and 4; ELMinor is -1 without one
	// (a CentOS Stream build such as 5.14.0-410.el9).
	EL      int `json:"el,omitempty"`
	ELMinor int `json:"el_minor,omitempty"`
	// Flavour is the Debian or Ubuntu kernel flavour (amd64, generic, aws, …).
	Flavour string `json:"flavour,omitempty"`
	// Suffix is what followed an upstream version (a vendor's release, a localversion).
	Suffix string `json:"suffix,omitempty"`
}

// Upper bounds of a plausible Linux version. Linux went 2.6.39 → 3.0 → 3.19 → 4.0 → … and its
// stable series reached patch levels in the 300s: a number past these is not a kernel.
const (
	maxMajor = 9
	maxMinor = 99
	maxPatch = 999
)

var (
	// git describe output of a kernel built between tags: 6.7.0-00001-gabcdef12.
	gitDescribeRE = regexp.MustCompile(`^-\d+-g[0-9a-f]{7,40}(-dirty)?$`)
	// X.Y.0-N-flavour: Debian and Ubuntu.
	abiRE = regexp.MustCompile(`^(\d+)\.(\d+)\.0-(\d+)-([a-z0-9]+(?:-[a-z0-9]+)*)$`)
	// Anything else numbered X.Y.0-N…: a distribution's own scheme.
	distroRE = regexp.MustCompile(`^\d+\.\d+\.0-\d`)
	// X.Y.Z-R.elM[_m][.arch][+variant]: RHEL, CentOS Stream and rebuilds.
	rhelRE = regexp.MustCompile(`^(\d+)\.(\d+)\.(\d+)-(\d+(?:\.\d+)*)\.el(\d+)(?:_(\d+))?(?:\.(?:x86_64|aarch64|ppc64le|s390x))?(?:\+[a-z0-9_]+)?$`)
	// X.Y[.Z][-rcN] and the rest.
	upstreamRE = regexp.MustCompile(`^(\d+)\.(\d+)(?:\.(\d+))?(?:-rc(\d+))?(.*)$`)
)

// Flavours of Debian's kernel packages (linux-image-<abi>-<flavour>).
var debianFlavours = []string{
	"amd64", "arm64", "cloud-amd64", "cloud-arm64", "rt-amd64", "rt-arm64", "686", "686-pae",
	"armmp", "armmp-lpae", "marvell", "rpi", "powerpc64le", "s390x", "loong64", "riscv64",
	"4kc-malta", "5kc-malta", "mips32r2el", "mips64r2el", "octeon", "loongson-3",
}

// Flavours built from Ubuntu's main "linux" source package, whose ABI numbers Cilium's list
// uses. Ubuntu's other kernels (aws, azure, gcp, lowlatency, …) have their own numbering.
var ubuntuFlavours = []string{"generic", "generic-64k", "generic-lpae"}

// ErrNotARelease is returned, wrapped, for a string that is not a kernel release.
var ErrNotARelease = errors.New("not a Linux kernel release")

// ParseRelease reads a kernel release string as `uname -r` prints it: 6.1.0-56-amd64,
// 5.15.0-113-generic, 4.18.0-553.8.1.el8_10.x86_64, 6.6.30, 6.8.0-rc1, … A string that is not
// a plausible kernel release is an error wrapping ErrNotARelease; a plausible one the table
// cannot place is a Release of KindDistro.
func ParseRelease(s string) (Release, error) {
	r := Release{Raw: s, ELMinor: -1}
	if s == "" || len(s) > 128 || strings.IndexFunc(s, func(c rune) bool { return c <= ' ' || c > '~' }) >= 0 {
		return Release{}, fmt.Errorf("%q: %w (empty, too long, or with spaces or non-ASCII characters)", s, ErrNotARelease)
	}
	if m := rhelRE.FindStringSubmatch(s); m != nil {
		r.Kind = KindRHEL
		r.Major, r.Minor, r.Patch = atoi(m[1]), atoi(m[2]), atoi(m[3])
		r.Build = ints(m[4])
		r.EL = atoi(m[5])
		if m[6] != "" {
			r.ELMinor = atoi(m[6])
		}
		return r, r.plausible()
	}
	if m := abiRE.FindStringSubmatch(s); m != nil && !gitDescribeRE.MatchString(s[strings.Index(s, "-"):]) {
		r.Major, r.Minor, r.ABI, r.Flavour = atoi(m[1]), atoi(m[2]), atoi(m[3]), m[4]
		switch {
		case slices.Contains(debianFlavours, r.Flavour):
			r.Kind = KindDebian
		case slices.Contains(ubuntuFlavours, r.Flavour):
			r.Kind = KindUbuntu
		default:
			r.Kind = KindDistro
		}
		return r, r.plausible()
	}
	m := upstreamRE.FindStringSubmatch(s)
	if m == nil {
		return Release{}, fmt.Errorf("%q: %w (want X.Y, X.Y.Z or a distribution's form such as 6.1.0-56-amd64)", s, ErrNotARelease)
	}
	r.Major, r.Minor = atoi(m[1]), atoi(m[2])
	if m[3] != "" {
		r.Patch = atoi(m[3])
	}
	if m[4] != "" {
		r.RC = atoi(m[4])
		if r.RC == 0 {
			return Release{}, fmt.Errorf("%q: %w (there is no -rc0)", s, ErrNotARelease)
		}
	}
	r.Suffix = m[5]
	switch {
	case distroRE.MatchString(s) && !gitDescribeRE.MatchString(r.Suffix):
		r.Kind, r.Suffix = KindDistro, ""
	case r.Suffix == "" || strings.ContainsRune("-+._~", rune(r.Suffix[0])):
		r.Kind = KindUpstream
	default:
		return Release{}, fmt.Errorf("%q: %w (unexpected %q after the version)", s, ErrNotARelease, r.Suffix)
	}
	return r, r.plausible()
}

func (r Release) plausible() error {
	if r.Major < 2 || r.Major > maxMajor || r.Minor > maxMinor || r.Patch > maxPatch {
		return fmt.Errorf("%q: %w (version %d.%d.%d is outside any Linux release)", r.Raw, ErrNotARelease, r.Major, r.Minor, r.Patch)
	}
	return nil
}

// Describe says how the release was read, for reports.
func (r Release) Describe() string {
	switch r.Kind {
	case KindUpstream:
		v := fmt.Sprintf("%d.%d.%d", r.Major, r.Minor, r.Patch)
		switch {
		case r.RC > 0 && r.Patch > 0:
			v = fmt.Sprintf("stable release candidate %s-rc%d", v, r.RC)
		case r.RC > 0:
			v = fmt.Sprintf("%d.%d-rc%d", r.Major, r.Minor, r.RC)
		}
		if r.Suffix != "" {
			return fmt.Sprintf("upstream %s (suffix %q ignored)", v, r.Suffix)
		}
		return "upstream " + v
	case KindDebian:
		return fmt.Sprintf("Debian %d.%d kernel, ABI %d (%s flavour)", r.Major, r.Minor, r.ABI, r.Flavour)
	case KindUbuntu:
		return fmt.Sprintf("Ubuntu %d.%d kernel, ABI %d (%s)", r.Major, r.Minor, r.ABI, r.Flavour)
	case KindRHEL:
		tag := fmt.Sprintf("el%d", r.EL)
		if r.ELMinor >= 0 {
			tag += fmt.Sprintf("_%d", r.ELMinor)
		}
		return fmt.Sprintf("RHEL %d kernel %d.%d.%d build %s (%s)", r.EL, r.Major, r.Minor, r.Patch, joinInts(r.Build), tag)
	default:
		return "a distribution kernel whose number is not an upstream version"
	}
}

// atoi converts a string of at most a few digits, already matched by a regexp.
func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 1 << 30 // too many digits: plausible() rejects it
	}
	return n
}

func ints(dotted string) []int {
	var out []int
	for _, f := range strings.Split(dotted, ".") {
		out = append(out, atoi(f))
	}
	return out
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ".")
}
