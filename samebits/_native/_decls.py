"""The one list of the kernel library's exported functions: each kernel's name, family,
return type and arguments. Everything else is derived from it:

* ``sb_kernels.h`` (generated: ``python -m samebits._native._decls``) holds the C
  prototypes, compiled into every path's object as ``<name>_<isa>``, and
  ``SB_ABI_VERSION``;
* the loader's ctypes ``SIGNATURES`` (samebits/_native/__init__.py);
* the ABI version: a hash of this list, so any change of a name, an argument or a
  return type changes it, and a library built from other sources is refused at load.

tests/native/test_abi.py checks that the generated header is this list's, and that
every path of the library exports every kernel. Imports only the standard library:
setup.py and _build.py may use it without torch.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

HEADER = Path(__file__).resolve().with_name("sb_kernels.h")

# C type -> ctypes name (pointers of any type are c_void_p)
SCALARS = {"i64": "c_int64", "int": "c_int", "double": "c_double", "float": "c_float"}

GEMM_ARGS = (
    "const void *A, i64 lda, i64 ka, i64 sa, const void *B, i64 bk, i64 bn, i64 sb, "
    "float *C, i64 ldc, i64 sc, i64 batch, i64 M, i64 N, i64 K, const void *bias, int bdt, "
    "int dt, int order, int nthreads"
)

# (name, family, return type, arguments, what a caller must know)
KERNELS: tuple[tuple[str, str, str, str, str], ...] = (
    ("sb_gemm", "gemm", "int", GEMM_ARGS,
     "0, -1 when a work buffer cannot be allocated, -2 for a layout the order cannot take"),
    ("sb_gemm_map", "gemm", "int", GEMM_ARGS + ", const i64 *map",
     "sb_gemm with an output map (12 int64: struct omap in gemm.c)"),
    ("sb_sum", "reductions", "void",
     "const void *x, i64 outer, i64 R, i64 inner, const double *center, int square, "
     "double *out, int dt, int nthreads", ""),
    ("sb_sum_all", "reductions", "int", "const void *x, i64 n, int dt, int nthreads, double *out",
     "0, or -1 when a work buffer cannot be allocated"),
    ("sb_pw_ops", "pointwise", "i64", "char *buf, i64 cap", ""),
    ("sb_pointwise", "pointwise", "int",
     "int op, i64 n, const void *x0, const void *x1, const void *x2, const int *dts, "
     "const int *strides, void *y, int odt, const double *params, int nparams, int nthreads", ""),
    ("sb_softmax", "softmax", "int",
     "const void *x, void *y, i64 rows, i64 R, int mode, int dt_in, int dt_out, int nthreads",
     "0, or -1 when a work buffer cannot be allocated"),
    ("sb_attention", "attention", "int",
     "const void *q, const void *k, const void *v, const void *mask, const i64 *meta, "
     "int mkind, float *out, float scale, int dt, int nthreads", ""),
    ("sb_norm", "norm", "void",
     "const void *x, const void *w, const void *b, void *y, float *mean_out, "
     "float *rstd_out, i64 rows, i64 R, double eps, int kind, int dt, int wdt, int nthreads", ""),
    ("sb_affine", "norm", "void",
     "const void *x, void *y, const float *scale, const float *shift, i64 outer, i64 C, "
     "i64 inner, i64 ss, int dt_in, int dt_out, int nthreads", ""),
    ("sb_exact_acc", "exact", "void",
     "const void *x, i64 outer, i64 R, i64 inner, int dt, int64_t *out, int32_t *flags, "
     "int nthreads", ""),
    ("sb_depthwise", "conv", "int",
     "const void *x, const void *w, const void *bias, void *out, const i64 *meta, int dt, "
     "int wdt, int nthreads", "0, or -1 when a work buffer cannot be allocated"),
    ("sb_depthwise_nchw", "conv", "int",
     "const void *x, const void *w, const void *bias, void *out, const i64 *meta, int dt, "
     "int wdt, int nthreads", "0, or -1 when a work buffer cannot be allocated"),
    ("sb_im2col", "conv", "void",
     "const void *x, const i64 *meta, i64 r0, i64 r1, void *dst, int dt, int nthreads", ""),
    ("sb_pad_cl", "conv", "void", "const void *x, const i64 *meta, void *dst, int dt, int nthreads", ""),
    ("sb_exact_dot", "exact", "void",
     "const void *a, const void *b, i64 n, int dt, int64_t *out, int32_t *flags", ""),
)  # fmt: skip


def ctype_name(decl: str) -> str | None:
    """The ctypes name of one C declaration ("const float *x" -> "c_void_p")."""
    decl = decl.replace("const ", "").strip()
    if "*" in decl:
        return "c_void_p"
    base = decl.split()[0]
    return None if base == "void" else SCALARS[base]


def signatures() -> dict[str, tuple[list[str], str | None]]:
    """name -> (argument ctypes names, return ctypes name)."""
    return {
        name: ([ctype_name(a) for a in args.split(",")], ctype_name(ret))
        for name, _, ret, args, _ in KERNELS
    }


def abi_version() -> int:
    """A 31-bit hash of the list's names, types and argument lists."""
    blob = repr([(n, r, " ".join(a.split())) for n, _, r, a, _ in KERNELS]).encode()
    return int(hashlib.sha256(blob).hexdigest()[:7], 16)


def header() -> str:
    """The text of sb_kernels.h."""
    lines = [
        "/* GENERATED from samebits/_native/_decls.py by `python -m samebits._native._decls`:",
        "   edit the list there, never this file (tests/native/test_abi.py checks it). */",
        "#ifndef SB_KERNELS_H",
        "#define SB_KERNELS_H",
        f"#define SB_ABI_VERSION {abi_version()}",
        "",
    ]
    family = None
    for name, fam, ret, args, note in KERNELS:
        if fam != family:
            lines.append(f"/* {fam} */")
            family = fam
        if note:
            lines.append(f"/* {note} */")
        lines.append(f"SB_API {ret} SB_FN({name})({' '.join(args.split())});")
    lines += ["", "#endif /* SB_KERNELS_H */", ""]
    return "\n".join(lines)


def main() -> int:
    text = header()
    if "--check" in sys.argv:
        ok = HEADER.exists() and HEADER.read_text() == text
        print(
            f"{HEADER.name}: {'up to date' if ok else 'STALE: run python -m samebits._native._decls'}"
        )
        return 0 if ok else 1
    HEADER.write_text(text)
    print(f"wrote {HEADER} (ABI {abi_version()}, {len(KERNELS)} kernels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
