/* What every ISA path shares: the ABI version, the build id, and the CPU's features
   (x86-64: CPUID and XGETBV; aarch64: the kernel's HWCAP words), compiled with the
   portable path's flags so that it runs on any CPU of the architecture before a path
   is chosen. The Python loader maps the bits below to flag names and picks
   the best path whose flags are all present (or the one SAMEBITS_ISA asks for). */
#include <errno.h>
#include <stdint.h>

#include "sb_common.h"
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__linux__) && defined(__aarch64__)
#include <sys/auxv.h>
#endif

#ifndef SB_BUILD_ID
#define SB_BUILD_ID "unknown"
#endif

/* bit i of sb_cpu_features(); the loader's _FEATURE_BITS lists the same names */
enum {
    CF_SSE42 = 0, CF_AVX, CF_AVX2, CF_FMA, CF_F16C, CF_AVX512F, CF_AVX512DQ, CF_AVX512CD,
    CF_AVX512BW, CF_AVX512VL, CF_AVX512_BF16, CF_AVX512_FP16, CF_AMX_TILE, CF_AMX_BF16,
    CF_AMX_FP16, CF_OS_AVX, CF_OS_AVX512, CF_OS_AMX,
    /* aarch64 (HWCAP / HWCAP2 bits of Linux's asm/hwcap.h) */
    CF_FP, CF_ASIMD, CF_ASIMDDP, CF_BF16, CF_SVE,
};

int sb_last_threads = 0;
SB_API int sb_last_kernel_threads(void) { return sb_last_threads; }

SB_API int sb_abi_version(void) { return SB_ABI_VERSION; }
SB_API const char *sb_build_id(void) { return SB_BUILD_ID; }

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

SB_API uint64_t sb_cpu_features(void) {
    unsigned a, b, c, d, max;
    uint64_t f = 0;
    if (!__get_cpuid(0, &max, &b, &c, &d)) return 0;
    __cpuid(1, a, b, c, d);
    if (c & (1u << 20)) f |= 1ull << CF_SSE42;
    if (c & (1u << 28)) f |= 1ull << CF_AVX;
    if (c & (1u << 12)) f |= 1ull << CF_FMA;
    if (c & (1u << 29)) f |= 1ull << CF_F16C;
    if (c & (1u << 27)) { /* OSXSAVE: the OS saves the registers the XCR0 bits name */
        uint64_t x = xgetbv0();
        if ((x & 0x6) == 0x6) f |= 1ull << CF_OS_AVX;
        if ((x & 0xe6) == 0xe6) f |= 1ull << CF_OS_AVX512;
        if ((x & 0x60000) == 0x60000) f |= 1ull << CF_OS_AMX;
    }
    if (max >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        if (b & (1u << 5)) f |= 1ull << CF_AVX2;
        if (b & (1u << 16)) f |= 1ull << CF_AVX512F;
        if (b & (1u << 17)) f |= 1ull << CF_AVX512DQ;
        if (b & (1u << 28)) f |= 1ull << CF_AVX512CD;
        if (b & (1u << 30)) f |= 1ull << CF_AVX512BW;
        if (b & (1u << 31)) f |= 1ull << CF_AVX512VL;
        if (d & (1u << 23)) f |= 1ull << CF_AVX512_FP16;
        if (d & (1u << 24)) f |= 1ull << CF_AMX_TILE;
        if (d & (1u << 22)) f |= 1ull << CF_AMX_BF16;
        if (a >= 1) {
            unsigned a1, b1, c1, d1;
            __cpuid_count(7, 1, a1, b1, c1, d1);
            if (a1 & (1u << 5)) f |= 1ull << CF_AVX512_BF16;
            if (a1 & (1u << 21)) f |= 1ull << CF_AMX_FP16;
        }
    }
    return f;
}
#elif defined(__aarch64__) && defined(__linux__)
/* Linux reports the CPU's features in the auxiliary vector: AT_HWCAP bit 0 FP, 1 ASIMD,
   20 ASIMDDP, 22 SVE; AT_HWCAP2 bit 14 BF16. (Under qemu-user, the emulated CPU's.) */
SB_API uint64_t sb_cpu_features(void) {
    unsigned long h = getauxval(AT_HWCAP), h2 = getauxval(AT_HWCAP2);
    uint64_t f = 0;
    if (h & (1ul << 0)) f |= 1ull << CF_FP;
    if (h & (1ul << 1)) f |= 1ull << CF_ASIMD;
    if (h & (1ul << 20)) f |= 1ull << CF_ASIMDDP;
    if (h & (1ul << 22)) f |= 1ull << CF_SVE;
    if (h2 & (1ul << 14)) f |= 1ull << CF_BF16;
    return f;
}
#else
SB_API uint64_t sb_cpu_features(void) { return 0; }
#endif

/* Ask Linux for the AMX tile data state (arch_prctl ARCH_REQ_XCOMP_PERM with
   XFEATURE_XTILEDATA), which a process must do once before any thread executes a
   tile instruction; 0, or the errno of the refusal: EINVAL from a kernel before 5.16
   (no such request, no AMX support), ENOSPC when an alternate signal stack already
   installed is too small for the tile state, ENOSYS on another OS. */
SB_API int sb_amx_enable(void) {
#if defined(__linux__) && defined(__x86_64__) && defined(SYS_arch_prctl)
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0)
        return 0;
    return errno ? errno : EINVAL;
#else
    return ENOSYS;
#endif
}

/* Whether palette 1 of the tile unit has the shape the AMX kernel configures
   (8 tiles of 16 rows x 64 bytes; CPUID leaf 0x1D) and its multiplier takes 16 rows
   of 64 bytes (leaf 0x1E): 1, else 0. */
SB_API int sb_amx_palette_ok(void) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d, max;
    if (!__get_cpuid(0, &max, &b, &c, &d) || max < 0x1e) return 0;
    __cpuid_count(0x1d, 0, a, b, c, d);
    if (a < 1) return 0; /* no palette 1 */
    __cpuid_count(0x1d, 1, a, b, c, d);
    unsigned bytes_per_row = b & 0xffff, names = b >> 16, rows = c & 0xffff;
    if (bytes_per_row < 64 || names < 8 || rows < 16) return 0;
    __cpuid_count(0x1e, 0, a, b, c, d);
    unsigned maxk = b & 0xff, maxn = (b >> 8) & 0xffff;
    return maxk >= 16 && maxn >= 64;
#else
    return 0;
#endif
}

/* The size of the team an OpenMP region asking for n threads really gets, or with
   n <= 0 the team of a region that asks for nothing (the runtime's default, which
   torch.set_num_threads sets when both share one runtime). Tests use it. */
SB_API int sb_parallel_team(int n) {
    int got = 0;
    if (n > 0) {
#pragma omp parallel num_threads(n)
#pragma omp single
        got = omp_get_num_threads();
    } else {
#pragma omp parallel
#pragma omp single
        got = omp_get_num_threads();
    }
    return got;
}
