package agent

import (
	"bytes"
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
