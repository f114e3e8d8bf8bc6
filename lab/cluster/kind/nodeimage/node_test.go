package nodeimage

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestTogether(t *testing.T) {
	boom := errors.New("boom")
	waitForCancel := func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Second):
			return errors.New("never cancelled")
		}
	}
	tests := []struct {
		name string
		fs   []func(context.Context) error
		want error
	}{
		{"all succeed", []func(context.Context) error{
			func(context.Context) error { return nil },
			func(context.Context) error { return nil },
		}, nil},
		{"a failure stops the other", []func(context.Context) error{
			waitForCancel,
			func(context.Context) error { return boom },
		}, boom},
		{"the first failure is returned", []func(context.Context) error{
			func(context.Context) error { return boom },
			waitForCancel,
		}, boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			err := together(context.Background(), tt.fs...)
			if !errors.Is(err, tt.want) {
				t.Errorf("together: %v, want %v", err, tt.want)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("together took %v: the other function was not cancelled", d)
			}
		})
	}
}
