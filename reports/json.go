package reports

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nfslab/nfslab/internal/atomicfile"
	"github.com/nfslab/nfslab/lab/event"
)

// schemaV1 is the format before the scenario's identity and the reason codes (nfslab.result/v1).
const schemaV1 = "nfslab.result/v1"

// File names inside a run directory.
const (
	JSONFile     = "result.json"
	MarkdownFile = "summary.md"
)

// WriteJSON writes r to dir/result.json, indented, atomically (a reader never sees half a
// file). Empty lists are written as [] and an empty schema as Schema, so that consumers can
// rely on every documented field being present; r itself is not changed.
func WriteJSON(dir string, r *Result) error {
	if r == nil {
		return errors.New("write result.json: no result")
	}
	b, err := json.MarshalIndent(normalized(r), "", "  ")
	if err != nil {
		return fmt.Errorf("write result.json: %w", err)
	}
	return writeAtomic(dir, JSONFile, append(b, '\n'))
}

// ReadJSON reads a result.json. Unknown fields are ignored (later versions only add fields);
// a different schema is an error.
func ReadJSON(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read result: %w", err)
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read result %s: %w", path, err)
	}
	switch r.Schema {
	case Schema:
	case schemaV1:
		return nil, fmt.Errorf("read result %s: schema %q, written by an older nfslab: it lacks the scenario's cell list and hash, and its pass flags are not computed as this nfslab does, so it cannot be checked; run its cells again with this nfslab", path, r.Schema)
	default:
		return nil, fmt.Errorf("read result %s: schema %q, want %q", path, r.Schema, Schema)
	}
	return &r, nil
}

// normalized returns a copy of r with nil lists and maps made empty and the schema set.
func normalized(r *Result) *Result {
	out := *r
	if out.Schema == "" {
		out.Schema = Schema
	}
	if out.ScenarioCells == nil {
		out.ScenarioCells = []ScenarioCell{}
	}
	if out.MissingCells == nil {
		out.MissingCells = []string{}
	}
	out.Cells = make([]Cell, len(r.Cells))
	for i, c := range r.Cells {
		if c.ReconnectTargets == nil {
			c.ReconnectTargets = []string{}
		}
		if c.KernelLog == nil {
			c.KernelLog = []string{}
		}
		if c.Phases == nil {
			c.Phases = map[string]float64{}
		}
		if c.Events == nil {
			c.Events = []event.Event{}
		}
		out.Cells[i] = c
	}
	return &out
}

// writeAtomic writes data to dir/name, creating dir if needed; readers never see a partial file.
func writeAtomic(dir, name string, data []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return atomicfile.WriteBytes(filepath.Join(dir, name), 0o644, data)
}
