package cilium

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	"sigs.k8s.io/yaml"
)

// MaxValuesFileSize bounds a user's values file; Cilium's own values.yaml is about 150 KB.
const MaxValuesFileSize = 1 << 20

// ValuesError lists what is wrong with a values file, one line per problem:
// "file: key: what is wrong".
type ValuesError struct {
	File     string
	Problems []ValuesProblem
}

// ValuesProblem is one problem: the dotted key it is about ("" for the file as a whole).
type ValuesProblem struct{ Key, Msg string }

func (e *ValuesError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = e.File + ": " + p.Msg
		if p.Key != "" {
			lines[i] = e.File + ": " + p.Key + ": " + p.Msg
		}
	}
	return strings.Join(lines, "\n")
}

// ParseValues reads a user's Helm values file (--cilium-values) for cells of the given Cilium
// datapaths: a YAML mapping that sets none of the values nfslab owns (Owned). file names the
// file in errors, which are *ValuesError. What the chart makes of the rest is the chart's
// business (its schema is checked when it is rendered).
func ParseValues(file string, data []byte, datapaths []string) (vals map[string]any, err error) {
	defer func() {
		// The YAML decoder is third-party code; a panic on hostile input must not take the CLI
		// down with it.
		if r := recover(); r != nil {
			vals, err = nil, fileErr(file, "", fmt.Sprintf("cannot parse this file: %v", r))
		}
	}()
	if len(data) > MaxValuesFileSize {
		return nil, fileErr(file, "", fmt.Sprintf("file is %d bytes, more than the %d a values file may have", len(data), MaxValuesFileSize))
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fileErr(file, "", "not YAML: "+strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var doc any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, fileErr(file, "", fmt.Sprintf("cannot read the document: %v", err))
	}
	switch d := doc.(type) {
	case nil:
		vals = map[string]any{} // an empty file sets nothing
	case map[string]any:
		vals = d
	default:
		return nil, fileErr(file, "", "want a mapping of Helm values (key: value), got "+describe(doc))
	}
	if p := ownedProblems(vals, datapaths); len(p) > 0 {
		return nil, &ValuesError{File: file, Problems: p}
	}
	return numbersToGo(vals).(map[string]any), nil
}

func fileErr(file, key, msg string) error {
	return &ValuesError{File: file, Problems: []ValuesProblem{{Key: key, Msg: msg}}}
}

// ownedProblems reports each owned key the user's values set, and each value that is not a
// mapping where an owned key lies below it.
func ownedProblems(vals map[string]any, datapaths []string) []ValuesProblem {
	var out []ValuesProblem
	seen := map[string]bool{}
	for _, key := range Owned() {
		parts := strings.Split(key, ".")
		for i := 1; i < len(parts); i++ {
			parent := strings.Join(parts[:i], ".")
			if seen[parent] || !lookup(vals, parent) || isMapping(vals, parent) {
				continue
			}
			seen[parent] = true
			out = append(out, ValuesProblem{parent, fmt.Sprintf("nfslab sets %s below it, so it must be a mapping; remove it", key)})
		}
		if !seen[key] && lookup(vals, key) {
			seen[key] = true
			out = append(out, ValuesProblem{key, whyOwned(key, datapaths)})
		}
	}
	return out
}

// whyOwned says which of the datapaths sets key, or that nfslab keeps Cilium's default for it.
func whyOwned(key string, datapaths []string) string {
	if len(datapaths) == 0 {
		datapaths = Datapaths()
	}
	for _, d := range datapaths {
		if v, err := Required(d, Setup{}); err == nil && lookup(v, key) {
			return fmt.Sprintf("set by nfslab for datapath %s; remove it", d)
		}
	}
	return fmt.Sprintf("left at Cilium's default by nfslab for datapath %s, whose meaning depends on it; remove it", datapaths[0])
}

func isMapping(v map[string]any, key string) bool {
	head, rest, nested := strings.Cut(key, ".")
	x := v[head]
	m, ok := x.(map[string]any)
	if !nested {
		return ok
	}
	return ok && isMapping(m, rest)
}

// numbersToGo turns the decoder's json.Number into int64 or float64, as Helm's own YAML
// reading would give the chart.
func numbersToGo(v any) any {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	case map[string]any:
		for k, x := range v {
			v[k] = numbersToGo(x)
		}
	case []any:
		for i, x := range v {
			v[i] = numbersToGo(x)
		}
	}
	return v
}

// describe names a decoded value for an error message.
func describe(v any) string {
	switch v.(type) {
	case []any:
		return "a list"
	case string:
		return "a text"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("%T", v)
}

// Merge returns the user's values with nfslab's on top: a key both set takes nfslab's value
// (ParseValues refuses such a file; Merge does not rely on it). Neither input is changed.
func Merge(user, nfslab map[string]any) map[string]any {
	out := make(map[string]any, len(user)+len(nfslab))
	maps.Copy(out, user)
	for k, n := range nfslab {
		um, uok := out[k].(map[string]any)
		nm, nok := n.(map[string]any)
		if uok && nok {
			out[k] = Merge(um, nm)
			continue
		}
		if nok {
			out[k] = Merge(nil, nm) // a copy, so that the result never aliases nfslab's map
			continue
		}
		out[k] = n
	}
	return out
}
