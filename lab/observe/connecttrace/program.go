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
	mapCfg      = "cfg"
	mapRing     = "ring"
	mapLost     = "lost"
	mapPending  = "pend"
	progName    = "trace"
	progRetName = "trace_ret"

	kernelNamePrefix = "nfslab_ct_"

	// ringSize is the ring buffer's size in bytes (a power of two and a
	// multiple of the page size): about 5400 records of recordSize plus
	// the ring's 8-byte header each.
	ringSize = 256 << 10

	// pendingEntries bounds the calls in flight between entry and return
	// (keyed by task): far more than the lab's kernel clients make.
	pendingEntries = 1024
)

// ptRegsSIAMD64 and ptRegsAXAMD64 are offsetof(struct pt_regs, si) and
// (…, ax) on x86-64 (arch/x86/include/asm/ptrace.h: r15 r14 r13 r12 bp bx
// r11 r10 r9 r8 ax cx dx si di …, 8 bytes each): a kprobe program's context
// is struct pt_regs; si holds the second argument on entry, ax the return
// value on return. Checked against the running kernel's BTF by the tests.
const (
	ptRegsSIAMD64 = 13 * 8
	ptRegsAXAMD64 = 10 * 8
)

// Stack slots (offsets from R10, the frame pointer).
const (
	stackRec      = -recordSize // the record, 40 bytes at -40..-1
	stackSockaddr = -48         // the first 8 bytes of the sockaddr_in
	stackIdx      = -52         // u32 index for array maps
	stackTask     = -64         // u64 pid_tgid, the pending map's key
)

// errInProgress is -EINPROGRESS: a non-blocking connect under way, not a
// failure (SUNRPC's connects are non-blocking).
const errInProgress = -115

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
			mapPending: {
				Name:       kernelNamePrefix + mapPending,
				Type:       ebpf.Hash,
				KeySize:    8, // pid_tgid
				ValueSize:  8, // the record's ip, port and kind, as the entry wrote them
				MaxEntries: pendingEntries,
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
			progRetName: {
				Name:         kernelNamePrefix + "ret",
				Type:         ebpf.Kprobe,
				Instructions: returnProgram(ptRegsAXAMD64),
				License:      "Dual MIT/GPL",
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
//	record = {ktime, sa.addr, sa.port, kind entry, comm, ret 0}
//	pending[pid_tgid] = {sa.addr, sa.port, kind entry} (for returnProgram)
//	bpf_ringbuf_output(record) or lost++
func program(argOff int16) asm.Instructions {
	return append(asm.Instructions{
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
		asm.StoreImm(asm.RFP, stackRec+recordKindOff, kindEntry, asm.Half),
		asm.StoreImm(asm.RFP, stackRec+recordRetOff, 0, asm.Word),
		asm.StoreImm(asm.RFP, stackRec+recordRetOff+4, 0, asm.Word),
		// Remember the call for its return (a full map only costs that).
		asm.FnGetCurrentPidTgid.Call(),
		asm.StoreMem(asm.RFP, stackTask, asm.R0, asm.DWord),
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapPending),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stackTask),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, stackRec+recordIPOff),
		asm.Mov.Imm(asm.R4, 0), // BPF_ANY
		asm.FnMapUpdateElem.Call(),
	}, output()...)
}

// returnProgram returns the instructions of the return probe; retOff is
// where the function's return value is in the context:
//
//	entry = pending[pid_tgid]; none: return (a call the entry did not keep)
//	delete pending[pid_tgid]
//	if ret == 0 or ret == -EINPROGRESS: return
//	record = {ktime, entry's addr and port, kind return, comm, ret}
//	bpf_ringbuf_output(record) or lost++
func returnProgram(retOff int16) asm.Instructions {
	return append(asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.FnGetCurrentPidTgid.Call(),
		asm.StoreMem(asm.RFP, stackTask, asm.R0, asm.DWord),
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapPending),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stackTask),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.LoadMem(asm.R7, asm.R0, 0, asm.DWord),
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapPending),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stackTask),
		asm.FnMapDeleteElem.Call(),

		// The function returns an int: its low 32 bits.
		asm.LoadMem(asm.R8, asm.R6, retOff, asm.DWord),
		asm.JEq.Imm32(asm.R8, 0, "out"),
		asm.JEq.Imm32(asm.R8, errInProgress, "out"),

		asm.StoreMem(asm.RFP, stackRec+recordIPOff, asm.R7, asm.DWord),
		asm.StoreImm(asm.RFP, stackRec+recordKindOff, kindReturn, asm.Half),
		asm.StoreMem(asm.RFP, stackRec+recordRetOff, asm.R8, asm.Word),
		asm.StoreImm(asm.RFP, stackRec+recordRetOff+4, 0, asm.Word),
	}, output()...)
}

// output ends both programs: it stamps the record on the stack with the
// task's comm and the time, sends it to the ring buffer, or counts it lost
// when the ring is full, and returns 0; "out"
// is its return.
func output() asm.Instructions {
	return asm.Instructions{
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
		asm.StoreImm(asm.RFP, stackIdx, 0, asm.Word),
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
