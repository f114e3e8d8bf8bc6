package gomod

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	ok := `{"Path":"m","Version":"v1.0.0","Dir":"/c/m@v1.0.0","Zip":"/c/m/@v/v1.0.0.zip","Sum":"h1:x"}`
	tests := []struct {
		name, out, stderr string
		runErr            error
		wantErr           string
	}{
		{"downloaded", ok, "", nil, ""},
		{"the go command's own reason", `{"Path":"m","Version":"v9","Error":"m@v9: reading https://proxy.golang.org/m/@v/v9.info: 404 Not Found"}`, "", errors.New("exit status 1"), "go mod download m@v9: m@v9: reading https://proxy.golang.org/m/@v/v9.info: 404 Not Found"},
		{"no JSON, stderr kept", "", "go: cannot find GOROOT", errors.New("exit status 1"), "go mod download m@v9: exit status 1: go: cannot find GOROOT"},
		{"not JSON", "garbage", "", nil, "reading its output"},
		{"no directory", `{"Path":"m","Version":"v1.0.0"}`, "", nil, "no directory or zip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parse("m@v9", []byte(tt.out), tt.runErr, tt.stderr)
			if tt.wantErr == "" {
				if err != nil || m.Dir != "/c/m@v1.0.0" || m.Zip == "" {
					t.Fatalf("parse = %+v, %v", m, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("parse error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}
