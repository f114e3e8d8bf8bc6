package cache

import (
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"20GiB", 20 << 30, true},
		{"20G", 20 << 30, true},
		{"20gb", 20e9, true},
		{"1.5 TiB", 3 << 39, true},
		{"500M", 500 << 20, true},
		{"1048576", 1 << 20, true},
		{" 7 KiB ", 7 << 10, true},
		{"", 0, false},
		{"GiB", 0, false},
		{"20 parsecs", 0, false},
		{"-1G", 0, false},
		{"0", 0, false},
		{"0.1", 0, false},
		{"1e3", 0, false},
		{".", 0, false},
		{"9999999999T", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseAge(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30d", 30 * day, true},
		{"2w", 14 * day, true},
		{"1.5d", 36 * time.Hour, true},
		{"36h", 36 * time.Hour, true},
		{"90m", 90 * time.Minute, true},
		{"", 0, false},
		{"d", 0, false},
		{"0d", 0, false},
		{"-3h", 0, false},
		{"30 days", 0, false},
		{"1e400d", 0, false},
		{"99999999999999999999d", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseAge(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseAge(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// FuzzParseSize: any input gives a positive size or an error, never a panic.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"20GiB", "1.5 TB", "0", "-1G", "9999999999T", "1e3", "..."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err == nil && n <= 0 {
			t.Errorf("ParseSize(%q) = %d with no error", s, n)
		}
	})
}

// FuzzParseAge: any input gives a positive age or an error, never a panic.
func FuzzParseAge(f *testing.F) {
	for _, s := range []string{"30d", "2w", "36h", "-3h", "1e400d", "99999999999999999999d", "0.0001w"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseAge(s)
		if err == nil && d <= 0 {
			t.Errorf("ParseAge(%q) = %v with no error", s, d)
		}
	})
}
