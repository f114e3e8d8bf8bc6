package agent

import (
	"errors"
	"strings"
	"testing"
	"time"
)

type fakeClock struct {
	now               time.Time
	setErr, reseedErr error
	set               time.Time
	seed              []byte
}

func (c *fakeClock) Now() time.Time { return c.now }
func (c *fakeClock) Set(t time.Time) error {
	if c.setErr != nil {
		return c.setErr
	}
	c.set = t
	return nil
}
func (c *fakeClock) Reseed(seed []byte) error {
	if c.reseedErr != nil {
		return c.reseedErr
	}
	c.seed = seed
	return nil
}

func TestSyncWithHost(t *testing.T) {
	host := time.Date(2026, 12, 5, 20, 0, 0, 0, time.UTC)
	guest := host.Add(-40 * time.Second) // restored from a snapshot taken 40 s ago
	tests := []struct {
		name      string
		job       Job
		clock     fakeClock
		skew      time.Duration
		set, seed bool
		err       string
	}{
		{name: "nothing asked", job: Job{}},
		{name: "restored guest", job: Job{ClockNS: host.UnixNano(), SetClock: true, Entropy: []byte{1, 2}},
			skew: -40 * time.Second, set: true, seed: true},
		{name: "clock measured only", job: Job{ClockNS: host.UnixNano(), Entropy: []byte{1, 2}},
			skew: -40 * time.Second, seed: true},
		{name: "clock refused", job: Job{ClockNS: host.UnixNano(), SetClock: true, Entropy: []byte{1}},
			clock: fakeClock{setErr: errors.New("EPERM")}, skew: -40 * time.Second, seed: true, err: "set the guest's clock: EPERM"},
		{name: "reseed refused", job: Job{ClockNS: host.UnixNano(), SetClock: true, Entropy: []byte{1}},
			clock: fakeClock{reseedErr: errors.New("ENOTTY")}, skew: -40 * time.Second, set: true, err: "reseed the guest's random number generator: ENOTTY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.clock
			c.now = guest
			obs := syncWithHost(tt.job, &c)
			if time.Duration(obs.ClockSkewNS) != tt.skew || obs.ClockSet != tt.set || obs.Reseeded != tt.seed {
				t.Errorf("obs = %+v; want skew %v, set %v, reseeded %v", obs, tt.skew, tt.set, tt.seed)
			}
			if tt.set != !c.set.IsZero() || (tt.set && !c.set.Equal(host)) {
				t.Errorf("clock set to %v, want set %v to %v", c.set, tt.set, host)
			}
			if tt.seed && string(c.seed) != string(tt.job.Entropy) {
				t.Errorf("reseeded with %v, want %v", c.seed, tt.job.Entropy)
			}
			if (tt.err == "") != (obs.Error == "") || !strings.Contains(obs.Error, tt.err) {
				t.Errorf("error = %q, want %q", obs.Error, tt.err)
			}
		})
	}
}
