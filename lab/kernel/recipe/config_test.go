package recipe

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Option
		wantErr string
	}{
		{name: "empty"},
		{name: "comments and blanks", in: "# a comment\n\n#CONFIG_X is not set\n   \n"},
		{name: "values", in: "CONFIG_A=y\nCONFIG_B=m\nCONFIG_C=n\nCONFIG_D=42\nCONFIG_E=-1\nCONFIG_F=0x1F\nCONFIG_G=\"-lab \\\"q\\\" \\\\\"\nCONFIG_H=\"\"\n",
			want: []Option{{"CONFIG_A", "y"}, {"CONFIG_B", "m"}, {"CONFIG_C", "n"}, {"CONFIG_D", "42"}, {"CONFIG_E", "-1"},
				{"CONFIG_F", "0x1F"}, {"CONFIG_G", `"-lab \"q\" \\"`}, {"CONFIG_H", `""`}}},
		{name: "not set", in: "# CONFIG_SOUND is not set\n", want: []Option{{"CONFIG_SOUND", "n"}}},
		{name: "CRLF and trailing space", in: "CONFIG_A=y \r\n# CONFIG_B is not set\r\n", want: []Option{{"CONFIG_A", "y"}, {"CONFIG_B", "n"}}},
		{name: "9P symbol", in: "CONFIG_9P_FS=y", want: []Option{{"CONFIG_9P_FS", "y"}}},
		{name: "no equals", in: "CONFIG_A\n", wantErr: "line 1: want CONFIG_X=value"},
		{name: "no prefix", in: "NFS_FS=y\n", wantErr: `line 1: bad option name "NFS_FS"`},
		{name: "leading space", in: " CONFIG_A=y\n", wantErr: "bad option name"},
		{name: "empty name", in: "CONFIG_=y\n", wantErr: "bad option name"},
		{name: "bad value", in: "CONFIG_A=yes\n", wantErr: `bad value "yes"`},
		{name: "empty value", in: "CONFIG_A=\n", wantErr: "bad value"},
		{name: "bad hex", in: "CONFIG_A=0xZZ\n", wantErr: "bad hex"},
		{name: "unterminated string", in: "CONFIG_A=\"abc\n", wantErr: "unterminated"},
		{name: "unescaped quote", in: "CONFIG_A=\"a\"b\"\n", wantErr: "unescaped quote"},
		{name: "dangling escape", in: "CONFIG_A=\"a\\\"\n", wantErr: "bad escape"},
		{name: "duplicate", in: "CONFIG_A=y\n\n# CONFIG_A is not set\n", wantErr: "line 3: CONFIG_A already set on line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseConfig([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseConfig error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ParseConfig = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	tests := []struct {
		name           string
		want, final    string
		wantMismatches []Mismatch
		wantModules    []string
	}{
		{name: "all stuck", want: "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_S=\"x\"\n",
			final: "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_S=\"x\"\nCONFIG_Z=y\n"},
		{name: "not set satisfied by an absent symbol", want: "# CONFIG_GONE is not set\n", final: "CONFIG_A=y\n"},
		{name: "dropped by a dependency", want: "CONFIG_KPROBES=y\nCONFIG_A=y\n", final: "# CONFIG_KPROBES is not set\nCONFIG_A=y\n",
			wantMismatches: []Mismatch{{"CONFIG_KPROBES", "y", "n"}}},
		{name: "no such symbol", want: "CONFIG_NFT_CHAIN_NAT=y\n", final: "CONFIG_A=y\n",
			wantMismatches: []Mismatch{{"CONFIG_NFT_CHAIN_NAT", "y", "n"}}},
		{name: "selected on", want: "# CONFIG_B is not set\n", final: "CONFIG_B=y\n",
			wantMismatches: []Mismatch{{"CONFIG_B", "n", "y"}}},
		{name: "string and sorted", want: "CONFIG_Z=y\nCONFIG_S=\"a\"\n", final: "CONFIG_S=\"b\"\nCONFIG_Z=m\n",
			wantMismatches: []Mismatch{{"CONFIG_S", `"a"`, `"b"`}, {"CONFIG_Z", "y", "m"}}, wantModules: []string{"CONFIG_Z"}},
		{name: "modules", want: "CONFIG_A=y\n", final: "CONFIG_M2=m\nCONFIG_A=y\nCONFIG_M1=m\n", wantModules: []string{"CONFIG_M1", "CONFIG_M2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := ParseConfig([]byte(tt.want))
			if err != nil {
				t.Fatal(err)
			}
			final, err := ParseConfig([]byte(tt.final))
			if err != nil {
				t.Fatal(err)
			}
			mm, mods := Verify(want, final)
			if !slices.Equal(mm, tt.wantMismatches) || !slices.Equal(mods, tt.wantModules) {
				t.Errorf("Verify = %v, %v; want %v, %v", mm, mods, tt.wantMismatches, tt.wantModules)
			}
		})
	}
}

func TestConfigError(t *testing.T) {
	var err error = &ConfigError{
		Recipe:     "vulnerable-6.1",
		Mismatches: []Mismatch{{"CONFIG_KPROBES", "y", "n"}, {"CONFIG_B", "n", "y"}},
		Modules:    []string{"CONFIG_EFIVAR_FS"},
	}
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatal("not a *ConfigError")
	}
	msg := err.Error()
	for _, want := range []string{
		"kernel recipe vulnerable-6.1",
		"2 option(s) of the config fragment did not stick",
		"CONFIG_KPROBES (want y, got not set)",
		"CONFIG_B (want not set, got y)",
		"1 option(s) would be built as modules",
		"CONFIG_EFIVAR_FS",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("Error() = %q, lacks %q", msg, want)
		}
	}
}

// FuzzParseConfig checks that ParseConfig never panics, and that what it accepts survives a
// round trip through Option.String.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"CONFIG_A=y\n# CONFIG_B is not set\n",
		"CONFIG_S=\"a \\\"b\\\" \\\\\"\nCONFIG_H=0x10\nCONFIG_N=-3\n",
		"# comment\n\nCONFIG_A=m\r\n",
		"CONFIG_A=n\n",
		"CONFIG_A=\"\n",
		"# CONFIG_ is not set\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		opts, err := ParseConfig(data)
		if err != nil {
			return
		}
		lines := make([]string, len(opts))
		for i, o := range opts {
			if !symbolName(o.Name) {
				t.Fatalf("accepted bad name %q", o.Name)
			}
			lines[i] = o.String()
		}
		again, err := ParseConfig([]byte(strings.Join(lines, "\n")))
		if err != nil {
			t.Fatalf("re-parsing %q: %v", lines, err)
		}
		if !slices.Equal(opts, again) {
			t.Fatalf("round trip: %q became %q", opts, again)
		}
	})
}
