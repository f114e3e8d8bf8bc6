package kind

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestWaitSaying: a long wait is heard from while it lasts, and its error comes back; a quick
// one says nothing.
func TestWaitSaying(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name     string
		lasts    time.Duration
		err      error
		wantSaid bool
	}{
		{"quick", 0, nil, false},
		{"long, then fails", 80 * time.Millisecond, boom, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var said []string
			say := func(s string) { mu.Lock(); said = append(said, s); mu.Unlock() }
			err := waitSaying(context.Background(), say, 20*time.Millisecond, func() string { return "waiting" }, func(context.Context) error {
				time.Sleep(tt.lasts)
				return tt.err
			})
			if !errors.Is(err, tt.err) {
				t.Errorf("error %v, want %v", err, tt.err)
			}
			mu.Lock()
			defer mu.Unlock()
			if (len(said) > 0) != tt.wantSaid {
				t.Errorf("said %q, want something: %v", said, tt.wantSaid)
			}
			for _, s := range said {
				if !strings.HasPrefix(s, "waiting (") || !strings.HasSuffix(s, " s)") {
					t.Errorf("said %q, want \"waiting (N s)\"", s)
				}
			}
		})
	}
}
