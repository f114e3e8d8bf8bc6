package hosttools

import (
	"errors"
	"os/exec"
	"slices"
	"testing"
)

func TestMissingError(t *testing.T) {
	tests := []struct {
		name string
		err  MissingError
		want string
	}{
		{
			name: "general",
			err:  MissingError{Missing: []string{"apt-get", "depmod"}, Packages: []string{"apt", "kmod"}, AptOptions: NoRecommends},
			want: "missing host tools: apt-get, depmod; install them with: apt-get install --no-install-recommends apt kmod",
		},
		{
			name: "with a purpose",
			err:  MissingError{For: "building a kernel", Missing: []string{"bc"}, Packages: []string{"bc"}, AptOptions: "-y"},
			want: "missing host tools for building a kernel: bc; install them with: apt-get install -y bc",
		},
		{
			name: "no options",
			err:  MissingError{Missing: []string{"tar"}, Packages: []string{"tar"}},
			want: "missing host tools: tar; install them with: apt-get install tar",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCheckWith(t *testing.T) {
	s := Set{For: "testing", AptOptions: "-y", Tools: []Tool{
		{Command: "make", Package: "build-essential"},
		{File: "/usr/include/gelf.h", Package: "libelf-dev"},
		{Command: "gcc", Package: "build-essential"},
	}}
	err := s.CheckWith(func(string) error { return exec.ErrNotFound }, func(string) bool { return false })
	var me *MissingError
	if !errors.As(err, &me) {
		t.Fatalf("err = %v, want *MissingError", err)
	}
	want := MissingError{For: "testing", AptOptions: "-y",
		Missing: []string{"make", "/usr/include/gelf.h", "gcc"}, Packages: []string{"build-essential", "libelf-dev"}}
	if me.For != want.For || me.AptOptions != want.AptOptions || !slices.Equal(me.Missing, want.Missing) || !slices.Equal(me.Packages, want.Packages) {
		t.Errorf("CheckWith = %+v, want %+v", *me, want)
	}
}

func TestRequire(t *testing.T) {
	if _, err := Require("sh", "dash"); err != nil {
		t.Errorf("Require(sh): %v", err)
	}
	_, err := Require("nfslab-no-such-command", "nfslab")
	var me *MissingError
	if !errors.As(err, &me) || me.InstallCommand() != "apt-get install --no-install-recommends nfslab" {
		t.Errorf("Require(missing) = %v, want a *MissingError installing nfslab", err)
	}
}
