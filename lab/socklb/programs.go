package socklb

import (
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// Names of the maps and programs in the CollectionSpec. The kernel-visible
// names (at most 15 characters) all start with "nfslab_" so that bpftool
// listings show where they came from.
const (
	mapSvc   = "svc"
	mapRev   = "rev"
	mapStats = "stats"
	mapCfg   = "cfg"
	mapHook  = "hook_events"
	mapUser  = "user_socks"

	progConnect4   = "connect4"
	progSendmsg4   = "sendmsg4"
	progRecvmsg4   = "recvmsg4"
	progSockCreate = "sock_create"

	kernelNamePrefix = "nfslab_"

	// maxServices bounds the svc and rev hash maps.
	maxServices = 1024

	// maxUserSockets bounds the LRU map of sockets processes created: the
	// least recently seen are forgotten first.
	maxUserSockets = 16384

	// hookRingSize is the size of the hook event ring buffer in bytes (a
	// power of two and a multiple of the page size): room for about 6500
	// records of hookRecordSize plus the ring's 8-byte header.
	hookRingSize = 256 << 10
)

// Offsets in struct bpf_sock_addr (include/uapi/linux/bpf.h).
const (
	ctxUserIP4  = 4
	ctxUserPort = 24
	ctxProtocol = 36
)

// IP protocol numbers the forward programs act on.
const (
	ipprotoTCP = 6
	ipprotoUDP = 17
)

// Stack slots used by the programs (offsets from R10, the frame pointer).
const (
	stackKey      = -8  // addrKey, 8 bytes
	stackKeyPort  = -4  // the port inside the key
	stackKeyPad   = -2  // the padding inside the key
	stackArrayIdx = -12 // u32 index for array maps

	// A hookRecord, 56 bytes at -72..-17.
	stackRec        = -72
	stackRecIn      = stackRec + hookRecordInOff
	stackRecOut     = stackRec + hookRecordOutOff
	stackRecAction  = stackRec + hookRecordActionOff
	stackRecHook    = stackRec + hookRecordHookOff
	stackRecKernel  = stackRec + hookRecordKernelOff
	stackRecPad     = stackRec + hookRecordPadOff // 5 bytes: a byte and a word
	stackRecPidTgid = stackRec + hookRecordPidTgidOff
	stackRecComm    = stackRec + hookRecordCommOff

	stackCookie = -80 // u64 socket cookie, the user_socks key

	// sock_create's slots: the cookie (key) and the creator (value).
	stackCreateKey   = -8
	stackCreateValue = -16
)

// progSpec describes one of the three programs.
type progSpec struct {
	name   string // key in the CollectionSpec and suffix of the kernel name
	attach ebpf.AttachType
	hook   uint8 // hook code in hook events; 0 for recvmsg4, which emits none
}

// programList lists the sock_addr programs in attach order.
func programList() [3]progSpec {
	return [...]progSpec{
		{progConnect4, ebpf.AttachCGroupInet4Connect, hookConnect4},
		{progSendmsg4, ebpf.AttachCGroupUDP4Sendmsg, hookSendmsg4},
		{progRecvmsg4, ebpf.AttachCGroupUDP4Recvmsg, 0},
	}
}

// sockCreate is the cgroup/sock_create program, attached before the others:
// it marks the sockets processes create, so that the forward programs can
// tell them from the kernel's own.
var sockCreate = progSpec{name: progSockCreate, attach: ebpf.AttachCGroupInetSockCreate}

// collectionSpec returns the maps and programs of the socket-LB.
func collectionSpec() *ebpf.CollectionSpec {
	spec := &ebpf.CollectionSpec{
		Maps: map[string]*ebpf.MapSpec{
			mapSvc: {
				Name:       kernelNamePrefix + mapSvc,
				Type:       ebpf.Hash,
				KeySize:    addrKeySize,
				ValueSize:  svcValueSize,
				MaxEntries: maxServices,
			},
			mapRev: {
				Name:       kernelNamePrefix + mapRev,
				Type:       ebpf.Hash,
				KeySize:    addrKeySize,
				ValueSize:  addrKeySize,
				MaxEntries: maxServices,
			},
			mapStats: {
				Name:       kernelNamePrefix + mapStats,
				Type:       ebpf.Array,
				KeySize:    4,
				ValueSize:  8,
				MaxEntries: numStats,
			},
			mapCfg: {
				Name:       kernelNamePrefix + mapCfg,
				Type:       ebpf.Array,
				KeySize:    4,
				ValueSize:  cfgValueSize,
				MaxEntries: 1,
			},
			mapHook: {
				Name:       kernelNamePrefix + "hook",
				Type:       ebpf.RingBuf,
				MaxEntries: hookRingSize,
			},
			mapUser: {
				Name:       kernelNamePrefix + "usersk",
				Type:       ebpf.LRUHash,
				KeySize:    userSockKeySize,
				ValueSize:  userSockValueSize,
				MaxEntries: maxUserSockets,
			},
		},
		Programs: map[string]*ebpf.ProgramSpec{
			progSockCreate: {
				Name:         kernelNamePrefix + "sockcr",
				Type:         ebpf.CGroupSock,
				AttachType:   sockCreate.attach,
				Instructions: sockCreateProgram(),
				License:      "Dual MIT/GPL",
			},
		},
	}
	for _, p := range programList() {
		insns := forwardProgram(p.hook)
		if p.attach == ebpf.AttachCGroupUDP4Recvmsg {
			insns = reverseProgram()
		}
		spec.Programs[p.name] = &ebpf.ProgramSpec{
			Name:         kernelNamePrefix + p.name,
			Type:         ebpf.CGroupSockAddr,
			AttachType:   p.attach,
			Instructions: insns,
			License:      "Dual MIT/GPL",
		}
	}
	return spec
}

// loadKeyFromCtx builds an addrKey from ctx->user_ip4 and ctx->user_port
// (R6 holds ctx) on the stack at stackKey. Clobbers R2.
func loadKeyFromCtx() asm.Instructions {
	return storeCtxAddr(stackKey)
}

// storeCtxAddr writes ctx->user_ip4 and ctx->user_port (R6 holds ctx) as an
// addrKey to the stack at off. Clobbers R2.
func storeCtxAddr(off int16) asm.Instructions {
	return asm.Instructions{
		asm.LoadMem(asm.R2, asm.R6, ctxUserIP4, asm.Word),
		asm.StoreMem(asm.RFP, off, asm.R2, asm.Word),
		// user_port holds the sin_port value in its low 16 bits; a 2-byte
		// store writes it back in network byte order on any host.
		asm.LoadMem(asm.R2, asm.R6, ctxUserPort, asm.Word),
		asm.StoreMem(asm.RFP, off+4, asm.R2, asm.Half),
		asm.StoreImm(asm.RFP, off+6, 0, asm.Half),
	}
}

// initHookRecord fills the hookRecord at stackRec, except for mono and
// action, from the addrKey at stackKey: in = out = key. Clobbers R2.
func initHookRecord(hook uint8) asm.Instructions {
	return asm.Instructions{
		asm.LoadMem(asm.R2, asm.RFP, stackKey, asm.DWord),
		asm.StoreMem(asm.RFP, stackRecIn, asm.R2, asm.DWord),
		asm.StoreMem(asm.RFP, stackRecOut, asm.R2, asm.DWord),
		asm.StoreImm(asm.RFP, stackRecHook, int64(hook), asm.Byte),
		asm.StoreImm(asm.RFP, stackRecPad, 0, asm.Byte),
		asm.StoreImm(asm.RFP, stackRecPad+1, 0, asm.Word),
	}
}

// recordCaller fills the record's caller fields (R6 holds ctx): the running
// task's pid_tgid and comm, and whether the socket is the kernel's own (no
// user_socks entry for its cookie). Clobbers R0-R5; the block's label is
// sym. Uses helpers cgroup sock_addr programs may call since Linux 5.10
// (net/core/filter.c, sock_addr_func_proto): get_current_pid_tgid,
// get_current_comm and get_socket_cookie.
func recordCaller(sym string) asm.Instructions {
	insns := asm.Instructions{
		asm.FnGetCurrentPidTgid.Call(),
		asm.StoreMem(asm.RFP, stackRecPidTgid, asm.R0, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, stackRecComm),
		asm.Mov.Imm(asm.R2, commLen),
		asm.FnGetCurrentComm.Call(),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.FnGetSocketCookie.Call(),
		asm.StoreMem(asm.RFP, stackCookie, asm.R0, asm.DWord),
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapUser),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stackCookie),
		asm.FnMapLookupElem.Call(),
		asm.Mov.Imm(asm.R2, 1),
		asm.JEq.Imm(asm.R0, 0, sym+"_store"),
		asm.Mov.Imm(asm.R2, 0),
		asm.StoreMem(asm.RFP, stackRecKernel, asm.R2, asm.Byte).WithSymbol(sym + "_store"),
	}
	return insns
}

