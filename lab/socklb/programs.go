package socklb

import (
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

	progConnect4 = "connect4"
	progSendmsg4 = "sendmsg4"
	progRecvmsg4 = "recvmsg4"

	kernelNamePrefix = "nfslab_"

	// maxServices bounds the svc and rev hash maps.
	maxServices = 1024
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
)

// progSpec describes one of the three programs.
type progSpec struct {
	name   string // key in the CollectionSpec and suffix of the kernel name
	attach ebpf.AttachType
}

// programList lists the programs in attach order.
func programList() [3]progSpec {
	return [...]progSpec{
		{progConnect4, ebpf.AttachCGroupInet4Connect},
		{progSendmsg4, ebpf.AttachCGroupUDP4Sendmsg},
		{progRecvmsg4, ebpf.AttachCGroupUDP4Recvmsg},
	}
}

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
		},
		Programs: map[string]*ebpf.ProgramSpec{},
	}
	for _, p := range programList() {
		insns := forwardProgram()
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
	return asm.Instructions{
		asm.LoadMem(asm.R2, asm.R6, ctxUserIP4, asm.Word),
		asm.StoreMem(asm.RFP, stackKey, asm.R2, asm.Word),
		// user_port holds the sin_port value in its low 16 bits; a 2-byte
		// store writes it back in network byte order on any host.
		asm.LoadMem(asm.R2, asm.R6, ctxUserPort, asm.Word),
		asm.StoreMem(asm.RFP, stackKeyPort, asm.R2, asm.Half),
		asm.StoreImm(asm.RFP, stackKeyPad, 0, asm.Half),
	}
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

// forwardProgram is the body of cgroup/connect4 and cgroup/sendmsg4:
//
//	if protocol is not TCP or UDP: allow
//	v = svc[(user_ip4, user_port)]
//	if v and v has a backend: rewrite user_ip4/user_port, Rewrites++, allow
//	if v and v refuses: Refused++, deny (connect()/sendmsg() get EPERM)
//	if v: allow unchanged
//	if cfg.watch_port != 0 and user_port == cfg.watch_port:
//	    LastNonVIPDest = user_ip4, NonVIP++
//	allow
func forwardProgram() asm.Instructions {
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
	addAll(lookupKey(mapSvc))
	add(
		asm.JEq.Imm(asm.R0, 0, "not_found"),
		asm.LoadMem(asm.R7, asm.R0, svcValueFlagsOff, asm.Byte),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.And.Imm(asm.R2, int32(flagHasBackend)),
		asm.JEq.Imm(asm.R2, 0, "no_backend"),
	)
	addAll(rewriteCtxFromR0())
	addAll(bumpStat(statRewrites, "allow"))

	// Known VIP without a backend.
	add(
		asm.And.Imm(asm.R7, int32(flagRefuse)).WithSymbol("no_backend"),
		asm.JEq.Imm(asm.R7, 0, "allow"),
	)
	addAll(bumpStat(statRefused, "deny"))

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
	count := bumpStat(statNonVIP, "allow")
	count[0] = count[0].WithSymbol("count_non_vip")
	addAll(count)

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
