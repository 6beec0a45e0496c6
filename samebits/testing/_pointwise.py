"""The pointwise engine (``sb_pointwise``, pointwise.c) called through ctypes, and the
accuracy cases that tests/native/test_pointwise_math.py and benchmarks/pointwise_accuracy.py
share: for each op, the inputs sampled, its float64 reference, how the error is measured
and the bound it is held to.

Errors are in ulps of float32 at the reference (``ulp_error``). Some formulas cancel by
definition (logaddexp near a zero sum, torch's backward formulas, lgamma and digamma
near their negative zeros); their cases measure ulps of a stated scale instead, or
leave those neighbourhoods out, and say so in ``domain``.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from samebits import _native

INF, NAN = math.inf, math.nan
# values every op meets: signed zeros and infinities, NaN, the extreme subnormals and
# normals, integers and half-integers (poles, exact cases)
SPECIALS = (
    0.0, -0.0, INF, -INF, NAN, 1e-45, -1e-45, 1.1754942e-38, -1.1754942e-38, 1.1754944e-38,
    3.4028235e38, -3.4028235e38, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, 0.25, 1.5, -1.5,
    10.0, 88.72, -103.9, 128.0, -150.0, 1e30, -1e30, 0.999999940, 1.00000012,
)  # fmt: skip


def ops() -> dict[str, tuple[int, int, int]]:
    """name -> (op code, tensor operands, scalar parameters), from sb_pw_ops() (the
    engine's own parse of it: one reader of the list)."""
    from samebits.ops.pointwise import _codes

    return _codes()


def pointwise(
    name: str,
    *xs: torch.Tensor,
    params: tuple[float, ...] = (),
    out_dtype: torch.dtype = torch.float32,
    nthreads: int = 1,
) -> torch.Tensor:
    """``name`` elementwise over 1-D float32 or bfloat16 operands (a one-element operand
    is broadcast, stride 0), on the ISA path in use (``_native.use_isa``)."""
    code, n, k = ops()[name]
    if len(xs) != n or len(params) != k:
        raise ValueError(f"{name} takes {n} tensors and {k} parameters")
    xs = tuple(x.contiguous() for x in xs)
    numel = max(x.numel() for x in xs)
    pad = 3 - n
    dts = (ctypes.c_int * 3)(*[_native.dtype_code(x.dtype) for x in xs], *[0] * pad)
    strides = (ctypes.c_int * 3)(*[int(x.numel() == numel) for x in xs], *[1] * pad)
    out = torch.empty(numel, dtype=out_dtype)
    ptrs = [x.data_ptr() for x in xs] + [None] * pad
    p = (ctypes.c_double * 8)(*params)
    rc = _native.lib().sb_pointwise(
        code,
        numel,
        *ptrs,
        dts,
        strides,
        out.data_ptr(),
        _native.dtype_code(out_dtype),
        p,
        k,
        nthreads,
    )
    if rc != 0:
        raise RuntimeError(f"sb_pointwise({name}) returned {rc}")
    return out


def ulp32(r: np.ndarray) -> np.ndarray:
    """The spacing of float32 at |r| (2^-149 below the normal range)."""
    e = np.floor(np.log2(np.where(r != 0, np.abs(r), 1.0)))
    return np.ldexp(1.0, (np.maximum(e, -126) - 23).astype(np.int64))


def ulp_error(y: torch.Tensor, ref: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """|y - ref| in ulps of float32 at max(|ref|, scale): 0 where both are NaN or the same
    infinity; where ref lies beyond float32's range, 0 if y is that infinity, else inf."""
    y = y.double().numpy()
    big = 3.4028235677973366e38  # float32's largest finite value, rounded to nearest
    ref_c = np.clip(ref, -big, big)
    at = np.abs(ref_c) if scale is None else np.maximum(np.abs(ref_c), scale)
    with np.errstate(invalid="ignore"):
        err = np.abs(y - ref_c) / ulp32(at)
        over = np.abs(ref) > big
        err = np.where(over, np.where(y == np.sign(ref) * np.inf, 0.0, np.inf), err)
        same = (np.isnan(y) & np.isnan(ref)) | (np.isinf(y) & (y == ref))
    err = np.where(same, 0.0, err)
    return np.where(np.isnan(err), np.inf, err)


# ---------------------------------------------------------------------------- inputs
def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def spread(n: int, seed: int = 0) -> torch.Tensor:
    """float32s over the whole line: random bit patterns (every exponent, both signs,
    NaNs included), integers and half-integers in [-64, 64], and SPECIALS."""
    g = _gen(seed)
    bits = torch.randint(-(2**31), 2**31, (n - n // 8,), generator=g, dtype=torch.int64)
    wide = bits.to(torch.int32).view(torch.float32)
    halves = torch.randint(-128, 129, (n // 8,), generator=g).float() * 0.5
    return torch.cat([wide, halves, torch.tensor(SPECIALS)])


def uniform(n: int, lo: float, hi: float, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, generator=_gen(seed), dtype=torch.float64).mul(hi - lo).add(lo).float()


def loguniform(n: int, lo: float, hi: float, seed: int = 0, signed: bool = False) -> torch.Tensor:
    """|x| with log2 |x| uniform in [lo, hi)."""
    g = _gen(seed)
    x = torch.exp2(torch.rand(n, generator=g, dtype=torch.float64) * (hi - lo) + lo).float()
    if signed:
        x = x * (torch.randint(0, 2, (n,), generator=g) * 2 - 1).float()
    return x


def finite(x: torch.Tensor) -> torch.Tensor:
    return x[torch.isfinite(x)]


# ------------------------------------------------------------------------ references
def _mp(f: Callable) -> Callable[[torch.Tensor], np.ndarray]:
    """An mpmath function (30 digits) as a reference; real part, NaN off the domain."""

    def ref(x: torch.Tensor) -> np.ndarray:
        import mpmath

        mpmath.mp.dps = 30
        out = []
        for v in x.tolist():
            try:
                r = f(mpmath, mpmath.mpf(v))
                out.append(float(mpmath.re(r)) if mpmath.im(r) == 0 else NAN)
            except (ValueError, ZeroDivisionError):
                out.append(NAN)
        return np.array(out)

    return ref


def _lgamma(x: torch.Tensor) -> np.ndarray:
    out = []
    for v in x.tolist():
        try:
            out.append(math.lgamma(v))
        except (ValueError, OverflowError):
            out.append(INF)  # poles
    return np.array(out)


def _logit_eps(eps: float) -> Callable[[torch.Tensor], np.ndarray]:
    """torch.logit(x, eps) with the clamp bounds as the float32 kernel has them
    (eps and 1 - eps rounded to float32)."""
    lo = float(np.float32(eps))
    hi = float(np.float32(1) - np.float32(lo))
    return lambda x: torch.logit(x.double().clamp(lo, hi)).numpy()


def _pow(x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """torch.pow in float64, with the engine's definition pow(x, -2) = 1 / (x x): 0 once
    x x overflows float32 (|x| > 1.8e19, where the exact value is subnormal)."""
    r = torch.pow(x.double(), y.double())
    over = (y == -2) & ((x.double() ** 2) > 3.4028234663852886e38)
    return torch.where(over, torch.zeros_like(r), r).numpy()


def _gelu(x: torch.Tensor) -> np.ndarray:
    """x Phi(x) = (x / 2) erfc(-x / sqrt 2) by libm's erfc, which keeps its relative accuracy
    in the lower tail (torch's float64 gelu, (x / 2)(1 + erf(x / sqrt 2)), cancels there);
    -0 at -inf, its limit."""
    v = x.double().numpy()
    return np.array(
        [-0.0 if t == -math.inf else 0.5 * t * math.erfc(-t / math.sqrt(2.0)) for t in v.tolist()]
    )


def _sinc(x: torch.Tensor) -> np.ndarray:
    """sin(pi x) / (pi x) with sin(pi x) exactly reduced (x - round(x) is exact in
    float64 for a float32 x): exact zeros at the integers."""
    v = x.double().numpy()
    n = np.round(v)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(np.fmod(n, 2) == 0, 1.0, -1.0) * np.sin(np.pi * (v - n))
        return np.where(v == 0, 1.0, s / (np.pi * v))


A = torch.ops.aten


# ------------------------------------------------------------------------------ cases
@dataclass(frozen=True)
class Case:
    """One accuracy measurement: ``op`` over ``inputs(n)`` against a float64 reference,
    ``torch_fn`` on float64 operands unless ``reference`` is given (mpmath, libm or a
    definition torch lacks); ``torch_fn`` on float32 operands is torch's own result, for
    comparison. ``metric``: "ulp" (ulps at the reference), "ulp_ab" (ulps at
    max(|ref|, |a|, |b|): sums that may cancel), "grad" (ulps at
    max(|ref|, |g| max(1, |x|) / 4): torch's backward formulas, whose terms cancel near
    the derivative's zeros); ``keep`` drops samples by the reference (neighbourhoods
    that the domain text names)."""

    op: str
    domain: str
    inputs: Callable[[int], tuple[torch.Tensor, ...]]
    torch_fn: Callable[..., torch.Tensor]
    bound: float
    params: tuple[float, ...] = ()
    metric: str = "ulp"
    keep: Callable[[np.ndarray], np.ndarray] | None = None
    reference: Callable[..., np.ndarray] | None = None
    slow: bool = False  # an mpmath reference: fewer samples


def _wide_and(f):
    """f(n) plus a spread of the whole line (specials included)."""
    return lambda n: (torch.cat([f(n), spread(n // 4, seed=7)]),)


def _pair(fa, fb):
    return lambda n: (fa(n), fb(n))


def _grad(fx):
    return lambda n: (uniform(n, -4, 4, seed=11) * loguniform(n, -3, 3, seed=12), fx(n))


_ROOTS = lambda r: np.abs(r) >= 0.1  # noqa: E731 (a filter: away from negative zeros)

CASES: tuple[Case, ...] = (
    Case("exp2", "whole line", lambda n: (spread(n),), torch.exp2, 1.0),
    Case("tanh", "whole line", lambda n: (torch.cat([spread(n), uniform(n, -10, 10)]),), torch.tanh, 3.0),
    Case("erf", "whole line; [-5, 5]; abs(x) from 2^-149 to 1", lambda n: (torch.cat([spread(n), uniform(n, -5, 5), loguniform(n, -149, 0, signed=True)]),), torch.erf, 1.5),
    Case("log", "x > 0, every exponent", _wide_and(lambda n: loguniform(n, -149, 128)), torch.log, 1.0),
    Case("log2", "x > 0, every exponent", _wide_and(lambda n: loguniform(n, -149, 128)), torch.log2, 1.0),
    Case("log10", "x > 0, every exponent", _wide_and(lambda n: loguniform(n, -149, 128)), torch.log10, 1.0),
    Case("sin", "whole line, abs(x) up to 3e38", lambda n: (spread(n),), torch.sin, 1.0),
    Case("cos", "whole line, abs(x) up to 3e38", lambda n: (spread(n),), torch.cos, 1.0),
    Case("tan", "whole line, abs(x) up to 3e38", lambda n: (spread(n),), torch.tan, 1.0),
    Case("asin", "[-1, 1]", _wide_and(lambda n: uniform(n, -1, 1)), torch.asin, 1.0),
    Case("acos", "[-1, 1]", _wide_and(lambda n: uniform(n, -1, 1)), torch.acos, 1.0),
    Case("atan", "whole line", lambda n: (spread(n),), torch.atan, 1.0),
    Case("asinh", "whole line", lambda n: (spread(n),), torch.asinh, 1.0),
    Case("acosh", "x >= 1, every exponent", _wide_and(lambda n: 1 + loguniform(n, -24, 128)), torch.acosh, 1.0),
    Case("erfinv", "[-1, 1], and 1 - 2^-24 .. 1 - 2^-6", _wide_and(lambda n: torch.cat([uniform(n, -1, 1), 1 - loguniform(n // 4, -24, -6)])), torch.erfinv, 1.5, slow=True, reference=_mp(lambda m, v: m.erfinv(v))),
    Case("lgamma", "x > 0, every exponent; [0, 12]", lambda n: (torch.cat([loguniform(n, -149, 128), uniform(n, 0, 12), uniform(n // 4, 0.99, 2.01)]),), torch.lgamma, 2.5, reference=_lgamma),
    Case("lgamma", "x < 0 where abs(lgamma) >= 0.1 (near its zeros the reflection cancels)", lambda n: (-uniform(n, 0, 40),), torch.lgamma, 2.0, keep=_ROOTS, reference=_lgamma),
    Case("digamma", "x > 0, every exponent; [0, 12]", lambda n: (torch.cat([loguniform(n, -149, 128), uniform(n, 0, 12), uniform(n // 4, 1.45, 1.47)]),), torch.digamma, 1.5, slow=True, reference=_mp(lambda m, v: m.digamma(v))),
    Case("digamma", "x < 0 where abs(digamma) >= 0.1 (as in torch, the reflection cancels near its zeros)", lambda n: (-uniform(n, 0, 40),), torch.digamma, 16.0, keep=_ROOTS, slow=True, reference=_mp(lambda m, v: m.digamma(v) if v != int(v) else m.nan)),
    Case("logsigmoid", "whole line", lambda n: (spread(n),), F.logsigmoid, 3.5),
    Case("hardswish", "abs(x) <= 1e37 (beyond, x * 6 overflows, as in torch)", lambda n: (finite(spread(n)).clamp(-1e37, 1e37),), F.hardswish, 2.0),
    Case("hardsigmoid", "whole line", lambda n: (spread(n),), F.hardsigmoid, 1.5),
    Case("gelu", "whole line; [-20, 20]; abs(x) from 2^-149 to 1", lambda n: (torch.cat([spread(n), uniform(n, -20, 20), loguniform(n, -149, 0, signed=True)]),), F.gelu, 2.5, reference=_gelu),
    Case("sinc", "whole line", lambda n: (torch.cat([spread(n), uniform(n, -8, 8)]),), torch.sinc, 1.0, reference=_sinc),
    Case("logit", "[0, 1], and 1/2 +- 2^-10", _wide_and(lambda n: torch.cat([uniform(n, 0, 1), uniform(n // 4, 0.499, 0.501)])), torch.logit, 1.0, params=(-1.0,)),
    Case("logit", "eps = 0.01: clamped to [0.01, 0.99]", _wide_and(lambda n: uniform(n, -0.5, 1.5)), lambda x: torch.logit(x, eps=0.01), 1.0, params=(0.01,), reference=_logit_eps(0.01)),
    Case("pow", "x > 0 every exponent, y in [-64, 64]; integers and halves", _pair(lambda n: torch.cat([loguniform(n, -149, 128), loguniform(n, -30, 30)]), lambda n: torch.cat([uniform(n, -64, 64, seed=3), torch.randint(-40, 41, (n,), generator=_gen(4)).float() * 0.5])), torch.pow, 1.5, reference=_pow),
    Case("pow", "x < 0 every exponent, integer y", _pair(lambda n: -loguniform(n, -20, 20), lambda n: torch.randint(-30, 31, (n,), generator=_gen(5)).float()), torch.pow, 1.5, reference=_pow),
    Case("pow", "whole line, both", _pair(lambda n: spread(n, 1), lambda n: spread(n, 2)), torch.pow, 1.5, reference=_pow),
    Case("atan2", "whole plane", _pair(lambda n: spread(n, 1), lambda n: spread(n, 2)), torch.atan2, 1.0),
    Case("hypot", "whole plane", _pair(lambda n: spread(n, 1), lambda n: spread(n, 2)), torch.hypot, 1.0),
    Case("xlogy", "whole plane", _pair(lambda n: spread(n, 1), lambda n: spread(n, 2)), torch.xlogy, 1.0),
    Case("xlog1py", "whole plane; y near 0", _pair(lambda n: torch.cat([spread(n, 1), uniform(n, -4, 4)]), lambda n: torch.cat([spread(n, 2), loguniform(n, -40, 0, signed=True)])), torch.special.xlog1py, 1.0),
    Case("logaddexp", "whole plane; ulps of max(abs(result), abs(a), abs(b))", _pair(lambda n: torch.cat([spread(n, 1), uniform(n, -3, 3)]), lambda n: torch.cat([spread(n, 2), uniform(n, -3, 3, seed=9)])), torch.logaddexp, 2.0, metric="ulp_ab"),
    Case("logaddexp2", "whole plane; ulps of max(abs(result), abs(a), abs(b))", _pair(lambda n: torch.cat([spread(n, 1), uniform(n, -3, 3)]), lambda n: torch.cat([spread(n, 2), uniform(n, -3, 3, seed=9)])), torch.logaddexp2, 2.0, metric="ulp_ab"),
    Case("silu_backward", "x in [-100, 100]", _grad(lambda n: uniform(n, -100, 100)), A.silu_backward, 8.0, metric="grad"),
    Case("gelu_backward", "x in [-12, 12]", _grad(lambda n: uniform(n, -12, 12)), A.gelu_backward, 8.0, metric="grad"),
    Case("gelu_tanh_backward", "x in [-12, 12]", _grad(lambda n: uniform(n, -12, 12)), lambda g, x: A.gelu_backward(g, x, approximate="tanh"), 24.0, metric="grad"),
    Case("sigmoid_backward", "y in [0, 1]", _grad(lambda n: uniform(n, 0, 1)), A.sigmoid_backward, 8.0, metric="grad"),
    Case("tanh_backward", "y in [-1, 1]", _grad(lambda n: uniform(n, -1, 1)), A.tanh_backward, 8.0, metric="grad"),
    Case("softplus_backward", "x in [-40, 40], beta 1, threshold 20", _grad(lambda n: uniform(n, -40, 40)), lambda g, x: A.softplus_backward(g, x, 1.0, 20.0), 8.0, params=(1.0, 20.0), metric="grad"),
    Case("elu_backward", "x in [-40, 40], selu's alpha and scale", _grad(lambda n: uniform(n, -40, 40)), lambda g, x: A.elu_backward(g, 1.6732632423543772, 1.0507009873554805, 1.0, False, x), 8.0, params=(1.6732632423543772, 1.0507009873554805, 1.0, 0.0), metric="grad"),
    Case("elu_backward", "result in (-1, 40], is_result", _grad(lambda n: F.elu(uniform(n, -40, 40))), lambda g, y: A.elu_backward(g, 1.0, 1.0, 1.0, True, y), 8.0, params=(1.0, 1.0, 1.0, 1.0), metric="grad"),
    Case("logsigmoid_backward", "x in [-40, 40]", _grad(lambda n: uniform(n, -40, 40)), lambda g, x: A.log_sigmoid_backward(g, x, torch.exp(-x.abs())), 8.0, metric="grad"),
    Case("hardswish_backward", "x in [-5, 5]", _grad(lambda n: uniform(n, -5, 5)), A.hardswish_backward, 8.0, metric="grad"),
    Case("hardsigmoid_backward", "x in [-5, 5]", _grad(lambda n: uniform(n, -5, 5)), A.hardsigmoid_backward, 8.0, metric="grad"),
    Case("mish_backward", "x in [-40, 40]", _grad(lambda n: uniform(n, -40, 40)), A.mish_backward, 12.0, metric="grad"),
    Case("logit_backward", "x in [0, 1]", _grad(lambda n: uniform(n, 0, 1)), A.logit_backward, 8.0, params=(-1.0,), metric="grad"),
)  # fmt: skip


# parameter sets each parametrized op is checked with (bits across paths, positions)
PARAMS: dict[str, list[tuple[float, ...]]] = {
    "logit": [(-1.0,), (0.0,), (0.25,)],
    "softplus_backward": [(1.0, 20.0), (2.0, 5.0)],
    "elu_backward": [
        (1.0, 1.0, 1.0, 0.0),
        (1.0, 1.0, 1.0, 1.0),
        (1.6732632423543772, 1.0507009873554805, 1.0, 0.0),
    ],
    "logit_backward": [(-1.0,), (0.1,)],
}


def params_of(name: str) -> list[tuple[float, ...]]:
    return PARAMS.get(name, [()])


def operands(name: str, n: int = 1 << 17) -> tuple[torch.Tensor, ...]:
    """Inputs for bit checks: the whole line (spread: every exponent, both signs, NaNs,
    SPECIALS), the op's accuracy-case domains, and for a binary op every pair of
    SPECIALS."""
    arity = ops()[name][1]
    cols = [[spread(n, seed=j + 1)] for j in range(arity)]
    for case in CASES:
        if case.op == name:
            xs = case.inputs(4096)
            m = min(x.numel() for x in xs)
            for j in range(arity):
                cols[j].append(xs[j][:m])
    if arity == 2:
        s = torch.tensor(SPECIALS)
        cols[0].append(s.repeat_interleave(len(s)))
        cols[1].append(s.repeat(len(s)))
    return tuple(torch.cat(c) for c in cols)


@dataclass(frozen=True)
class Result:
    case: Case
    samples: int
    max_error: float
    where: tuple[float, ...]  # the operands of the worst sample
    torch_error: float  # torch float32's max error on the same samples and metric


def _errors(
    case: Case, xs: tuple[torch.Tensor, ...], y: torch.Tensor, ref: np.ndarray
) -> np.ndarray:
    scale = None
    if case.metric == "ulp_ab":
        scale = np.maximum(np.abs(xs[0].double().numpy()), np.abs(xs[1].double().numpy()))
    elif case.metric == "grad":
        g, x = (t.double().numpy() for t in xs)
        scale = 0.25 * np.abs(g) * np.maximum(1.0, np.abs(x))
    err = ulp_error(y, ref, scale)
    if case.keep is not None:
        with np.errstate(invalid="ignore"):
            err = np.where(case.keep(ref), err, 0.0)
    return err


def measure(case: Case, n: int) -> Result:
    """The case's max error over ``inputs(n)`` (n / 10 for an mpmath reference), on the
    ISA path in use, and torch float32's on the same samples."""
    xs = case.inputs(max(n // 10, 100) if case.slow else n)
    numel = min(x.numel() for x in xs)
    xs = tuple(x[:numel] for x in xs)
    y = pointwise(case.op, *xs, params=case.params)
    if case.reference is not None:
        ref = np.asarray(case.reference(*xs), dtype=np.float64)
    else:
        ref = case.torch_fn(*(x.double() for x in xs)).numpy()
    err = _errors(case, xs, y, ref)
    theirs = _errors(case, xs, case.torch_fn(*xs), ref)
    i = int(np.argmax(err))
    return Result(case, numel, float(err[i]), tuple(float(x[i]) for x in xs), float(theirs.max()))
