package scenario

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// MaxFileSize bounds a scenario file; real ones are a few hundred bytes.
const MaxFileSize = 1 << 20

// Parse reads a scenario file strictly, applies the defaults and validates it. file names the
// file in errors. Any problem is reported as an *Error that lists all of them: YAML syntax
// errors with their line, unknown fields, values of the wrong type, and everything Validate
// finds.
func Parse(file string, data []byte) (s *Scenario, err error) {
	defer func() {
		// The YAML decoder is third-party code; a panic on hostile input must not take the
		// CLI down with it.
		if r := recover(); r != nil {
			s, err = nil, &Error{File: file, Problems: []Problem{{Msg: fmt.Sprintf("cannot parse this file: %v", r)}}}
		}
	}()
	if len(data) > MaxFileSize {
		return nil, &Error{File: file, Problems: []Problem{{Msg: fmt.Sprintf("file is %d bytes, more than the %d a scenario may have", len(data), MaxFileSize)}}}
	}

	// Syntax and duplicate keys first: they come with line numbers.
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, &Error{File: file, Problems: yamlProblems(err)}
	}

	// Then the shape of the document against the types, reporting every unknown field and
	// every value of the wrong type with its path, and dropping them so that the rest can
	// still be decoded and validated in the same pass.
	var tree any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&tree); err != nil {
		return nil, &Error{File: file, Problems: []Problem{{Msg: fmt.Sprintf("cannot read the document: %v", err)}}}
	}
	var p problems
	var bad []string
	clean := shape(tree, reflect.TypeFor[Scenario](), "", &p, &bad)
	if contains(bad, "") {
		return nil, p.err(file)
	}
	src := data
	if len(bad) > 0 {
		if src, err = json.Marshal(clean); err != nil {
			return nil, &Error{File: file, Problems: append(p.list, Problem{Msg: fmt.Sprintf("cannot re-encode the document: %v", err)})}
		}
	}

	var sc Scenario
	if err := yaml.UnmarshalStrict(src, &sc); err != nil {
		return nil, &Error{File: file, Problems: append(p.list, Problem{Msg: decodeMsg(err)})}
	}
	sc.applyDefaults()
	list := p.list
	if verr := sc.Validate(); verr != nil {
		var e *Error
		if !errors.As(verr, &e) {
			return nil, fmt.Errorf("%s: %w", file, verr)
		}
		list = append(list, without(e.Problems, bad)...)
	}
	if len(list) > 0 {
		return nil, &Error{File: file, Problems: list}
	}
	return &sc, nil
}

// applyDefaults fills the fields a file may leave out, except timeouts.setup, whose default
// depends on each cell's cluster form (Cells applies it).
func (s *Scenario) applyDefaults() {
	if len(s.Matrix.Clusters) == 0 {
		s.Matrix.Clusters = []string{DefaultCluster}
	}
	if len(s.Matrix.Protocols) == 0 {
		s.Matrix.Protocols = []string{ProtocolNFS}
	}
	if len(s.Matrix.NFS) == 0 && slices.Contains(s.Matrix.Protocols, ProtocolNFS) {
		s.Matrix.NFS = []string{DefaultNFS}
	}
	if len(s.Matrix.Faults) == 0 {
		s.Matrix.Faults = []string{DefaultFault}
	}
	if s.Expect.Default == "" {
		s.Expect.Default = DefaultExpect
	}
	if s.Service.VIP == "" {
		s.Service.VIP = DefaultVIP
	}
	if s.Service.Port == 0 {
		s.Service.Port = DefaultPort
	}
	if s.Topology.NodeCIDR == "" {
		s.Topology.NodeCIDR = DefaultNodeCIDR
	}
	if s.Topology.BackendA == "" {
		s.Topology.BackendA = DefaultBackendA
	}
	if s.Topology.BackendB == "" {
		s.Topology.BackendB = DefaultBackendB
	}
	if s.Timeouts.Recovery.Duration == 0 {
		s.Timeouts.Recovery.Duration = DefaultRecovery
	}
	if s.Timeouts.Probe.Duration == 0 {
		s.Timeouts.Probe.Duration = DefaultProbe
	}
	if s.Failover.SocketLBNoBackend == "" {
		s.Failover.SocketLBNoBackend = NoBackendRefuse
	}
}

// yamlProblems turns a YAML decoder error into problems, one per line it names.
func yamlProblems(err error) []Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "unmarshal errors:\n"); ok {
		var out []Problem
		for _, l := range strings.Split(rest, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, Problem{Msg: l})
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	return []Problem{{Msg: msg}}
}

// decodeMsg strips the layers sigs.k8s.io/yaml adds to a decoding error.
func decodeMsg(err error) string {
	msg := err.Error()
	for _, p := range []string{"error converting YAML to JSON: ", "error unmarshaling JSON: ", "while decoding JSON: ", "json: ", "yaml: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return msg
}

// shape checks a decoded document against type t, reports unknown fields and values of the
// wrong type, and returns the document without them. Paths of the dropped values are added to
// bad, so that Validate's follow-on complaints about them can be hidden.
func shape(v any, t reflect.Type, path string, p *problems, bad *[]string) any {
	if v == nil {
		return nil
	}
	fail := func(msg string) any {
		p.add(path, msg)
		*bad = append(*bad, path)
		return nil
	}
	switch {
	case t == reflect.TypeFor[Duration]():
		s, ok := v.(string)
		if !ok {
			return fail(fmt.Sprintf("want a duration such as \"60s\", got %s", describe(v)))
		}
		if _, err := parseDuration(s); err != nil {
			return fail(err.Error())
		}
		return v
	case t.Kind() == reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return fail("want a mapping of keys to values, got " + describe(v))
		}
		fields, names := jsonFields(t)
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make(map[string]any, len(m))
		for _, k := range keys {
			fp := joinPath(path, k)
			ft, ok := fields[k]
			if !ok {
				p.add(fp, fmt.Sprintf("unknown field%s; known fields here: %s", didYouMean(k, names), strings.Join(names, ", ")))
				*bad = append(*bad, fp)
				continue
			}
			out[k] = shape(m[k], ft, fp, p, bad)
		}
		return out
	case t.Kind() == reflect.Slice:
		l, ok := v.([]any)
		if !ok {
			return fail("want a list, got " + describe(v))
		}
		out := make([]any, len(l))
		for i, e := range l {
			out[i] = shape(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), p, bad)
		}
		return out
	case t.Kind() == reflect.String:
		switch v.(type) {
		case string, json.Number, bool: // numbers and booleans are read as their text
			return v
		}
		return fail("want a text value, got " + describe(v))
	case t.Kind() == reflect.Int:
		n, ok := v.(json.Number)
		if !ok {
			return fail("want a whole number, got " + describe(v))
		}
		if _, err := n.Int64(); err != nil {
			return fail("want a whole number, got " + describe(v))
		}
		return v
	}
	return v
}

// jsonFields maps the JSON names of t's fields to their types, and lists the names in order.
func jsonFields(t reflect.Type) (map[string]reflect.Type, []string) {
	fields := make(map[string]reflect.Type, t.NumField())
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fields[name] = f.Type
		names = append(names, name)
	}
	return fields, names
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// describe names a decoded value for an error message.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		if len(v) > 40 {
			v = v[:40] + "…"
		}
		return fmt.Sprintf("the text %q", v)
	case json.Number:
		return "the number " + v.String()
	case bool:
		return fmt.Sprintf("%t", v)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%v", v)
}
