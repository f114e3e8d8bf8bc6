package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nfslab/nfslab/lab/event"
)

// TestFailRecordsErrno: a failed step's error event carries the errno its error wraps — a mount
// the kernel refused, in the VM or (through the node's namespaces) in a kind node — so that the
// host's verdict rests on a typed field, never on the message.
func TestFailRecordsErrno(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		errno string
	}{
		{"mount(2) refused", fmt.Errorf("mount x on /mnt (nfs, %q): %w: NFS over UDP is compiled out", "proto=udp", unix.EINVAL), "EINVAL"},
		{"refused in a kind node", fmt.Errorf("mount in the kind node: %w", &MountError{Errno: unix.EPROTONOSUPPORT}), "EPROTONOSUPPORT"},
		{"no errno", errors.New("ganesha exited"), ""},
		{"a timeout", fmt.Errorf("mount x: abandoned: %w", unix.Errno(0)), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			em := newEmitter(&bytes.Buffer{}, slog.New(slog.DiscardHandler))
			em.beginCell(0)
			em.fail(event.StepMounted, tt.err)
			evs := em.events()
			if len(evs) != 1 || evs[0].Kind != event.KindError || evs[0].Errno != tt.errno || evs[0].Msg != tt.err.Error() {
				t.Errorf("events %+v, want one error with errno %q", evs, tt.errno)
			}
		})
	}
}

// TestHoldAndRelease: at a cell's snapshot point the agent says it is ready and then sends
// nothing until the host answers; a VM restored there sends the cell's earlier events again
// (replay) before what came during the hold, and a VM that went on without a restore only
// what came during the hold.
func TestHoldAndRelease(t *testing.T) {
	tests := []struct {
		name   string
		replay bool
		want   []string // the messages sent after the ready event, in order
	}{
		{"went on", false, []string{"during"}},
		{"restored", true, []string{"topology", "mounted", "during"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			em := newEmitter(&out, slog.New(slog.DiscardHandler))
			em.beginCell(3)
			em.step(event.StepTopology, "topology")
			em.step(event.StepMounted, "mounted")
			em.hold(event.Event{Kind: event.KindReady})
			sentBefore := out.Len()
			em.emit(event.Event{Kind: event.KindProgress, Msg: "during"})
			if out.Len() != sentBefore {
				t.Fatalf("an event was sent while holding: %q", out.String()[sentBefore:])
			}
			em.release(tt.replay)
			evs := decodeEvents(t, out.Bytes())
			if len(evs) < 3 || evs[2].Kind != event.KindReady || evs[2].Cell != 3 {
				t.Fatalf("sent %+v; want two steps, then cell 3's ready event", evs)
			}
			var got []string
			for _, ev := range evs[3:] {
				got = append(got, ev.Msg)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("after the ready event sent %q, want %q", got, tt.want)
			}
			if n := len(em.events()); n != 3 {
				t.Errorf("the cell's timeline holds %d events, want 3 (the ready event is not the cell's)", n)
			}
		})
	}
}

func decodeEvents(t *testing.T, b []byte) []event.Event {
	t.Helper()
	var evs []event.Event
	dec := json.NewDecoder(bytes.NewReader(b))
	for dec.More() {
		var ev event.Event
		if err := dec.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	return evs
}
