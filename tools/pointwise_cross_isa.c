/* The pointwise engine alone, for tools/pointwise_cross_isa.py: runs every job of a job
   file through sb_pointwise on the path it is compiled for and writes the outputs.
   job: int32 op, int32 nparams, double params[8], int64 n, int32 arity,
   float32 data[arity][n]. Built without OpenMP: one thread. */
#include "sb_common.h"
#include "pointwise.c"
#include <stdio.h>
#include <stdlib.h>

int sb_last_threads = 0; /* dispatch.c's, which this program leaves out */

#define PW_CAT2(a, b) a##_##b
#define PW_CAT(a, b) PW_CAT2(a, b)

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[2], "wb");
    if (!in || !out) return 2;
    int op, np, arity;
    double p[8];
    int64_t n;
    while (fread(&op, 4, 1, in) == 1) {
        if (fread(&np, 4, 1, in) != 1 || fread(p, 8, 8, in) != 8 || fread(&n, 8, 1, in) != 1 ||
            fread(&arity, 4, 1, in) != 1)
            return 3;
        float *x[3] = {0}, *y = malloc((size_t)n * 4);
        for (int j = 0; j < arity; j++) {
            x[j] = malloc((size_t)n * 4);
            if (fread(x[j], 4, (size_t)n, in) != (size_t)n) return 3;
        }
        int dts[3] = {0, 0, 0}, strides[3] = {1, 1, 1};
        if (PW_CAT(sb_pointwise, SB_ISA)(op, n, x[0], x[1], x[2], dts, strides, y, 0, p, np, 1)) return 4;
        fwrite(y, 4, (size_t)n, out);
        for (int j = 0; j < arity; j++) free(x[j]);
        free(y);
    }
    return fclose(out) != 0;
}
