"""Fit the polynomials of the pointwise engine's asin, atan, tan, erfinv, lgamma, digamma
and gelu (samebits/_native/pointwise_trig.h, pointwise_gamma.h, pointwise.c) and print their
float32 coefficients, lowest degree first (gelu's table as C rows); and the double
coefficients of sin and cos's polynomial, finished in double, and the log table of log2,
log10 and logsigmoid (pointwise.c).

Near-minimax: Lawson's iteratively reweighted least squares on a dense Chebyshev grid,
targets from mpmath at 40 digits, relative error unless noted. Coefficients are rounded
to float32 one at a time, lowest first, each remaining one refitted to absorb the rounding
of those before it; where the constant term is split (hi + lo in double-float) it is kept
unrounded and printed as the pair. The printed error is that of the rounded polynomial.

    python tools/fit_pointwise.py            # every fit (about a minute)
    python tools/fit_pointwise.py erfinv     # one family
    python tools/fit_pointwise.py gelu       # gelu's 16-piece table and its tail (C)
    python tools/fit_pointwise.py double     # sin and cos's polynomial, in double
    python tools/fit_pointwise.py logb       # the log table (C) and its polynomials
"""

from __future__ import annotations

import struct
import sys

import mpmath as mp
import numpy as np

mp.mp.dps = 40


def _lawson(V, F, W, iters):
    n = len(F)
    lw = np.ones(n) / n
    c = np.zeros(V.shape[1])
    for _ in range(iters):
        sw = np.sqrt(lw) * W
        c, *_ = np.linalg.lstsq(V * sw[:, None], F * sw, rcond=None)
        err = np.abs((V @ c - F) * W)
        lw = lw * err
        lw /= lw.sum()
    return c


def fit(f, a, b, deg, weight=None, n=1500, iters=50, center=0.0, split_c0=False, rnd=np.float32):
    """p(t) = sum c_k t^k, t = x - center, x in [a, b], minimizing max |w(x) (p - f)|,
    coefficients rounded to rnd (float32, or float64 for the formulas finished in double).
    Returns (coefficients, max weighted error after rounding)."""
    xs = [a + (b - a) * (1 - mp.cos(mp.pi * (i + 0.5) / n)) / 2 for i in range(n)]
    F = np.array([float(f(x)) for x in xs])
    W = np.array([float(weight(x)) if weight else 1.0 for x in xs])
    V = np.vander(np.array([float(x - center) for x in xs]), deg + 1, increasing=True)
    c = []
    for k in range(deg + 1):
        R = F - V[:, :k] @ np.array(c, dtype=np.float64) if k else F
        ck = _lawson(V[:, k:], R, W, iters)[0]
        c.append(np.float64(ck) if (k == 0 and split_c0) else np.float64(rnd(ck)))
    err = np.max(np.abs((V @ np.array(c) - F) * W))
    return c, err


def show(name, c, err, split_c0=False):
    print(f"{name}: max error 2^{np.log2(err):.1f}")
    if split_c0:
        hi = np.float32(c[0])
        lo = np.float32(c[0] - np.float64(hi))
        print(f"    c0 = {hi:.9e}f + {lo:.9e}f")
    print("    " + ", ".join(f"{np.float32(v):.9e}f" for v in c))


def _xw(w):
    """x with -ln(1 - x^2) = w"""
    return mp.sqrt(-mp.expm1(-w))


def erfinv_over_x(w):
    return mp.erfinv(_xw(w)) / _xw(w) if w > 0 else mp.sqrt(mp.pi) / 2


