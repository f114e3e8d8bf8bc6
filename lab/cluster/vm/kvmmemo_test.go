package vm

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestKVMMemo(t *testing.T) {
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		record   bool   // a failure is recorded by a memo for host "6.1; qemu 7.2"
		forget   bool   // then forgotten
		host     string // the host that asks
		write    bool   // contents is written as the memo
		contents string
		want     bool
	}{
		{name: "nothing recorded", host: "6.1; qemu 7.2"},
		{name: "recorded on this host", record: true, host: "6.1; qemu 7.2", want: true},
		{name: "recorded on another kernel", record: true, host: "6.12; qemu 7.2"},
		{name: "recorded with another qemu", record: true, host: "6.1; qemu 8.0"},
		{name: "forgotten", record: true, forget: true, host: "6.1; qemu 7.2"},
		{name: "garbled", write: true, contents: "6.1; qemu 7.2\nyesterday\nhung\n", host: "6.1; qemu 7.2"},
		{name: "empty file", write: true, host: "6.1; qemu 7.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writer := NewKVMMemo(dir, "6.1", "qemu 7.2")
			if tt.record {
				if err := writer.Record(errors.New("boot VM under kvm:\nwaiting for the agent"), at); err != nil {
					t.Fatal(err)
				}
			}
			if tt.write {
				if err := os.WriteFile(filepath.Join(dir, KVMMemoFile), []byte(tt.contents), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tt.forget {
				if err := writer.Forget(); err != nil {
					t.Fatal(err)
				}
			}
			reader := KVMMemo{File: filepath.Join(dir, KVMMemoFile), Host: tt.host}
			reason, when, failed := reader.Failed()
			if failed != tt.want {
				t.Fatalf("Failed() = %v, want %v", failed, tt.want)
			}
			if !failed {
				return
			}
			if reason != "boot VM under kvm: waiting for the agent" || !when.Equal(at) {
				t.Errorf("Failed() = %q at %v, want the recorded reason on one line at %v", reason, when, at)
			}
		})
	}
}

func TestKVMMemoZeroValueRemembersNothing(t *testing.T) {
	var m KVMMemo
	if err := m.Record(errors.New("hung"), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, _, failed := m.Failed(); failed {
		t.Error("the zero memo says KVM failed")
	}
	if err := m.Forget(); err != nil {
		t.Fatal(err)
	}
}

func TestKVMMemoForgetWithoutMemo(t *testing.T) {
	if err := NewKVMMemo(t.TempDir(), "6.1", "qemu").Forget(); err != nil {
		t.Fatal(err)
	}
}
