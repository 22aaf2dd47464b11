/* AMX-BF16 GEMM for linear layers prepared with BF16 weights (CLIPN_WEIGHTS=bf16) on
 * CPUs with AMX-TILE + AMX-BF16 that Linux lets this process use. Env CLIPN_AMX=0 turns it
 * off for layers prepared from then on (they get the AVX512_BF16 path instead).
 * Internal to kernels/ (and the tests). */
#ifndef CLIPN_GEMM_AMX_H
#define CLIPN_GEMM_AMX_H

#include "kernels.h"

/* First word of an AMX-packed buffer (gemm.c's packed-format header). */
#define CLIPN_PACK_AMX 0x414d5831u /* "AMX1" */

/* 1 if CPUID, XCR0 and the kernel (arch_prctl XTILEDATA permission, requested once per
 * process here) allow AMX-BF16 and CLIPN_AMX is not "0". */
int clipn_amx_usable(void);

/* Pack lin->weight as BF16 tiles into lin->packed (header word CLIPN_PACK_AMX). Returns 0,
 * or -1 on bad sizes / allocation failure (nothing allocated). */
int clipn_amx_prepare(clipn_linear *lin);

/* y = x W^T + b with the epilogue, for a layer packed by clipn_amx_prepare. Returns 0, or
 * -1 when the calling thread's activation buffer could not be allocated (y untouched: the
 * caller runs the fp32 fallback). */
int clipn_amx_forward(const clipn_linear *lin, const float *x, int m, float *y,
                      clipn_epilogue epi);

#endif
