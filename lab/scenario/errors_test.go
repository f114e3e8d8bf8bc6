package scenario

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestManyProblemsBounded: a file with thousands of problems prints the first MaxShown and
// how many more, each line naming the file and the field.
func TestManyProblemsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("name: t\nmatrix:\n  kernels: [debian-stock]\n  datapaths:\n")
	const n = 5000
	for i := range n {
		fmt.Fprintf(&b, "    - dp%d\n", i)
	}
	_, err := Parse("big.yaml", []byte(b.String()))
	var e *Error
	if !errors.As(err, &e) || len(e.Problems) != n {
		t.Fatalf("Parse: %T with %d problems, want an *Error with %d", err, len(e.Problems), n)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != MaxShown+1 {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), MaxShown+1, err)
	}
	if lines[0] != `big.yaml: matrix.datapaths[0]: unknown datapath "dp0" (want kube-proxy, kube-proxy-ipvs, kube-proxy-nftables or socket-lb)` {
		t.Errorf("first line %q", lines[0])
	}
	if want := fmt.Sprintf("big.yaml: … and %d more problem(s)", n-MaxShown); lines[MaxShown] != want {
		t.Errorf("last line %q, want %q", lines[MaxShown], want)
	}
	small := &Error{File: "f.yaml", Problems: make([]Problem, MaxShown)}
	if got := strings.Count(small.Error(), "\n") + 1; got != MaxShown || strings.Contains(small.Error(), "more") {
		t.Errorf("exactly MaxShown problems rendered as %d lines: %q", got, small.Error())
	}
}

// TestCheckKernels: kernels that fail the check are reported with the file and their index in
// the list they came from.
func TestCheckKernels(t *testing.T) {
	s := &Scenario{Matrix: Matrix{Kernels: []string{"debian-stock", "/k/missing/bzImage", "vulnerable-6.1", "/k/other"}}}
	check := func(k string) error {
		if strings.HasPrefix(k, "/k/") {
			return fmt.Errorf("kernel image %s: no such file", k)
		}
		return nil
	}
	err := s.CheckKernels("my.yaml", "matrix.kernels", check)
	want := "my.yaml: matrix.kernels[1]: kernel image /k/missing/bzImage: no such file\n" +
		"my.yaml: matrix.kernels[3]: kernel image /k/other: no such file"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	if err := s.CheckKernels("", "--kernel", check); err == nil || !strings.HasPrefix(err.Error(), "--kernel[1]: ") {
		t.Errorf("from a flag: %v", err)
	}
	if err := s.CheckKernels("my.yaml", "matrix.kernels", func(string) error { return nil }); err != nil {
		t.Errorf("all good: %v", err)
	}
}
