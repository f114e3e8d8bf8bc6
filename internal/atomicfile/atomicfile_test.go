package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name    string
		fill    func(io.Writer) error
		want    string // the file's content afterwards; "" when it must not exist
		wantErr bool
	}{
		{name: "written", fill: func(w io.Writer) error { _, err := io.WriteString(w, "new\n"); return err }, want: "new\n"},
		{name: "fill fails", fill: func(io.Writer) error { return errors.New("boom") }, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f.txt")
			err := Write(path, 0o640, tt.fill)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Write: %v, want error %v", err, tt.wantErr)
			}
			entries, _ := os.ReadDir(dir)
			if tt.want == "" {
				if len(entries) != 0 {
					t.Fatalf("after a failed write the directory holds %v", entries)
				}
				return
			}
			b, err := os.ReadFile(path)
			if err != nil || string(b) != tt.want {
				t.Fatalf("content %q, %v; want %q", b, err, tt.want)
			}
			st, _ := os.Stat(path)
			if st.Mode().Perm() != 0o640 || len(entries) != 1 {
				t.Errorf("mode %v, %d entries: want 0640 and no temporary file left", st.Mode().Perm(), len(entries))
			}
		})
	}
}
