package event

import (
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
