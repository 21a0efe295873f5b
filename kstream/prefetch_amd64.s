#include "textflag.h"

// func prefetchOp(op *sendOp)
//
// PREFETCHW of the four cache lines of a 256-byte sendOp, written as bytes
// (0F 0D /1): the Go assembler has no mnemonic for it.
TEXT ·prefetchOp(SB), NOSPLIT, $0-8
	MOVQ op+0(FP), AX
	BYTE $0x0F; BYTE $0x0D; BYTE $0x08             // PREFETCHW 0(AX)
	BYTE $0x0F; BYTE $0x0D; BYTE $0x48; BYTE $0x40 // PREFETCHW 64(AX)
	ADDQ $128, AX
	BYTE $0x0F; BYTE $0x0D; BYTE $0x08             // PREFETCHW 0(AX)
	BYTE $0x0F; BYTE $0x0D; BYTE $0x48; BYTE $0x40 // PREFETCHW 64(AX)
	RET
