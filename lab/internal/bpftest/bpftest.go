// Package bpftest holds test helpers shared by nfslab's BPF instruments (lab/socklb,
// lab/observe/connecttrace). It is imported by tests only.
package bpftest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// MonoNow reads CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns and so of the records' Mono.
func MonoNow(t testing.TB) int64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatalf("clock_gettime: %v", err)
	}
	return ts.Nano()
}

// TCPServer listens on addr (network "tcp4" or "tcp6") until the end of the test, and writes
// greeting and a newline to every connection it accepts (nothing if greeting is empty) before
// closing it.
func TCPServer(t testing.TB, network, addr, greeting string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatalf("listen %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			if greeting != "" {
				fmt.Fprintln(conn, greeting)
			}
			conn.Close()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// CheckKernelNames checks that every map and program of spec is named with prefix and fits
// the kernel's 15 characters.
func CheckKernelNames(t testing.TB, spec *ebpf.CollectionSpec, prefix string) {
	t.Helper()
	var names []string
	for _, m := range spec.Maps {
		names = append(names, m.Name)
	}
	for _, p := range spec.Programs {
		names = append(names, p.Name)
	}
	for _, n := range names {
		if len(n) > 15 || !strings.HasPrefix(n, prefix) {
			t.Errorf("kernel object name %q: want the %q prefix and at most 15 characters", n, prefix)
		}
	}
}

// CheckReadStops checks that a ring-buffer reading method (read, of an object made by open for
// each case) blocks until its context is cancelled, and then returns context.Canceled, or
// until the object is closed (close), and then returns nil.
func CheckReadStops(t *testing.T, open func(t *testing.T) (read func(context.Context) error, close func() error)) {
	tests := []struct {
		name    string
		closeIt bool
		wantErr error
	}{
		{name: "context cancelled", wantErr: context.Canceled},
		{name: "closed", closeIt: true, wantErr: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			read, closeFn := open(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- read(ctx) }()
			time.Sleep(50 * time.Millisecond) // let it block in the ring buffer
			select {
			case err := <-done:
				t.Fatalf("read returned early: %v", err)
			default:
			}
			if tc.closeIt {
				if err := closeFn(); err != nil {
					t.Fatalf("close: %v", err)
				}
			} else {
				cancel()
			}
			select {
			case err := <-done:
				if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
					t.Errorf("read = %v, want %v", err, tc.wantErr)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("read did not return within 2s")
			}
		})
	}
}

// TempCgroup creates a throw-away child of the cgroup2 hierarchy that mount finds, and removes it
// when the test ends (retrying for a few seconds: the kernel notices late that its processes are
// gone). It skips the test when not root, or when mount's error is noCgroup2.
func TempCgroup(tb testing.TB, mount func() (string, error), noCgroup2 error) string {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root to create cgroups and attach BPF programs to them")
	}
	root, err := mount()
	if errors.Is(err, noCgroup2) {
		tb.Skip("no cgroup2 hierarchy mounted")
	}
	if err != nil {
		tb.Fatal(err)
	}
	path, err := os.MkdirTemp(root, "nfslab-test-")
	if err != nil {
		tb.Fatalf("create test cgroup: %v", err)
	}
	tb.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			err := os.Remove(path)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				return
			}
			if time.Now().After(deadline) {
				tb.Errorf("remove test cgroup: %v", err)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return path
}
