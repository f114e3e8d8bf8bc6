package cilium

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
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
	} `json:"status"`
}

// ParseHostEndpointState reads `cilium-dbg endpoint list -o json` and returns the state of the
// node's own endpoint ("ready", "regenerating", …); ok is false when the list has none yet.
func ParseHostEndpointState(out []byte) (state string, ok bool, err error) {
	var eps []endpointJSON
	if err := json.Unmarshal(out, &eps); err != nil {
		return "", false, fmt.Errorf("the Cilium agent's endpoint list: %w", err)
	}
	for _, ep := range eps {
		if ep.Status == nil || ep.Status.Identity == nil || !slices.Contains(ep.Status.Identity.Labels, hostLabel) {
			continue
		}
		return ep.Status.State, true, nil
	}
	return "", false, nil
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
		state, ok, perr := ParseHostEndpointState([]byte(out))
		switch {
		case err != nil:
			last = err.Error()
		case perr != nil:
			last = perr.Error()
		case !ok:
			last = "no host endpoint yet"
		case state == "ready":
			return nil
		default:
			last = "host endpoint " + state
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