def fits():
    # asin t = t + t^3 P(t^2) on t^2 in [0, 1/4]; error relative to asin t (weight z)
    asin_p = lambda z: (mp.asin(mp.sqrt(z)) - mp.sqrt(z)) / z**1.5 if z > 0 else mp.mpf(1) / 6  # noqa: E731
    yield (
        "asin",
        "asin P, degree 5",
        fit(asin_p, mp.mpf(0), mp.mpf(0.25), 5, weight=lambda z: z),
        False,
    )
    # atan u = u + u^3 A(u^2) on u^2 in [0, tan(pi/8)^2]
    atan_a = lambda z: (mp.atan(mp.sqrt(z)) - mp.sqrt(z)) / z**1.5 if z > 0 else -mp.mpf(1) / 3  # noqa: E731
    t8 = mp.tan(mp.pi / 8) ** 2
    yield "atan", "atan A, degree 5", fit(atan_a, mp.mpf(0), t8, 5, weight=lambda z: z), False
    # tan r = r + r^3/3 + r^5 U(r^2) on r^2 in [0, (pi/4 + 2^-11)^2]; error relative to tan
    tan_u = lambda z: (  # noqa: E731
        (mp.tan(mp.sqrt(z)) - mp.sqrt(z) - mp.sqrt(z) ** 3 / 3) / mp.sqrt(z) ** 5
        if z > 0
        else mp.mpf(2) / 15
    )
    yield (
        "tan",
        "tan U, degree 5",
        fit(
            tan_u,
            mp.mpf(0),
            (mp.pi / 4 + mp.mpf(2) ** -11) ** 2,
            5,
            weight=lambda z: z**2 * mp.sqrt(z) / mp.tan(mp.sqrt(z)) if z > 0 else 0,
            n=800,
            iters=40,
        ),
        False,
    )
    # lgamma(2 + z) / z on [-1/2, 1/2]
    g = lambda z: mp.loggamma(2 + z) / z if z != 0 else 1 - mp.euler  # noqa: E731
    yield (
        "lgamma",
        "lgamma G, degree 10",
        fit(g, mp.mpf(-0.5), mp.mpf(0.5), 10, weight=lambda z: 1 / g(z), split_c0=True),
        True,
    )
    # digamma(u) / (u - x0) on [1, 2], in t = u - 3/2
    x0 = mp.findroot(mp.digamma, 1.46)
    r = lambda u: mp.digamma(u) / (u - x0) if abs(u - x0) > 1e-30 else mp.psi(1, x0)  # noqa: E731
    yield (
        "digamma",
        "digamma R, degree 10",
        fit(
            r,
            mp.mpf(1),
            mp.mpf(2),
            10,
            center=mp.mpf(1.5),
            weight=lambda u: 1 / r(u),
            split_c0=True,
        ),
        True,
    )
    # erfinv(x) / x on four pieces: t = w - c (w < 2, w < 5), t = sqrt(w) - c beyond
    for lo, hi, c, deg in [(0, 2, 1.0, 8), (2, 5, 3.5, 8)]:
        f = lambda t, c=c: erfinv_over_x(t + c)  # noqa: E731
        yield (
            "erfinv",
            f"erfinv w in [{lo}, {hi}), t = w - {c}, degree {deg}",
            fit(
                f,
                mp.mpf(lo - c),
                mp.mpf(hi - c),
                deg,
                weight=lambda t, f=f: 1 / f(t),
                split_c0=True,
            ),
            True,
        )
    for lo, hi, c, deg in [(mp.sqrt(5), 2.8, 2.5, 7), (2.8, 4.01, 3.4, 7)]:
        f = lambda t, c=c: erfinv_over_x((t + c) ** 2)  # noqa: E731
        yield (
            "erfinv",
            f"erfinv sqrt(w) in [{float(lo):.3f}, {hi}), t = sqrt(w) - {c}, degree {deg}",
            fit(
                f,
                mp.mpf(lo) - c,
                mp.mpf(hi) - c,
                deg,
                weight=lambda t, f=f: 1 / f(t),
                split_c0=True,
            ),
            True,
        )


def _phi_neg(a):
    """Phi(-a), the normal distribution's lower tail"""
    return mp.erfc(a / mp.sqrt(2)) / 2


def gelu_fits():
    """gelu's pieces (pw_gelu in pointwise.c). For |x| < 3.875, -Phi(-|x|) on 16 pieces
    in t = 4|x| - k, k = rint(4|x|) in 0..15, t in [-1/2, 1/2] ([0, 1/2] for k = 0), each
    degree 6, relative error. For |x| >= 3.875, F(u) = |x| Phi(-|x|) exp(x^2 / 2) in
    u = 1 / |x| on [1/18, 1/3.875], degree 6."""
    rows, worst = [], 0.0
    for k in range(16):
        f = lambda t, k=k: -_phi_neg((k + t) / 4)  # noqa: E731
        c, err = fit(
            f,
            mp.mpf(-0.5 if k else 0),
            mp.mpf(0.5),
            6,
            weight=lambda t, f=f: -1 / f(t),
            n=300,
            iters=30,
        )
        rows.append(c)
        worst = max(worst, err)
    tail = lambda u: _phi_neg(1 / u) * mp.exp(1 / (2 * u * u)) / u  # noqa: E731
    lo = mp.mpf(1) / 18
    return (
        rows,
        worst,
        fit(tail, lo, 1 / mp.mpf(3.875), 6, weight=lambda u: 1 / tail(u), n=400, iters=30),
    )


