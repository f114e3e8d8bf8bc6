package cilium

import (
	"fmt"
	"slices"

	"golang.org/x/mod/semver"
)

// AgentCapabilitiesKey is where Cilium's chart lists the capabilities of the agent's container.
const AgentCapabilitiesKey = "securityContext.capabilities.ciliumAgent"

// ProbesWithBpftool reports whether the version's agent learns the kernel's BPF features by
// running `bpftool -j feature probe`, and exits when that fails: versions before v1.18 (later
// ones probe in Go).
func ProbesWithBpftool(version string) bool {
	return semver.IsValid(version) && semver.Compare(version, "v1.18.0") < 0
}

// bpftoolCapabilities are the capabilities a bpftool built with libcap, as Debian's is, checks
// by name before a full feature probe, besides SYS_ADMIN and NET_ADMIN, which the chart grants
// already. Cilium's own images carry a bpftool built without libcap, which checks only that it
// runs as root; nfslab's Cilium image has Debian's.
func bpftoolCapabilities() []string { return []string{"BPF", "PERFMON"} }

// WithBpftoolCapabilities returns the values with CAP_BPF and CAP_PERFMON added to the agent's
// capabilities when the version's agent runs bpftool (ProbesWithBpftool): without them Debian's
// bpftool refuses ("missing CAP_BPF, CAP_PERFMON, required for full feature probing") and the
// agent exits. Helm replaces a list as a whole, so the list extended is the one the agent would
// otherwise get: the values' own when they set it (a user's file may), else the chart's default
// (defaults, the chart's values.yaml). Other versions get the values as they are. Neither input
// is changed.
func WithBpftoolCapabilities(version string, values, defaults map[string]any) (map[string]any, error) {
	if !ProbesWithBpftool(version) {
		return values, nil
	}
	list, ok := get(values, AgentCapabilitiesKey)
	if !ok {
		if list, ok = get(defaults, AgentCapabilitiesKey); !ok {
			return nil, fmt.Errorf("Cilium %s's chart has no default for %s", version, AgentCapabilitiesKey)
		}
	}
	items, ok := list.([]any)
	if !ok {
		return nil, fmt.Errorf("%s is %s, want a list of capability names", AgentCapabilitiesKey, describe(list))
	}
	caps := slices.Clone(items)
	for _, c := range bpftoolCapabilities() {
		if !slices.Contains(caps, any(c)) {
			caps = append(caps, c)
		}
	}
	add := map[string]any{"securityContext": map[string]any{"capabilities": map[string]any{"ciliumAgent": caps}}}
	return Merge(values, add), nil
}
