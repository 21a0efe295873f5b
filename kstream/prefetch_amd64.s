//go:build gc && !purego

#include "textflag.h"

// func prefetchW256(op *sendOp)
//
// PREFETCHW of the four cache lines of a 256-byte sendOp, written as bytes
// (0F 0D /1): the Go assembler has no mnemonic for it. Only called when
// the CPU has it (cpuHasPrefetchW).
TEXT ·prefetchW256(SB), NOSPLIT, $0-8
	MOVQ op+0(FP), AX
	BYTE $0x0F; BYTE $0x0D; BYTE $0x08             // PREFETCHW 0(AX)
	BYTE $0x0F; BYTE $0x0D; BYTE $0x48; BYTE $0x40 // PREFETCHW 64(AX)
	ADDQ $128, AX
	BYTE $0x0F; BYTE $0x0D; BYTE $0x08             // PREFETCHW 0(AX)
	BYTE $0x0F; BYTE $0x0D; BYTE $0x48; BYTE $0x40 // PREFETCHW 64(AX)
	RET

// func cpuHasPrefetchW() bool
//
// CPUID 80000001H, ECX bit 8 (PRFCHW), if the CPU has that leaf.
TEXT ·cpuHasPrefetchW(SB), NOSPLIT, $0-1
	MOVL $0x80000000, AX
	CPUID
	CMPL AX, $0x80000001
	JB   none
	MOVL $0x80000001, AX
	MOVL $0, CX
	CPUID
	SHRL $8, CX
	ANDL $1, CX
	MOVB CX, ret+0(FP)
	RET
none:
	MOVB $0, ret+0(FP)
	RET
