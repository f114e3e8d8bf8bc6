// Package bpfring reads the records of a BPF ring buffer until a context ends or the reader is
// closed, for nfslab's BPF instruments (the socket-LB's hook events, the connect tracer).
package bpfring

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf/ringbuf"
)

// Read decodes the records of rd with decode and passes them to out, in order, until ctx ends
// or rd is closed. When ctx ends, the records already in the ring are delivered first and
// ctx.Err() is returned unwrapped; when rd is closed, Read returns nil. A decode or read error
// stops it and is returned as "<what>: <err>". out runs on the calling goroutine; call Read
// from one goroutine at a time per reader.
func Read[T any](ctx context.Context, rd *ringbuf.Reader, what string, decode func([]byte) (T, error), out func(T)) error {
	var decodeErr error
	err := readRing(ctx, rd, func(raw []byte) bool {
		v, err := decode(raw)
		if err != nil {
			decodeErr = err
			return false
		}
		out(v)
		return true
	})
	if decodeErr != nil {
		return fmt.Errorf("%s: %w", what, decodeErr)
	}
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return err
}

// readRing passes the samples of rd to handle until handle returns false,
// ctx ends (the samples already in the ring are passed first; ctx.Err() is
// returned) or rd is closed (nil is returned).
func readRing(ctx context.Context, rd *ringbuf.Reader, handle func([]byte) bool) error {
	// Flush wakes a blocked read and makes it return what is in the ring,
	// then ErrFlushed. A flush that lands after this function returned is
	// seen by the next call as a spurious ErrFlushed, which it ignores.
	stop := context.AfterFunc(ctx, func() { _ = rd.Flush() })
	defer stop()
	var rec ringbuf.Record
	for {
		err := rd.ReadInto(&rec)
		switch {
		case err == nil:
			if !handle(rec.RawSample) {
				return nil
			}
		case errors.Is(err, ringbuf.ErrFlushed):
			if ctx.Err() != nil {
				return ctx.Err()
			}
		case errors.Is(err, os.ErrClosed):
			return nil
		default:
			return fmt.Errorf("read ring buffer: %w", err)
		}
	}
}