// sockCreateProgram is the body of cgroup/sock_create. The kernel runs it
// for sockets processes create with socket(2), never for its own
// (inet_create skips the hook when kern is set):
//
//	user_socks[socket cookie] = current pid_tgid
//	allow
func sockCreateProgram() asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.FnGetSocketCookie.Call(),
		asm.StoreMem(asm.RFP, stackCreateKey, asm.R0, asm.DWord),
		asm.FnGetCurrentPidTgid.Call(),
		asm.StoreMem(asm.RFP, stackCreateValue, asm.R0, asm.DWord),
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapUser),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stackCreateKey),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, stackCreateValue),
		asm.Mov.Imm(asm.R4, 0), // BPF_ANY
		asm.FnMapUpdateElem.Call(),
		asm.Mov.Imm(asm.R0, 1),
		asm.Return(),
	}
}

// emitHookEvent is a block, labelled sym, that runs prelude (to adjust the
// record's out field), sets the record's action and time, copies the record
// into the ring buffer (statLostHookEvents++ if it is full) and jumps to next.
func emitHookEvent(sym string, prelude asm.Instructions, action uint8, next string) asm.Instructions {
	insns := slices.Clone(prelude)
	insns = append(insns, recordCaller(sym)...)
	insns = append(insns,
		asm.StoreImm(asm.RFP, stackRecAction, int64(action), asm.Byte),
		asm.FnKtimeGetNs.Call(),
		asm.StoreMem(asm.RFP, stackRec, asm.R0, asm.DWord),
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapHook),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stackRec),
		asm.Mov.Imm(asm.R3, hookRecordSize),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnRingbufOutput.Call(),
		asm.JEq.Imm(asm.R0, 0, next),
	)
	insns = append(insns, bumpStat(statLostHookEvents, next)...)
	insns[0] = insns[0].WithSymbol(sym)
	return insns
}

