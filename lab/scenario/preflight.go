package scenario

import "fmt"

// CheckKernels runs check on every kernel of the matrix (kernel.Preflight, which looks at kernel
// image files: whether they exist, are x86 bzImages and have what the lab needs) and returns an
// *Error that names file and field[i] for each kernel that fails. field is "matrix.kernels" for
// the file's own list, or the flag that replaced it ("--kernel", with file empty).
func (s *Scenario) CheckKernels(file, field string, check func(string) error) error {
	var p problems
	for i, k := range s.Matrix.Kernels {
		if err := check(k); err != nil {
			p.add(fmt.Sprintf("%s[%d]", field, i), err.Error())
		}
	}
	return p.err(file)
}
