package recipe

import (
	"fmt"
	"sort"
	"strings"
)

// Option is one line of a kernel config: CONFIG_<Name>=<Value>, or Value "n" for
// "# CONFIG_<Name> is not set".
type Option struct {
	// Name is the symbol with its CONFIG_ prefix, e.g. "CONFIG_NFS_FS".
	Name string
	// Value is the text after '=' as written: y, m, n, a number, or a quoted string.
	Value string
}

// String formats the option as a .config line.
func (o Option) String() string {
	if o.Value == "n" {
		return "# " + o.Name + " is not set"
	}
	return o.Name + "=" + o.Value
}

// ParseConfig parses a .config or a config fragment: `CONFIG_X=value` and
// `# CONFIG_X is not set` lines, blank lines and other '#' comments. Values are y, m, n,
// decimal or 0x-hex numbers, or double-quoted strings with \" and \\ escapes. An option set
// twice is an error (in a fragment that is a mistake; Kconfig never writes it). Options are
// returned in file order.
func ParseConfig(data []byte) ([]Option, error) {
	var out []Option
	seen := map[string]int{}
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		line = strings.TrimRight(line, " \t\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		var o Option
		if strings.HasPrefix(line, "#") {
			name, ok := notSetName(line)
			if !ok {
				continue // a comment
			}
			o = Option{Name: name, Value: "n"}
		} else {
			name, value, ok := strings.Cut(line, "=")
			if !ok {
				return nil, fmt.Errorf("line %d: want CONFIG_X=value or \"# CONFIG_X is not set\", got %q", n, line)
			}
			if !symbolName(name) {
				return nil, fmt.Errorf("line %d: bad option name %q", n, name)
			}
			if err := checkValue(value); err != nil {
				return nil, fmt.Errorf("line %d: %s: %w", n, name, err)
			}
			o = Option{Name: name, Value: value}
		}
		if prev, dup := seen[o.Name]; dup {
			return nil, fmt.Errorf("line %d: %s already set on line %d", n, o.Name, prev)
		}
		seen[o.Name] = n
		out = append(out, o)
	}
	return out, nil
}

// notSetName returns X from "# X is not set" when X is a CONFIG_ symbol.
func notSetName(line string) (string, bool) {
	rest, ok := strings.CutPrefix(line, "# ")
	if !ok {
		return "", false
	}
	name, ok := strings.CutSuffix(rest, " is not set")
	if !ok || !symbolName(name) {
		return "", false
	}
	return name, true
}

// symbolName reports whether s is CONFIG_ followed by one or more of [A-Za-z0-9_].
func symbolName(s string) bool {
	rest, ok := strings.CutPrefix(s, "CONFIG_")
	if !ok || rest == "" {
		return false
	}
	for _, c := range rest {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func checkValue(v string) error {
	switch {
	case v == "y", v == "m", v == "n":
		return nil
	case strings.HasPrefix(v, `"`):
		return checkQuoted(v)
	case strings.HasPrefix(v, "0x") || strings.HasPrefix(v, "0X"):
		if len(v) == 2 || strings.TrimLeft(v[2:], "0123456789abcdefABCDEF") != "" {
			return fmt.Errorf("bad hex value %q", v)
		}
		return nil
	default:
		digits := strings.TrimPrefix(v, "-")
		if digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
			return fmt.Errorf("bad value %q: want y, m, n, a number or a quoted string", v)
		}
		return nil
	}
}

// checkQuoted accepts "..." where '"' and '\' inside are escaped with '\'.
func checkQuoted(v string) error {
	if len(v) < 2 || v[len(v)-1] != '"' {
		return fmt.Errorf("unterminated string %s", v)
	}
	body := v[1 : len(v)-1]
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '\\':
			if i+1 == len(body) {
				return fmt.Errorf("bad escape at the end of %s", v)
			}
			i++
		case '"':
			return fmt.Errorf("unescaped quote in %s", v)
		}
	}
	return nil
}

// Mismatch is an option of a fragment that the final .config does not have.
type Mismatch struct {
	Name string
	// Want is the value in the fragment, Got the value in the final .config ("n" when the
	// option is absent or not set).
	Want, Got string
}

func (m Mismatch) String() string {
	show := func(v string) string {
		if v == "n" {
			return "not set"
		}
		return v
	}
	return fmt.Sprintf("%s (want %s, got %s)", m.Name, show(m.Want), show(m.Got))
}

// Verify compares the options of a fragment with a final .config. It returns the options
// whose value differs (an option that is absent counts as "n", so "# X is not set" in the
// fragment is satisfied by a symbol that does not exist), and the options the final .config
// builds as modules, sorted by name. Both empty means the config is what the recipe asked for.
func Verify(want, final []Option) (mismatches []Mismatch, modules []string) {
	got := make(map[string]string, len(final))
	for _, o := range final {
		got[o.Name] = o.Value
		if o.Value == "m" {
			modules = append(modules, o.Name)
		}
	}
	for _, w := range want {
		g, ok := got[w.Name]
		if !ok {
			g = "n"
		}
		if g != w.Value {
			mismatches = append(mismatches, Mismatch{Name: w.Name, Want: w.Value, Got: g})
		}
	}
	sort.Slice(mismatches, func(i, j int) bool { return mismatches[i].Name < mismatches[j].Name })
	sort.Strings(modules)
	return mismatches, modules
}

// ConfigError is returned by Build when the configured kernel lacks options the recipe asked
// for, or would build some as modules.
type ConfigError struct {
	Recipe     string
	Mismatches []Mismatch
	Modules    []string
}

func (e *ConfigError) Error() string {
	var parts []string
	if len(e.Mismatches) > 0 {
		s := make([]string, len(e.Mismatches))
		for i, m := range e.Mismatches {
			s[i] = m.String()
		}
		parts = append(parts, fmt.Sprintf("%d option(s) of the config fragment did not stick after make olddefconfig (a missing dependency, or no such symbol in this kernel): %s",
			len(e.Mismatches), strings.Join(s, ", ")))
	}
	if len(e.Modules) > 0 {
		parts = append(parts, fmt.Sprintf("%d option(s) would be built as modules, which the guest never loads (set them =y or off in the fragment): %s",
			len(e.Modules), strings.Join(e.Modules, ", ")))
	}
	return fmt.Sprintf("kernel recipe %s: %s", e.Recipe, strings.Join(parts, "; "))
}