// lookupKey calls bpf_map_lookup_elem(m, &stack[stackKey]); R0 = value or NULL.
func lookupKey(m string) asm.Instructions {
	return asm.Instructions{
		asm.LoadMapPtr(asm.R1, 0).WithReference(m),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stackKey),
		asm.FnMapLookupElem.Call(),
	}
}

// lookupIndex calls bpf_map_lookup_elem(m, &idx) for an array map; R0 = value
// or NULL.
func lookupIndex(m string, idx uint32) asm.Instructions {
	return asm.Instructions{
		asm.StoreImm(asm.RFP, stackArrayIdx, int64(idx), asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(m),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stackArrayIdx),
		asm.FnMapLookupElem.Call(),
	}
}

// rewriteCtxFromR0 copies ip[4] and port[2] of the map value at R0 into
// ctx->user_ip4 and ctx->user_port (R6 holds ctx). Clobbers R3. Writes to
// these context fields must be 4 bytes wide; the 2-byte load zero-extends the
// port so that the kernel stores it back in network byte order.
func rewriteCtxFromR0() asm.Instructions {
	return asm.Instructions{
		asm.LoadMem(asm.R3, asm.R0, svcValueIPOff, asm.Word),
		asm.StoreMem(asm.R6, ctxUserIP4, asm.R3, asm.Word),
		asm.LoadMem(asm.R3, asm.R0, svcValuePortOff, asm.Half),
		asm.StoreMem(asm.R6, ctxUserPort, asm.R3, asm.Word),
	}
}

// bumpStat atomically adds 1 to stats[idx], then jumps to next (also when
// the lookup unexpectedly fails).
func bumpStat(idx uint32, next string) asm.Instructions {
	insns := lookupIndex(mapStats, idx)
	return append(insns,
		asm.JEq.Imm(asm.R0, 0, next),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),
		asm.Ja.Label(next),
	)
}

