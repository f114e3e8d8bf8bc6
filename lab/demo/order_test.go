package demo

import (
	"testing"
	"time"

	"github.com/nfslab/nfslab/lab/event"
)

func TestOrderer(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ev := func(mono event.Mono, msg string) event.Event {
		return event.Event{Mono: mono, Kind: event.KindStep, Msg: msg}
	}
	var o Orderer
	if _, ok := o.Wait(t0); ok {
		t.Fatal("an empty orderer waits")
	}
	if got := o.Due(t0, true); got != nil {
		t.Fatalf("an empty orderer gave %v", got)
	}
	// The hook's record arrives before the kprobe's of the same connect.
	o.Add(ev(20, "hook rewrote"), t0)
	o.Add(ev(10, "kernel_connect handed"), t0.Add(40*time.Millisecond))
	o.Add(ev(20, "second at 20"), t0.Add(50*time.Millisecond))
	if w, ok := o.Wait(t0.Add(100 * time.Millisecond)); !ok || w != Hold-100*time.Millisecond {
		t.Errorf("Wait = %s %v, want %s", w, ok, Hold-100*time.Millisecond)
	}
	if got := o.Due(t0.Add(100*time.Millisecond), false); got != nil {
		t.Fatalf("due before the hold: %v", got)
	}
	got := o.Due(t0.Add(Hold), false)
	var msgs []string
	for _, e := range got {
		msgs = append(msgs, e.Msg)
	}
	want := []string{"kernel_connect handed", "hook rewrote", "second at 20"}
	if len(msgs) != len(want) {
		t.Fatalf("got %q, want %q", msgs, want)
	}
	for i := range want {
		if msgs[i] != want[i] {
			t.Errorf("got %q, want %q (in the VM's order, stable)", msgs, want)
			break
		}
	}
	if _, ok := o.Wait(t0.Add(Hold)); ok {
		t.Error("still holding after Due")
	}
	// force releases at once.
	o.Add(ev(5, "bye"), t0)
	if got := o.Due(t0, true); len(got) != 1 {
		t.Errorf("forced Due gave %v", got)
	}
}
