package nfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
)

// BaselineName is the file WriteBaseline creates and every Probe reads back: data written
// through the first backend that must still be readable through its replacement.
const BaselineName = "baseline"

// probeSize is how many bytes a probe writes: one page, so write-back really goes to the server.
const probeSize = 4096

// ProbeName is the name of the file Probe number seq writes.
func ProbeName(seq int) string { return "probe-" + strconv.Itoa(seq) }

// probePayload is the deterministic content of probe seq (a header line, then a repeating
// pattern that depends on seq) so that a read-back of another probe's data is detected.
func probePayload(seq int) []byte { return payload(fmt.Sprintf("nfslab probe %d\n", seq), seq) }

// baselinePayload is the content WriteBaseline writes and Probe expects.
func baselinePayload() []byte { return payload("nfslab baseline\n", 0) }

func payload(header string, seed int) []byte {
	b := make([]byte, 0, probeSize)
	b = append(b, header...)
	for i := 0; len(b) < probeSize; i++ {
		b = append(b, byte('a'+((i+seed)%26+26)%26))
	}
	return b
}

// WriteBaseline writes dir/baseline and fsyncs it: call it through the mount before the fault.
// Like Probe it blocks in plain syscalls; run it where it can be abandoned.
func WriteBaseline(dir string) error {
	return writeSynced(filepath.Join(dir, BaselineName), baselinePayload())
}

// Probe is one I/O probe through the NFS mount at dir (the evidence a verdict rests on first): it writes a new file
// probe-<seq> (one page), fsyncs it, closes it, reads it back and compares, then reads
// dir/baseline if it exists and checks it still holds what WriteBaseline wrote.
//
// It uses plain blocking syscalls and has no deadline: on a hard mount whose server is gone it
// blocks in the kernel (D state) indefinitely. Run it in a child process that the agent can
// abandon, never in the agent itself.
func Probe(dir string, seq int) error {
	name := filepath.Join(dir, ProbeName(seq))
	want := probePayload(seq)
	if err := writeSynced(name, want); err != nil {
		return err
	}
	got, err := os.ReadFile(name)
	if err != nil {
		return fmt.Errorf("probe %d: read back: %w", seq, err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("probe %d: read back %d bytes that differ from the %d written", seq, len(got), len(want))
	}
	base, err := os.ReadFile(filepath.Join(dir, BaselineName))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("probe %d: read baseline: %w", seq, err)
	case !bytes.Equal(base, baselinePayload()):
		return fmt.Errorf("probe %d: baseline has changed (%d bytes)", seq, len(base))
	}
	return nil
}

// writeSynced creates or truncates name, writes data, fsyncs and closes it; on NFS, close also
// flushes and reports write-back errors, so its error counts.
func writeSynced(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("fsync %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", name, err)
	}
	return nil
}