// forwardProgram is the body of cgroup/connect4 and cgroup/sendmsg4 (hook
// is the hook code its events carry):
//
//	if protocol is not TCP or UDP: allow
//	v = svc[(user_ip4, user_port)]
//	if v and v has a backend: rewrite user_ip4/user_port, Rewrites++,
//	    event(rewrite, out = backend), allow
//	if v and v refuses: Refused++, event(refuse, out = 0), deny
//	    (connect()/sendmsg() get EPERM)
//	if v: event(pass-through), allow unchanged
//	if cfg.watch_port != 0 and user_port == cfg.watch_port:
//	    LastNonVIPDest = user_ip4, NonVIP++, event(non-vip)
//	allow
func forwardProgram(hook uint8) asm.Instructions {
	var insns asm.Instructions
	add := func(is ...asm.Instruction) { insns = append(insns, is...) }
	addAll := func(is asm.Instructions) { insns = append(insns, is...) }

	add(
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, ctxProtocol, asm.Word),
		asm.JEq.Imm(asm.R2, ipprotoTCP, "key"),
		asm.JNE.Imm(asm.R2, ipprotoUDP, "allow"),
	)
	key := loadKeyFromCtx()
	key[0] = key[0].WithSymbol("key")
	addAll(key)
	addAll(initHookRecord(hook))
	addAll(lookupKey(mapSvc))
	add(
		asm.JEq.Imm(asm.R0, 0, "not_found"),
		asm.LoadMem(asm.R7, asm.R0, svcValueFlagsOff, asm.Byte),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.And.Imm(asm.R2, int32(flagHasBackend)),
		asm.JEq.Imm(asm.R2, 0, "no_backend"),
	)
	addAll(rewriteCtxFromR0())
	addAll(bumpStat(statRewrites, "ev_rewrite"))
	// Read back what the kernel will use: the hook's output.
	addAll(emitHookEvent("ev_rewrite", storeCtxAddr(stackRecOut), actionRewrite, "allow"))

	// Known VIP without a backend.
	add(
		asm.And.Imm(asm.R7, int32(flagRefuse)).WithSymbol("no_backend"),
		asm.JEq.Imm(asm.R7, 0, "ev_pass"),
	)
	addAll(bumpStat(statRefused, "ev_refuse"))
	addAll(emitHookEvent("ev_refuse", asm.Instructions{
		asm.Mov.Imm(asm.R2, 0),
		asm.StoreMem(asm.RFP, stackRecOut, asm.R2, asm.DWord),
	}, actionRefuse, "deny"))
	addAll(emitHookEvent("ev_pass", nil, actionPassThrough, "allow"))

	// Not a VIP: the instrument for connects that should have hit a VIP.
	not := lookupIndex(mapCfg, 0)
	not[0] = not[0].WithSymbol("not_found")
	addAll(not)
	add(
		asm.JEq.Imm(asm.R0, 0, "allow"),
		asm.LoadMem(asm.R2, asm.R0, 0, asm.Half),
		asm.JEq.Imm(asm.R2, 0, "allow"),
		asm.LoadMem(asm.R3, asm.RFP, stackKeyPort, asm.Half),
		asm.JNE.Reg(asm.R2, asm.R3, "allow"),
	)
	addAll(lookupIndex(mapStats, statLastNonVIPDest))
	add(
		asm.JEq.Imm(asm.R0, 0, "count_non_vip"),
		asm.LoadMem(asm.R3, asm.RFP, stackKey, asm.Word),
		asm.StoreMem(asm.R0, 0, asm.R3, asm.Word),
	)
	count := bumpStat(statNonVIP, "ev_non_vip")
	count[0] = count[0].WithSymbol("count_non_vip")
	addAll(count)
	addAll(emitHookEvent("ev_non_vip", nil, actionNonVIP, "allow"))

	add(
		asm.Mov.Imm(asm.R0, 1).WithSymbol("allow"),
		asm.Return(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("deny"),
		asm.Return(),
	)
	return insns
}

// reverseProgram is the body of cgroup/recvmsg4: if the datagram's source
// (user_ip4, user_port) is a backend in rev, rewrite it to the VIP. A
// recvmsg4 program must always return 1.
func reverseProgram() asm.Instructions {
	insns := asm.Instructions{asm.Mov.Reg(asm.R6, asm.R1)}
	insns = append(insns, loadKeyFromCtx()...)
	insns = append(insns, lookupKey(mapRev)...)
	insns = append(insns, asm.JEq.Imm(asm.R0, 0, "out"))
	insns = append(insns, rewriteCtxFromR0()...)
	insns = append(insns,
		asm.Mov.Imm(asm.R0, 1).WithSymbol("out"),
		asm.Return(),
	)
	return insns
}
