package build

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// The one way nfslab's Cilium differs from a release: four fixed time limits. The agent compiles
// its datapath with clang when it starts and when an endpoint (a pod, the node itself) is
// regenerated, and bounds each: 300 s for the host's programs (ExecTimeout) and 330 s for an
// endpoint's regeneration, its compile included (EndpointGenerationTimeout). Under TCG a compile
// takes longer than that, so the regeneration failed and started over without end: the node's
// own endpoint stayed "waiting-to-regenerate" and no pod ever got its network.
//
// A pod's endpoint is created by cilium-cni through the agent's API, which waits for the
// endpoint's first build, compile included: the client gives up after 90 s (api.ClientTimeout)
// and the agent's API server stops writing after 60 s (apiTimeout). The agent then deletes the
// half-made endpoint, its compile is killed, the kubelet tries the pod's sandbox again and the
// compile starts over: a first pod whose program takes longer than that to compile never
// starts (seen: 15 minutes ContainerCreating). The datapath itself is untouched.

// patch replaces one constant's definition in a file of the module, which must have it exactly
// once.
type patch struct {
	File, Old, New string
}

// timeoutPatches are the time limits nfslab raises to 30 minutes.
func timeoutPatches() []patch {
	return []patch{
		{"pkg/defaults/defaults.go", "ExecTimeout = 300 * time.Second", "ExecTimeout = 1800 * time.Second"},
		{"pkg/endpoint/bpf.go", "EndpointGenerationTimeout = 330 * time.Second", "EndpointGenerationTimeout = 1800 * time.Second"},
		{"pkg/api/const.go", "ClientTimeout = 90 * time.Second", "ClientTimeout = 1800 * time.Second"},
		{"daemon/cmd/daemon_main.go", "apiTimeout   = 60 * time.Second", "apiTimeout   = 1800 * time.Second"},
	}
}

// patchTimeouts applies timeoutPatches to the module copy src.
func patchTimeouts(src string) error {
	for _, p := range timeoutPatches() {
		if err := apply(src, p); err != nil {
			return err
		}
	}
	return nil
}

func apply(src string, p patch) error {
	path := filepath.Join(src, p.File)
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("raise a time limit of Cilium's for TCG: %w", err)
	}
	if n := bytes.Count(data, []byte(p.Old)); n != 1 {
		return fmt.Errorf("raise a time limit of Cilium's for TCG: %s has %q %d times, want once (this version defines it otherwise)", p.File, p.Old, n)
	}
	return os.WriteFile(path, bytes.Replace(data, []byte(p.Old), []byte(p.New), 1), 0o644)
}
