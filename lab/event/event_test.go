package event

import (
	"reflect"
	"strings"
	"testing"
)

func TestDecodeValidates(t *testing.T) {
	tests := []struct {
		line string
		err  string
	}{
		{`{"mono_ns": 1, "cell": -1, "kind": "ready"}`, ""},
		{`{"mono_ns": 1, "cell": -1, "kind": "observe", "sync": {"clock_skew_ns": -4000000000, "clock_set": true, "reseeded": true}}`, ""},
		{`{"mono_ns": 1, "cell": -1, "kind": "observe"}`, "exactly one piece of evidence, has 0"},
		{`{"mono_ns": 1, "cell": -1, "kind": "observe", "sync": {}, "mount": {}}`, "exactly one piece of evidence, has 2"},
		{`{"mono_ns": 1, "cell": -1, "kind": "hello"}`, "without hello payload"},
		{`{"mono_ns": 1, "cell": -1, "kind": "resumed"}`, `unknown event kind "resumed"`},
	}
	for _, tt := range tests {
		_, err := Decode([]byte(tt.line))
		if (tt.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("Decode(%s) = %v, want error %q", tt.line, err, tt.err)
		}
	}
}

// TestEveryEvidenceValidates: each piece of evidence an observe event may carry (every pointer
// field of Event but the payloads of other kinds) passes Validate alone: a new kind of evidence
// the check does not count would cut the agent's stream at the host.
func TestEveryEvidenceValidates(t *testing.T) {
	others := map[string]bool{"Hello": true, "Verdict": true, "Kept": true}
	typ := reflect.TypeFor[Event]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Type.Kind() != reflect.Pointer || others[f.Name] {
			continue
		}
		var e Event
		e.Kind = KindObserve
		reflect.ValueOf(&e).Elem().Field(i).Set(reflect.New(f.Type.Elem()))
		if err := e.Validate(); err != nil {
			t.Errorf("an observe event with %s alone: %v", f.Name, err)
		}
	}
}
