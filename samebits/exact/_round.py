"""Correct rounding (round half to even) of exact values held as Python integers.

A superaccumulator state is 67 int64 chunks c_i with value sum(c_i * 2^(32 i)) * 2^-1074.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NCH = 67
SCALE = -1074  # exponent of the state's least significant bit


@dataclass(frozen=True)
class Format:
    prec: int  # significand bits, hidden bit included
    emin: int  # exponent of the smallest normal number
    emax: int  # exponent of the largest finite number


FORMATS = {
    "float64": Format(53, -1022, 1023),
    "float32": Format(24, -126, 127),
    "bfloat16": Format(8, -126, 127),
    "float16": Format(11, -14, 15),
}


def state_to_int(chunks) -> int:
    return sum(int(c) << (32 * i) for i, c in enumerate(chunks) if c)


def round_rational(num: int, den: int, scale: int, fmt: Format) -> float:
    """The value num / den * 2^scale rounded to ``fmt``, as a Python float (exact
    for every format here, since each is a subset of float64). den > 0."""
    if num == 0:
        return 0.0
    neg, num = num < 0, abs(num)
    # exponent of the leading bit of num/den: floor(log2(num/den))
    e = num.bit_length() - den.bit_length()
    if (num << max(0, -e)) < (den << max(0, e)):
        e -= 1
    e += scale
    q = max(e, fmt.emin) - (fmt.prec - 1)  # exponent of the result's last place
    shift = q - scale  # result significand = num / den / 2^shift
    n, d = (num, den << shift) if shift >= 0 else (num << -shift, den)
    mant, rem = divmod(n, d)
    if 2 * rem > d or (2 * rem == d and mant & 1):
        mant += 1
    # a carry into a new binade leaves mant == 2^prec: still exact as mant * 2^q
    value = math.ldexp(mant, q) if q + mant.bit_length() <= 1024 else math.inf
    if value > math.ldexp(2 - 2 ** (1 - fmt.prec), fmt.emax):
        value = math.inf
    return -value if neg else value


def round_int(n: int, scale: int, fmt: Format) -> float:
    return round_rational(n, 1, scale, fmt)


def round_sqrt(n: int, scale: int, fmt: Format) -> float:
    """sqrt(n * 2^scale) correctly rounded to ``fmt``; n >= 0."""
    if n == 0:
        return 0.0
    if scale % 2:
        n, scale = n << 1, scale - 1
    # make the root carry at least prec + 2 bits before rounding
    extra = max(0, 2 * (fmt.prec + 3) - n.bit_length())
    extra += extra % 2
    m = n << extra
    r = math.isqrt(m)
    sticky = r * r != m
    rs = scale - extra  # value = sqrt(m) * 2^(rs/2), rs even
    # r plus a sticky bit below it: round (2r + sticky) / 2 as a rational
    return round_rational(2 * r + (1 if sticky else 0), 2, rs // 2, fmt)


def finish(
    states: np.ndarray,
    flags: np.ndarray,
    fmt: Format,
    *,
    divide_by: int | None = None,
    sqrt: bool = False,
) -> np.ndarray:
    """Round every state (rows of ``states``) to a float64 array holding ``fmt`` values."""
    out = np.empty(states.shape[0], dtype=np.float64)
    for i in range(states.shape[0]):
        f = int(flags[i])
        if f & 1 or (f & 2 and f & 4):
            out[i] = math.nan
            continue
        if f & 2 or f & 4:
            out[i] = math.inf if f & 2 else -math.inf
            continue
        n = state_to_int(states[i])
        if sqrt:
            out[i] = round_sqrt(n, SCALE, fmt)
        elif divide_by is not None:
            out[i] = round_rational(n, divide_by, SCALE, fmt) if divide_by else math.nan
        else:
            out[i] = round_int(n, SCALE, fmt)
    return out


def normalize(states: np.ndarray) -> np.ndarray:
    """Carry-propagate int64 states so every chunk but the last lies in [0, 2^32)."""
    s = states.astype(np.int64, copy=True)
    for i in range(NCH - 1):
        carry = s[..., i] >> 32
        s[..., i] -= carry << 32
        s[..., i + 1] += carry
    return s
