package image

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
)

// Names inside the agent archive.
const (
	// AgentPath is where the agent binary lands in the guest.
	AgentPath = "/nfslab"
	// InitPath is the guest's init (rdinit=/init), a symlink to AgentPath.
	InitPath = "/init"
)

// Assemble writes dst as the concatenation of the cpio archives parts, in order. The kernel
// unpacks concatenated newc archives one after the other, later entries overriding earlier
// ones, so the usual order is rootfs, modules, agent. dst is a file of a run's own (writeScratch).
func Assemble(dst string, parts ...string) error {
	if len(parts) == 0 {
		return errors.New("assembling initrd: no archives given")
	}
	return writeScratch(dst, 0o644, func(w io.Writer) error {
		for _, p := range parts {
			f, err := os.Open(p)
			if err != nil {
				return fmt.Errorf("assembling initrd: %w", err)
			}
			n, err := io.Copy(w, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("assembling initrd: copying %s: %w", p, err)
			}
			if n%4 != 0 {
				return fmt.Errorf("assembling initrd: %s is %d bytes, not a multiple of 4: not a newc archive from this package?", p, n)
			}
		}
		return nil
	})
}

// AgentArchive writes dst as a cpio archive holding binary at /nfslab (mode 0755), /init as
// a symlink to it, and /dev/console. binary must be an x86-64 ELF executable: a static one
// (CGO_ENABLED=0), or a dynamically linked one (built with cgo, as go install does where there
// is a C compiler) when rootfs, the root filesystem archive the initrd is assembled with, holds
// its program interpreter and the libraries it needs, with the symbol versions it needs (the
// guest's loader and libc then run it).
func AgentArchive(dst, binary, rootfs string) error {
	if err := checkAgentELF(binary, rootfs); err != nil {
		return err
	}
	src, err := os.Open(binary)
	if err != nil {
		return fmt.Errorf("agent archive: %w", err)
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return fmt.Errorf("agent archive: %w", err)
	}
	return writeScratch(dst, 0o644, func(w io.Writer) error {
		cw := NewCpioWriter(w)
		if err := cw.WriteHeader(&CpioHeader{Name: AgentPath, Mode: ModeRegular | 0o755, Size: st.Size()}); err != nil {
			return err
		}
		if n, err := io.Copy(cw, src); err != nil {
			return fmt.Errorf("agent archive: copying %s: %w", binary, err)
		} else if n != st.Size() {
			return fmt.Errorf("agent archive: %s changed size while being copied", binary)
		}
		if err := cw.Symlink(InitPath, AgentPath); err != nil {
			return err
		}
		// The kernel opens /dev/console on the initramfs as init's stdin/stdout/stderr before
		// devtmpfs is mounted; without this node init runs with no output at all.
		if err := cw.Dir("dev", 0o755); err != nil {
			return err
		}
		if err := cw.WriteHeader(&CpioHeader{Name: "dev/console", Mode: ModeChar | 0o600, RdevMajor: 5, RdevMinor: 1}); err != nil {
			return err
		}
		return cw.Close()
	})
}

// writeScratch writes path, a file of a run's own work directory, through fill: removed on any
// failure, and not synced to disk (hundreds of MB: syncing them took 0.3-0.7 s of a warm run on
// the bench machine), as nothing reads it once the run is over.
func writeScratch(path string, perm os.FileMode, fill func(io.Writer) error) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	return fill(f)
}

// checkAgentELF returns an error unless path is an x86-64 ELF executable that is static or
// whose dynamic linking the root filesystem archive rootfs satisfies ("" for none).
func checkAgentELF(path, rootfs string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("agent binary %s is not an ELF executable: %w", path, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("agent binary %s is for %s, the VM is x86-64: build it with GOARCH=amd64", path, f.Machine)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("agent binary %s is an ELF %s, not an executable", path, f.Type)
	}
	interp, err := interpreter(f)
	switch {
	case err != nil:
		return fmt.Errorf("agent binary %s: %w", path, err)
	case interp == "":
		return nil
	case rootfs == "":
		return fmt.Errorf("agent binary %s is dynamically linked (it has a program interpreter) and no root filesystem provides its libraries: build it with CGO_ENABLED=0", path)
	}
	return checkDynamicAgent(f, path, interp, rootfs)
}
