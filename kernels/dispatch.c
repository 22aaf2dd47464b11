/* Run-time kernel selection. */
#include "kernels.h"

const char *clipn_kernels_init(void) { return clipn_kernels_isa(); }
const char *clipn_kernels_isa(void) { return "portable"; }
const char *clipn_kernels_gemm_backend(void) { return "openblas"; }
