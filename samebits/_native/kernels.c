/* One translation unit per ISA path: every op family, compiled together so that
   helpers shared across families (f_exp, t8x8, packing) inline. Built with
   -DSB_ISA=<path> and that path's -m flags; see sb_common.h. Every family file is
   included here and nowhere else (one level deep); a family that calls another's
   static function declares it. */
#include "sb_common.h"

#include "gemm.c"
#include "gemm_bf16.c"
#include "gemm_amx.c"
#include "reductions.c"
#include "unary.c"
#include "pointwise.c"
#include "softmax.c"
#include "attention.c"
#include "norm.c"
#include "conv.c"
#include "exact.c"
