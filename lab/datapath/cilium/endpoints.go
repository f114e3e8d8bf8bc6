package cilium

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The agent says it is ready before its datapath is: it compiles and loads the host's programs
// (bpf_host, and bpf_sock — socket-LB — where enabled) afterwards, minutes under TCG, and its
// endpoints regenerate only once they are loaded. The host's own endpoint (reserved:host) is
// ready when the datapath a cell relies on is in place.

// hostLabel is the identity label of the node's own endpoint.
const hostLabel = "reserved:host"

// endpointJSON is the part of `cilium-dbg endpoint list -o json` read here.
type endpointJSON struct {
	ID     int64 `json:"id"`
	Status *struct {
		State    string `json:"state"`
		Identity *struct {
			Labels []string `json:"labels"`
		} `json:"identity"`
		// Log is the endpoint's recent state changes, each with the agent's message.
		Log []struct {
			Message   string `json:"message"`
			State     string `json:"state"`
			Timestamp string `json:"timestamp"`
		} `json:"log"`
	} `json:"status"`
}

// HostEndpoint is the node's own endpoint as the agent lists it.
type HostEndpoint struct {
	State string // "ready", "regenerating", "waiting-to-regenerate", …
	// Last is the newest entry of its status log ("Regenerating endpoint: …", or why its
	// regeneration failed), "" if it has none.
	Last string
}

// String renders it for progress lines: "host endpoint regenerating (last: …)".
func (h HostEndpoint) String() string {
	if h.Last == "" {
		return "host endpoint " + h.State
	}
	return fmt.Sprintf("host endpoint %s (last: %s)", h.State, h.Last)
}

// ParseHostEndpoint reads `cilium-dbg endpoint list -o json` and returns the node's own
// endpoint; ok is false when the list has none yet.
func ParseHostEndpoint(out []byte) (ep HostEndpoint, ok bool, err error) {
	var eps []endpointJSON
	if err := json.Unmarshal(out, &eps); err != nil {
		return HostEndpoint{}, false, fmt.Errorf("the Cilium agent's endpoint list: %w", err)
	}
	for _, e := range eps {
		if e.Status == nil || e.Status.Identity == nil || !slices.Contains(e.Status.Identity.Labels, hostLabel) {
			continue
		}
		h := HostEndpoint{State: e.Status.State}
		newest := ""
		for _, l := range e.Status.Log {
			// RFC 3339 times of one clock and format order as strings do.
			if l.Timestamp >= newest {
				newest = l.Timestamp
				h.Last = strings.TrimSpace(l.State + ": " + l.Message)
			}
		}
		return h, true, nil
	}
	return HostEndpoint{}, false, nil
}

// WaitDatapath waits until the agent on the node has its datapath in place (its host endpoint
// is ready), saying what it waits for every 30 s.
func WaitDatapath(ctx context.Context, node NodeExec, say func(string)) error {
	start, lastSaid := time.Now(), time.Now()
	last := "no answer yet"
	for {
		// A call can hang while the agent is busy compiling: each gets a minute.
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		out, err := AgentExec(cctx, node, "cilium-dbg", "endpoint", "list", "-o", "json")
		cancel()
		ep, ok, perr := ParseHostEndpoint([]byte(out))
		switch {
		case err != nil:
			last = err.Error()
		case perr != nil:
			last = perr.Error()
		case !ok:
			last = "no host endpoint yet"
		case ep.State == "ready":
			return nil
		default:
			last = ep.String()
		}
		if say != nil && time.Since(lastSaid) >= 30*time.Second {
			say(fmt.Sprintf("cilium: (%.0f s) waiting for the agent's datapath: %s", time.Since(start).Seconds(), last))
			lastSaid = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the Cilium agent's datapath (its host endpoint ready): %w (last: %s)", ctx.Err(), last)
		case <-time.After(2 * time.Second):
		}
	}
}
