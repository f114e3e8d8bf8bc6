// Package gomod fetches modules through the Go module proxy with the go command, so that
// GOPROXY, GONOSUMDB, GOFLAGS' proxy settings and the checksum database apply as they do to a
// build.
package gomod

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// Module is a module version in the Go module cache, as `go mod download -json` reports it.
type Module struct {
	Path    string
	Version string
	Dir     string // the extracted tree (read-only)
	Info    string // the proxy's .info file: the version and its time
	Zip     string // the module zip the proxy served
	Sum     string // its go.sum hash, checked against the checksum database
	Error   string
}

// Download downloads path@version into the Go module cache and returns where it is. It runs
// outside any module (in a temporary directory, GOWORK=off), so neither the caller's working
// directory nor a go.work can change what is fetched.
func Download(ctx context.Context, path, version string) (Module, error) {
	mod := path + "@" + version
	dir, err := os.MkdirTemp("", "nfslab-gomod-")
	if err != nil {
		return Module{}, fmt.Errorf("go mod download %s: %w", mod, err)
	}
	defer os.RemoveAll(dir)
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", mod)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off", "GO111MODULE=on")
	out, runErr := cmd.Output()
	var stderr string
	if ee := (*exec.ExitError)(nil); errors.As(runErr, &ee) {
		stderr = strings.TrimSpace(string(ee.Stderr)) // Output keeps its head and tail
	}
	return parse(mod, out, runErr, stderr)
}

// parse reads go mod download's JSON; on failure the go command still prints it, with the
// reason in Error.
func parse(mod string, out []byte, runErr error, stderr string) (Module, error) {
	var m Module
	jerr := json.Unmarshal(out, &m)
	switch {
	case m.Error != "":
		return Module{}, fmt.Errorf("go mod download %s: %s", mod, m.Error)
	case runErr != nil:
		if stderr != "" {
			return Module{}, fmt.Errorf("go mod download %s: %w: %s", mod, runErr, stderr)
		}
		return Module{}, fmt.Errorf("go mod download %s: %w", mod, runErr)
	case jerr != nil:
		return Module{}, fmt.Errorf("go mod download %s: reading its output: %w", mod, jerr)
	case m.Dir == "" || m.Zip == "":
		return Module{}, errors.New("go mod download " + mod + ": no directory or zip in its output")
	}
	return m, nil
}
