// Package ticking runs a blocking call while doing something else at a steady pace: saying
// what a long wait is for, or sampling evidence while a cell is held.
package ticking

import (
	"context"
	"time"
)

// While runs wait and calls tick every period until wait returns, and returns wait's error.
// wait gets ctx and is expected to end when ctx does.
func While(ctx context.Context, every time.Duration, wait func(context.Context) error, tick func()) error {
	done := make(chan error, 1)
	go func() { done <- wait(ctx) }()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-t.C:
			tick()
		}
	}
}
