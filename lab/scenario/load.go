package scenario

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
)

// Summary describes a built-in scenario for `nfslab scenarios`.
type Summary struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

// Load finds a scenario by reference: the name of a built-in in fsys ("default" or
// "default.yaml"), else a path to a file. A reference with a slash is always a path, so
// "./default.yaml" reads the file even if a built-in has that name. fsys may be nil.
func Load(ref string, fsys fs.FS) (*Scenario, error) {
	if ref == "" {
		return nil, errors.New("no scenario given: name a built-in scenario or a file")
	}
	if fsys != nil && !strings.ContainsAny(ref, `/\`) {
		names := []string{ref + ".yaml", ref}
		if strings.HasSuffix(ref, ".yaml") {
			names = names[1:]
		}
		for _, name := range names {
			if !fs.ValidPath(name) {
				continue
			}
			data, err := fs.ReadFile(fsys, name)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("read built-in scenario %s: %w", name, err)
			}
			return Parse(name, data)
		}
	}
	data, err := os.ReadFile(ref)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && fsys != nil && !strings.ContainsAny(ref, `/\`) {
			if names, lerr := builtinFiles(fsys); lerr == nil {
				return nil, fmt.Errorf("scenario %q: no such built-in (%s) and no such file", ref, strings.Join(names, ", "))
			}
		}
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	return Parse(ref, data)
}

// Builtins parses every *.yaml file at the top of fsys and returns their names and
// descriptions, sorted by name.
func Builtins(fsys fs.FS) ([]Summary, error) {
	files, err := fs.Glob(fsys, "*.yaml")
	if err != nil {
		return nil, fmt.Errorf("list built-in scenarios: %w", err)
	}
	out := make([]Summary, 0, len(files))
	for _, f := range files {
		data, err := fs.ReadFile(fsys, f)
		if err != nil {
			return nil, fmt.Errorf("read built-in scenario %s: %w", f, err)
		}
		s, err := Parse(f, data)
		if err != nil {
			return nil, fmt.Errorf("built-in scenario: %w", err)
		}
		out = append(out, Summary{Name: s.Name, Description: s.Description})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func builtinFiles(fsys fs.FS) ([]string, error) {
	files, err := fs.Glob(fsys, "*.yaml")
	if err != nil {
		return nil, err
	}
	for i, f := range files {
		files[i] = strings.TrimSuffix(path.Base(f), ".yaml")
	}
	return files, nil
}