def show_gelu():
    rows, worst, (tail, terr) = gelu_fits()
    print(f"gelu pieces: max relative error 2^{np.log2(worst):.1f}; rows by degree, columns by k")
    for d in range(7):
        print("    {" + ", ".join(f"{np.float32(r[d]):.9e}f" for r in rows) + "},")
    show("gelu tail F, degree 6", tail, terr)


def show_double(name, c, err):
    print(f"{name}: max error 2^{np.log2(err):.1f}")
    print("    " + ", ".join(repr(float(v)) for v in c))


def double_fits():
    """The polynomials finished in double, relative error (weight z: error relative to r,
    not to the polynomial)."""
    s = lambda z: (mp.sin(mp.sqrt(z)) / mp.sqrt(z) - 1) / z if z > 0 else -mp.mpf(1) / 6  # noqa: E731
    yield (
        "sin S, sin r = r (1 + z S(z)), abs(r) <= 1.5713",
        fit(s, mp.mpf(0), mp.mpf(1.5713) ** 2, 4, weight=lambda z: z, rnd=np.float64),
    )


def _f32(bits):
    return struct.unpack("<f", struct.pack("<I", bits))[0]


LOGB_OFF = 0x3F340000  # 0.703125: x = m 2^k, m in [0.703125, 1.40625), 16 pieces by bits


def logb_table():
    """The log table's pieces (m_log_t_split in pointwise.c): piece i holds the m
    whose bits less LOGB_OFF's have i in bits 19..22; invc = 1 / (piece's centre) rounded
    to float32, 1 for the piece around 1 (so that log_b(c) = 0 there). Rows: invc,
    ln(c) hi, lo, log2(c) hi, lo, log10(c) hi, lo, with c = 1 / invc exactly."""
    invc, rlo, rhi = [], 0.0, 0.0
    for i in range(16):
        lo, hi = _f32(LOGB_OFF + (i << 19)), _f32(LOGB_OFF + ((i + 1) << 19))
        ic = 1.0 if lo < 1.0 < hi else float(np.float32(2 / (lo + hi)))
        invc.append(ic)
        rlo, rhi = min(rlo, lo * ic - 1), max(rhi, hi * ic - 1)
    rows = [invc]
    for base in (mp.e, 2, 10):
        logc = [-mp.log(mp.mpf(ic), base) for ic in invc]
        his = [float(np.float32(float(v))) for v in logc]
        rows += [his, [float(np.float32(float(v - h))) for v, h in zip(logc, his, strict=True)]]
    return rows, rlo, rhi


def show_logb():
    rows, rlo, rhi = logb_table()
    print(f"ln / log2 / log10 table, r = m invc - 1 in [{rlo:.6f}, {rhi:.6f}]")
    for r in rows:
        print("    {" + ", ".join(f"{np.float32(v):.9e}f" for v in r) + "},")
    for name, base in (("ln", mp.e), ("log2", 2), ("log10", 10)):
        c0 = 1 / mp.log(base)
        lb = lambda r, b=base: mp.log(1 + r, b)  # noqa: E731
        f = lambda r, c0=c0, lb=lb: (lb(r) - c0 * r) / r**2 if r != 0 else -c0 / 2  # noqa: E731
        show(
            f"{name} R, {name}(1 + r) = {name}(e) r + r^2 R(r), degree 3 (error of the whole)",
            *fit(
                f,
                mp.mpf(rlo) * mp.mpf(1.001),
                mp.mpf(rhi) * mp.mpf(1.001),
                3,
                weight=lambda r, lb=lb: r**2 / abs(lb(r)) if r != 0 else 0,
            ),
        )


def main() -> int:
    want = set(sys.argv[1:])
    if "double" in want or not want:
        for name, (c, err) in double_fits():
            show_double(name, c, err)
    if "logb" in want or not want:
        show_logb()
    if "gelu" in want or not want:
        show_gelu()
    for family, name, (c, err), split in fits():
        if not want or family in want:
            show(name, c, err, split)
    return 0


if __name__ == "__main__":
    sys.exit(main())
