package connecttrace

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf/ringbuf"
)

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
