package connecttrace

import (
	"fmt"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// Names of the maps and the program in the CollectionSpec; the kernel
// names (at most 15 characters) start with "nfslab_ct_" so that bpftool
// listings show where they came from.
const (
	mapCfg   = "cfg"
	mapRing  = "ring"
	mapLost  = "lost"
	progName = "trace"

	kernelNamePrefix = "nfslab_ct_"

	// ringSize is the ring buffer's size in bytes (a power of two and a
	// multiple of the page size): about 6500 records of recordSize plus
	// the ring's 8-byte header each.
	ringSize = 256 << 10
)

// ptRegsSIAMD64 is offsetof(struct pt_regs, si) on x86-64
// (arch/x86/include/asm/ptrace.h: r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx
// dx si di …, 8 bytes each): a kprobe program's context is struct pt_regs,
// and si holds the second argument. Checked against the running kernel's BTF
// by the tests.
const ptRegsSIAMD64 = 13 * 8

// Stack slots (offsets from R10, the frame pointer).
const (
	stackRec      = -recordSize // the record, 32 bytes at -32..-1
	stackSockaddr = -40         // the first 8 bytes of the sockaddr_in
	stackIdx      = -44         // u32 index for array maps
)

// sockaddr_in: family u16 (host order), port [2] (network order), addr [4].
const (
	sockaddrPortOff = 2
	sockaddrAddrOff = 4
	sockaddrInHead  = 8
	afInet          = 2
	commLen         = 16
)

// collectionSpec returns the maps and the kprobe program.
func collectionSpec() (*ebpf.CollectionSpec, error) {
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("kprobe argument offsets are known only for amd64, not %s", runtime.GOARCH)
	}
	return &ebpf.CollectionSpec{
		Maps: map[string]*ebpf.MapSpec{
			mapCfg: {
				Name:       kernelNamePrefix + mapCfg,
				Type:       ebpf.Array,
				KeySize:    4,
				ValueSize:  cfgValueSize,
				MaxEntries: 1,
			},
			mapRing: {
				Name:       kernelNamePrefix + mapRing,
				Type:       ebpf.RingBuf,
				MaxEntries: ringSize,
			},
			mapLost: {
				Name:       kernelNamePrefix + mapLost,
				Type:       ebpf.Array,
				KeySize:    4,
				ValueSize:  8,
				MaxEntries: 1,
			},
		},
		Programs: map[string]*ebpf.ProgramSpec{
			progName: {
				Name:         kernelNamePrefix + progName,
				Type:         ebpf.Kprobe,
				Instructions: program(ptRegsSIAMD64),
				// bpf_probe_read_kernel is GPL-only.
				License: "Dual MIT/GPL",
			},
		},
	}, nil
}

// program returns the instructions of the tracer; argOff is where the
// function's second argument, a struct sockaddr *, is in the context:
//
//	sa = bpf_probe_read_kernel(8 bytes at arg2); on failure: return
//	if sa.family != AF_INET: return
//	if cfg.watch_port != 0 and sa.port != cfg.watch_port: return
//	record = {ktime, sa.addr, sa.port, comm}
//	bpf_ringbuf_output(record) or lost++
func program(argOff int16) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R3, asm.R6, argOff, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, stackSockaddr),
		asm.Mov.Imm(asm.R2, sockaddrInHead),
		asm.FnProbeReadKernel.Call(),
		asm.JNE.Imm(asm.R0, 0, "out"),
		// sa_family is a host-order u16: a native load compares right.
		asm.LoadMem(asm.R2, asm.RFP, stackSockaddr, asm.Half),
		asm.JNE.Imm(asm.R2, afInet, "out"),

		asm.StoreImm(asm.RFP, stackIdx, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapCfg),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stackIdx),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		// Both ports are in network order: compare them as stored.
		asm.LoadMem(asm.R2, asm.R0, 0, asm.Half),
		asm.JEq.Imm(asm.R2, 0, "match"),
		asm.LoadMem(asm.R3, asm.RFP, stackSockaddr+sockaddrPortOff, asm.Half),
		asm.JNE.Reg(asm.R2, asm.R3, "out"),

		asm.LoadMem(asm.R2, asm.RFP, stackSockaddr+sockaddrAddrOff, asm.Word).WithSymbol("match"),
		asm.StoreMem(asm.RFP, stackRec+recordIPOff, asm.R2, asm.Word),
		asm.LoadMem(asm.R2, asm.RFP, stackSockaddr+sockaddrPortOff, asm.Half),
		asm.StoreMem(asm.RFP, stackRec+recordPortOff, asm.R2, asm.Half),
		asm.StoreImm(asm.RFP, stackRec+recordPadOff, 0, asm.Half),
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, stackRec+recordCommOff),
		asm.Mov.Imm(asm.R2, commLen),
		asm.FnGetCurrentComm.Call(),
		asm.FnKtimeGetNs.Call(),
		asm.StoreMem(asm.RFP, stackRec, asm.R0, asm.DWord),

		asm.LoadMapPtr(asm.R1, 0).WithReference(mapRing),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stackRec),
		asm.Mov.Imm(asm.R3, recordSize),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnRingbufOutput.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),

		// The ring is full: count the loss.
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapLost),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stackIdx),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),

		asm.Mov.Imm(asm.R0, 0).WithSymbol("out"),
		asm.Return(),
	}
}
