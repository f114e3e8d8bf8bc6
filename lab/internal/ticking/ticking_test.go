package ticking

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestWhile: tick runs while wait blocks, and wait's error comes back once it returns.
func TestWhile(t *testing.T) {
	errDone := errors.New("done")
	ticks := 0
	err := While(context.Background(), 5*time.Millisecond, func(context.Context) error {
		time.Sleep(60 * time.Millisecond)
		return errDone
	}, func() { ticks++ })
	if !errors.Is(err, errDone) {
		t.Errorf("err %v, want wait's", err)
	}
	if ticks == 0 {
		t.Error("no tick while wait blocked")
	}
	ticks = 0
	if err := While(context.Background(), time.Hour, func(context.Context) error { return nil }, func() { ticks++ }); err != nil || ticks != 0 {
		t.Errorf("a quick wait: err %v, %d ticks; want nil, 0", err, ticks)
	}
}
