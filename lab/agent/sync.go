package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nfslab/nfslab/lab/event"
)

// guestClock is what syncWithHost changes in the guest: its wall clock and its random number
// generator. sysClock is the real one; tests use a fake.
type guestClock interface {
	Now() time.Time
	Set(t time.Time) error
	Reseed(seed []byte) error
}

// syncWithHost measures the guest's wall clock against the host's and sets it (Job.SetClock),
// and reseeds its random number generator with the host's bytes, as the job carries them, and
// says what it found and did. A VM restored
// from a saved state wakes with the wall clock of the moment it was saved, and with the
// generator's state of that moment: without this, two VMs restored from one state would choose
// the same TCP source ports and sequence numbers. The monotonic clock, which events carry, is
// left alone: it continues across a restore as the guest's virtual clock does.
func syncWithHost(job Job, c guestClock) *event.SyncObs {
	obs := &event.SyncObs{}
	var errs []error
	if job.ClockNS != 0 {
		host := time.Unix(0, job.ClockNS)
		obs.ClockSkewNS = c.Now().Sub(host).Nanoseconds()
		if job.SetClock {
			if err := c.Set(host); err != nil {
				errs = append(errs, fmt.Errorf("set the guest's clock: %w", err))
			} else {
				obs.ClockSet = true
			}
		}
	}
	if len(job.Entropy) > 0 {
		if err := c.Reseed(job.Entropy); err != nil {
			errs = append(errs, fmt.Errorf("reseed the guest's random number generator: %w", err))
		} else {
			obs.Reseeded = true
		}
	}
	if err := errors.Join(errs...); err != nil {
		obs.Error = err.Error()
	}
	return obs
}

// sysClock is the guest's own clock and generator.
type sysClock struct{}

func (sysClock) Now() time.Time { return time.Now() }

func (sysClock) Set(t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
}

// Reseed credits seed to the kernel's entropy pool (RNDADDENTROPY) and makes the generator
// reseed from the pool at once (RNDRESEEDCRNG) rather than at its next scheduled reseed.
func (sysClock) Reseed(seed []byte) error {
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	info := make([]byte, 8+len(seed))
	binary.NativeEndian.PutUint32(info[0:], uint32(8*len(seed)))
	binary.NativeEndian.PutUint32(info[4:], uint32(len(seed)))
	copy(info[8:], seed)
	if err := ioctl(f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&info[0]))); err != nil {
		return fmt.Errorf("RNDADDENTROPY: %w", err)
	}
	if err := ioctl(f.Fd(), unix.RNDRESEEDCRNG, 0); err != nil {
		return fmt.Errorf("RNDRESEEDCRNG: %w", err)
	}
	return nil
}

func ioctl(fd, req, arg uintptr) error {
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, req, arg); errno != 0 {
		return errno
	}
	return nil
}
