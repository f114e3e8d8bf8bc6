package cache

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// sizeUnits are the units ParseSize accepts, case-insensitively: binary with or without "iB"
// (K, KiB: 1024), decimal with "B" (KB: 1000), as du and df print them.
var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
}

// ParseSize parses a size such as "20GiB", "500M", "1.5 TB" or "1048576" (bytes) into bytes.
// It refuses negative sizes, zero and sizes beyond what an int64 holds.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(t)
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := sizeUnits[unit]
	if num == "" || !ok {
		return 0, fmt.Errorf("size %q: want a number and a unit, e.g. 20GiB, 500M or 1.5TB", s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	n := v * mult
	if n < 1 || n >= math.MaxInt64 || math.IsNaN(n) {
		return 0, fmt.Errorf("size %q: want at least 1 byte and at most 8 EiB", s)
	}
	return int64(n), nil
}

// ParseAge parses an age such as "30d", "2w", "1.5d" or any Go duration ("36h", "90m").
// It refuses zero and negative ages.
func ParseAge(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	var d time.Duration
	if num, unit, ok := cutDayUnit(t); ok {
		v, err := strconv.ParseFloat(num, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, fmt.Errorf("age %q: want e.g. 30d, 2w or 36h", s)
		}
		h := v * unit.Hours()
		if h > math.MaxInt64/float64(time.Hour) {
			return 0, fmt.Errorf("age %q: too long", s)
		}
		d = time.Duration(h * float64(time.Hour))
	} else {
		var err error
		if d, err = time.ParseDuration(t); err != nil {
			return 0, fmt.Errorf("age %q: want e.g. 30d, 2w or 36h", s)
		}
	}
	if d <= 0 {
		return 0, errors.New("age " + strconv.Quote(s) + ": want more than zero")
	}
	return d, nil
}

// cutDayUnit splits "30d" and "2w" into the number and its unit.
func cutDayUnit(s string) (string, time.Duration, bool) {
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if num, ok := strings.CutSuffix(s, suffix); ok && num != "" && strings.Trim(num, "0123456789.") == "" {
			return num, unit, true
		}
	}
	return "", 0, false
}
