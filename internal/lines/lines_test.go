package lines

import (
	"slices"
	"testing"
)

func TestWriter(t *testing.T) {
	var seen []string
	w := &Writer{OnLine: func(s string) { seen = append(seen, s) }, Keep: 2}
	for _, chunk := range []string{"a\nb", "c\r\n", "d\ne"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	if want := []string{"a", "bc", "d", "e"}; !slices.Equal(seen, want) {
		t.Errorf("lines = %q, want %q", seen, want)
	}
	if got := w.Tail(); got != "d\ne" {
		t.Errorf("tail = %q, want last two lines", got)
	}
}

func TestTail(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb", 5, "a\nb"},
		{"", 3, ""},
	}
	for _, tt := range tests {
		if got := Tail(tt.s, tt.n); got != tt.want {
			t.Errorf("Tail(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}
