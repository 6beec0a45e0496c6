"""The pointwise engine's math functions (pointwise_math.h, pointwise_trig.h,
pointwise_gamma.h, the formulas in pointwise.c), called through ctypes:

- every op gives the same bits on every ISA path this CPU has, for float32 and bfloat16
  outputs and operands, wherever an element sits in the buffer (offsets, tails, threads,
  broadcast operands), and NaN outputs are the canonical NaN;
- every op is within its stated bound of a float64 reference (samebits.testing._pointwise
  holds the cases, shared with benchmarks/pointwise_accuracy.py);
- special values follow C99 Annex F and torch, asserted exactly.
"""

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from samebits import _native
from samebits.testing._pointwise import (
    CASES,
    SPECIALS,
    measure,
    operands,
    ops,
    params_of,
    pointwise,
    spread,
)

ROOT = Path(__file__).resolve().parents[2]
PATHS = _native.native_info()["available"]
INF, NAN = math.inf, math.nan
A = torch.ops.aten

# ops added with the math library, arity and parameter count
NEW_OPS = {
    **dict.fromkeys(
        "exp2 log log2 log10 sin cos tan asin acos atan asinh acosh erfinv lgamma digamma "
        "logsigmoid hardswish hardsigmoid sinc".split(),
        (1, 0),
    ),
    "logit": (1, 1),
    **dict.fromkeys("pow atan2 logaddexp logaddexp2 xlogy xlog1py hypot".split(), (2, 0)),
    **dict.fromkeys(
        "silu_backward gelu_backward gelu_tanh_backward sigmoid_backward tanh_backward "
        "logsigmoid_backward hardswish_backward hardsigmoid_backward mish_backward".split(),
        (2, 0),
    ),
    "softplus_backward": (2, 2),
    "elu_backward": (2, 4),
    "logit_backward": (2, 1),
}


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int16 if t.dtype == torch.bfloat16 else torch.int32)


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and torch.equal(bits(a), bits(b))


def test_the_ops_are_listed_with_their_arity():
    listed = ops()
    for name, (n, k) in NEW_OPS.items():
        assert listed[name][1:] == (n, k), name


def test_the_rempio2_table_is_what_the_generator_writes():
    proc = subprocess.run(
        [sys.executable, "tools/gen_pointwise_tables.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------------- same bits
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(NEW_OPS))
def test_every_path_gives_the_same_bits(name, out_dtype):
    xs = operands(name)
    for p in params_of(name):
        outs = {}
        for path in PATHS:
            with _native.use_isa(path):
                outs[path] = pointwise(name, *xs, params=p, out_dtype=out_dtype)
        first = outs[PATHS[0]]
        for path, y in outs.items():
            assert same(y, first), f"{name}{p}: {path} differs from {PATHS[0]}"


# Formulas that test a whole bundle (or vector) and skip what no lane of it needs: values
# that take the short path alone and values that need the long one
SKIPPING = {
    "gelu": [0.3, -2.0, 3.6, 3.87, -3.874, -3.875, 3.9, -13.0, 30.0, -INF, NAN],
    "sin": [1.0, -3.0, 4095.0, 4096.0, -5000.0, 1e30, INF],
    "cos": [1.0, -3.0, 4095.0, 4096.0, -5000.0, 1e30, INF],
    "tan": [1.0, -3.0, 0.0, 4095.0, 4096.0, -5000.0, 1e30, INF],
    "log": [1.5, 0.25, 1e-40, 0.0, -1.0, INF],
    "log2": [1.5, 0.99, 1e-40, 0.0, -1.0, INF, NAN],
    "log10": [1.5, 0.99, 1e-40, 0.0, -1.0, INF, NAN],
    "logsigmoid": [0.5, -3.0, 50.0, -INF, NAN],
    "exp": [1.0, -80.0, -100.0, 90.0],
    "tanh": [0.5, -9.0, 20.0, NAN],
    "erf": [0.5, -0.9, 2.0, -5.0],
}


@pytest.mark.parametrize("name", sorted(SKIPPING))
def test_a_lane_has_the_same_bits_whichever_path_its_neighbours_need(name, isa):
    """Each value alone (a whole bundle of it: the path it needs) and among values that
    need the other path, in every lane position of a 64-lane bundle."""
    vals = SKIPPING[name]
    alone = [pointwise(name, torch.full((128,), v))[0] for v in vals]
    for shift in range(64):  # every value in every lane position, beside the others
        x = torch.tensor([vals[(i + shift) % len(vals)] for i in range(128)])
        y = pointwise(name, x)
        for i in range(128):
            want = alone[(i + shift) % len(vals)]
            assert same(y[i : i + 1], want.reshape(1)), (
                name,
                x[i].item(),
                y[i].item(),
                want.item(),
            )


@pytest.mark.parametrize("name", sorted(NEW_OPS))
def test_bits_do_not_depend_on_position_threads_or_broadcast(name, isa):
    xs = operands(name)
    n = xs[0].numel()
    for p in params_of(name):
        full = pointwise(name, *xs, params=p)
        assert same(pointwise(name, *xs, params=p, nthreads=2), full)
        for off, m in [(0, 1), (1, 7), (3, 33), (5, 100), (17, 1000), (1000, 1025), (n - 77, 77)]:
            part = pointwise(name, *(x[off : off + m] for x in xs), params=p)
            assert same(part, full[off : off + m]), f"{name}{p} at [{off}, {off + m})"
        if len(xs) == 2:  # a one-element operand is broadcast (stride 0)
            for i in (0, 5, n - 1):
                one = pointwise(name, xs[0], xs[1][i : i + 1], params=p)
                assert same(one, pointwise(name, xs[0], xs[1][i].expand(n), params=p))


@pytest.mark.parametrize("name", sorted(NEW_OPS))
def test_bfloat16_operands_and_outputs_and_canonical_nan(name):
    xs = operands(name)
    for p in params_of(name):
        y = pointwise(name, *xs, params=p)
        # bfloat16 out: the float32 result rounded once (to nearest even); NaN is the
        # engine's canonical 0x7fc0 (torch's conversion gives 0xffff)
        h = pointwise(name, *xs, params=p, out_dtype=torch.bfloat16)
        nan16 = torch.isnan(h)
        assert torch.equal(nan16, torch.isnan(y)) and torch.all(bits(h)[nan16] == 0x7FC0)
        assert torch.equal(bits(h)[~nan16], bits(y.bfloat16())[~nan16])
        # bfloat16 operands are widened exactly
        hs = tuple(x.bfloat16() for x in xs)
        assert same(
            pointwise(name, *hs, params=p), pointwise(name, *(h.float() for h in hs), params=p)
        )
        nan = torch.isnan(y)
        assert nan.any()  # every op meets NaN inputs
        assert torch.all(bits(y)[nan] == 0x7FC00000)


# ----------------------------------------------------------------------- accuracy
@pytest.mark.parametrize("case", CASES, ids=[f"{c.op}-{i}" for i, c in enumerate(CASES)])
def test_accuracy_against_float64(case):
    r = measure(case, 20000)
    assert r.max_error <= case.bound, (
        f"{case.op} on {case.domain}: {r.max_error:.3f} ulp > {case.bound} at {r.where}"
    )


# ------------------------------------------------------------------ special values
def one(name: str, *args: float, params: tuple[float, ...] = ()) -> float:
    """name at one point (padded to a full bundle and beyond)."""
    xs = tuple(torch.full((37,), a, dtype=torch.float32) for a in args)
    return pointwise(name, *xs, params=params)[0].item()


def check(got: float, want: float) -> bool:
    """Exact, sign of zero included; any NaN matches NaN."""
    if math.isnan(want):
        return math.isnan(got)
    return got == want and math.copysign(1, got) == math.copysign(1, want)


EXACT = [
    # logarithms and exp2
    ("log", (0.0,), -INF), ("log", (-0.0,), -INF), ("log", (-1.0,), NAN), ("log", (INF,), INF),
    ("log", (1.0,), 0.0), ("log2", (0.125,), -3.0), ("log2", (1e-45,), -149.0), ("log10", (1.0,), 0.0),
    ("log10", (-INF,), NAN), ("exp2", (-INF,), 0.0), ("exp2", (INF,), INF), ("exp2", (128.0,), INF),
    ("exp2", (-149.0,), 1e-45), ("exp2", (-151.0,), 0.0), ("exp2", (10.0,), 1024.0), ("exp2", (-0.0,), 1.0),
    # pow, C99 Annex F (torch's tensor-exponent path agrees)
    ("pow", (NAN, 0.0), 1.0), ("pow", (NAN, -0.0), 1.0), ("pow", (1.0, NAN), 1.0), ("pow", (1.0, -INF), 1.0),
    ("pow", (-8.0, 1 / 3), NAN), ("pow", (-2.0, 3.0), -8.0), ("pow", (-2.0, 5.0), -32.0),
    ("pow", (-0.0, -3.0), -INF), ("pow", (0.0, -3.0), INF), ("pow", (-0.0, -2.0), INF), ("pow", (-0.0, -5.0), -INF),
    ("pow", (-0.0, 3.0), -0.0), ("pow", (-0.0, 5.0), -0.0), ("pow", (-0.0, 4.0), 0.0), ("pow", (0.0, -INF), INF),
    ("pow", (-INF, 0.5), INF), ("pow", (-0.0, 0.5), 0.0), ("pow", (-0.0, -0.5), INF), ("pow", (-INF, -0.5), 0.0),
    ("pow", (-1.0, INF), 1.0), ("pow", (-1.0, -INF), 1.0), ("pow", (0.5, INF), 0.0), ("pow", (2.0, -INF), 0.0),
    ("pow", (0.5, -INF), INF), ("pow", (-INF, 3.0), -INF), ("pow", (-INF, -3.0), -0.0), ("pow", (-INF, 2.0), INF),
    ("pow", (-INF, 2.5), INF), ("pow", (INF, -2.5), 0.0), ("pow", (2.0, 0.5), math.sqrt(2.0)),
    ("pow", (-3.0, 2.0), 9.0), ("pow", (-1.5, -1.0), 1 / -1.5), ("pow", (2.0, 128.0), INF), ("pow", (2.0, -149.0), 1e-45),
    # trigonometric
    ("sin", (-0.0,), -0.0), ("sin", (INF,), NAN), ("cos", (-INF,), NAN), ("cos", (0.0,), 1.0),
    ("tan", (-0.0,), -0.0), ("tan", (NAN,), NAN), ("asin", (-0.0,), -0.0), ("asin", (1.5,), NAN),
    ("acos", (1.0,), 0.0), ("acos", (-1.1,), NAN), ("atan", (-0.0,), -0.0), ("atan", (INF,), 1.5707963705062866),
    ("atan", (-INF,), -1.5707963705062866), ("asinh", (-0.0,), -0.0), ("asinh", (-INF,), -INF),
    ("acosh", (1.0,), 0.0), ("acosh", (0.5,), NAN), ("acosh", (INF,), INF),
    ("sinc", (0.0,), 1.0), ("sinc", (-0.0,), 1.0), ("sinc", (INF,), NAN), ("sinc", (3.0e9,), 0.0),
    # atan2, C99 Annex F
    ("atan2", (0.0, 0.0), 0.0), ("atan2", (-0.0, 0.0), -0.0), ("atan2", (0.0, -0.0), math.pi),
    ("atan2", (-0.0, -0.0), -math.pi), ("atan2", (0.0, -1.0), math.pi), ("atan2", (-0.0, -1.0), -math.pi),
    ("atan2", (1.0, 0.0), math.pi / 2), ("atan2", (-1.0, -0.0), -math.pi / 2), ("atan2", (INF, INF), math.pi / 4),
    ("atan2", (-INF, -INF), -3 * math.pi / 4), ("atan2", (1.0, -INF), math.pi), ("atan2", (-1.0, INF), -0.0),
    ("atan2", (INF, 5.0), math.pi / 2), ("atan2", (NAN, 1.0), NAN),
    # special functions: torch's choices at poles and zeros
    ("lgamma", (0.0,), INF), ("lgamma", (-0.0,), INF), ("lgamma", (-1.0,), INF), ("lgamma", (-1e30,), INF),
    ("lgamma", (-INF,), INF), ("lgamma", (INF,), INF), ("lgamma", (1.0,), 0.0), ("lgamma", (2.0,), 0.0),
    ("lgamma", (3e38,), INF), ("digamma", (0.0,), -INF), ("digamma", (-0.0,), INF), ("digamma", (-1.0,), NAN),
    ("digamma", (-5.0,), NAN), ("digamma", (-INF,), NAN), ("digamma", (INF,), INF),
    ("erfinv", (1.0,), INF), ("erfinv", (-1.0,), -INF), ("erfinv", (1.5,), NAN), ("erfinv", (-0.0,), -0.0),
    # binary log-family
    ("hypot", (INF, NAN), INF), ("hypot", (NAN, -INF), INF), ("hypot", (3.0, 4.0), 5.0), ("hypot", (-0.0, 0.0), 0.0),
    ("hypot", (3e38, 3e38), INF), ("hypot", (1e-45, 0.0), 1e-45), ("logaddexp", (-INF, -INF), -INF),
    ("logaddexp", (INF, INF), INF), ("logaddexp", (INF, -INF), INF), ("logaddexp", (NAN, 1.0), NAN),
    ("logaddexp2", (-INF, -INF), -INF), ("logaddexp2", (2.0, 2.0), 3.0),
    ("xlogy", (0.0, NAN), NAN), ("xlogy", (0.0, INF), 0.0), ("xlogy", (0.0, -1.0), 0.0), ("xlogy", (1.0, 0.0), -INF),
    ("xlogy", (2.0, 1.0), 0.0), ("xlog1py", (0.0, -2.0), 0.0), ("xlog1py", (2.0, -1.0), -INF), ("xlog1py", (1.0, NAN), NAN),
    # activations
    ("gelu", (-INF,), -0.0), ("gelu", (INF,), INF), ("gelu", (NAN,), NAN), ("gelu", (-0.0,), -0.0),
    ("gelu", (0.0,), 0.0), ("gelu", (-30.0,), -0.0), ("gelu", (30.0,), 30.0), ("gelu", (-1e-45,), -0.0),
    ("logsigmoid", (-INF,), -INF), ("logsigmoid", (INF,), 0.0), ("logsigmoid", (NAN,), NAN),
    ("hardswish", (-INF,), NAN), ("hardswish", (INF,), INF), ("hardswish", (-3.0,), -0.0), ("hardswish", (3.0,), 3.0),
    ("hardsigmoid", (NAN,), NAN), ("hardsigmoid", (-INF,), 0.0), ("hardsigmoid", (3.0,), 1.0),
]  # fmt: skip
EXACT_PARAMS = [
    ("logit", (0.0,), (-1.0,), -INF), ("logit", (1.0,), (-1.0,), INF), ("logit", (-0.1,), (-1.0,), NAN),
    ("logit", (0.5,), (-1.0,), 0.0), ("logit", (NAN,), (0.1,), NAN), ("logit", (2.0,), (0.0,), INF),
    ("hardswish_backward", (2.0, -3.0), (), 0.0), ("hardswish_backward", (2.0, 3.0), (), 2.0),
    ("hardswish_backward", (2.0, NAN), (), NAN), ("hardsigmoid_backward", (2.0, 3.0), (), 0.0),
    ("logit_backward", (1.0, 1.5), (-1.0,), NAN), ("logit_backward", (1.0, 0.05), (0.1,), 0.0),
    ("logit_backward", (1.0, 0.0), (-1.0,), INF), ("logit_backward", (1.0, NAN), (0.1,), NAN),
    ("softplus_backward", (3.0, 25.0), (1.0, 20.0), 3.0), ("elu_backward", (2.0, 1.0), (1.0, 1.5, 1.0, 0.0), 3.0),
]  # fmt: skip


@pytest.mark.parametrize("name, args, want", EXACT, ids=[f"{n}{a}" for n, a, _ in EXACT])
def test_special_values(name, args, want):
    got = one(name, *args)
    assert check(got, float(torch.tensor(want, dtype=torch.float32))), (name, args, got, want)


@pytest.mark.parametrize(
    "name, args, params, want", EXACT_PARAMS, ids=[f"{n}{a}{p}" for n, a, p, _ in EXACT_PARAMS]
)
def test_special_values_with_parameters(name, args, params, want):
    got = one(name, *args, params=params)
    assert check(got, float(torch.tensor(want, dtype=torch.float32))), (
        name,
        args,
        params,
        got,
        want,
    )


TORCH_UNARY = {
    "exp2": torch.exp2, "log": torch.log, "log2": torch.log2, "log10": torch.log10,
    "sin": torch.sin, "cos": torch.cos, "tan": torch.tan, "asin": torch.asin, "acos": torch.acos,
    "atan": torch.atan, "asinh": torch.asinh, "acosh": torch.acosh, "erfinv": torch.erfinv,
    "lgamma": torch.lgamma, "digamma": torch.digamma, "logsigmoid": torch.nn.functional.logsigmoid,
    "hardswish": torch.nn.functional.hardswish, "hardsigmoid": torch.nn.functional.hardsigmoid,
}  # fmt: skip
TORCH_BINARY = {
    "pow": torch.pow, "atan2": torch.atan2, "logaddexp": torch.logaddexp,
    "logaddexp2": torch.logaddexp2, "xlogy": torch.xlogy, "xlog1py": torch.special.xlog1py,
    "hypot": torch.hypot,
}  # fmt: skip


def kind(t: torch.Tensor) -> torch.Tensor:
    """0: NaN, +-1: +-inf, +-2: +-0, +-3: finite nonzero (by sign)."""
    s = torch.where(torch.signbit(t), -1, 1)
    k = torch.where(torch.isinf(t), 1, torch.where(t == 0, 2, 3)) * s
    return torch.where(torch.isnan(t), 0, k)


@pytest.mark.parametrize("name", sorted(TORCH_UNARY) + sorted(TORCH_BINARY))
def test_special_values_agree_with_torch(name):
    """On SPECIALS (every pair for binary ops): NaN, infinities and signed zeros where
    torch float32 (its tensor-exponent pow) has them, and finite nonzero values of the
    same sign where it has those. Allowed: a result at the edge of float32's range on
    either side (both below 1e-37, or both above 1e37 with one sign), and an exact zero
    against torch's rounding noise (below 2^-20 of the largest operand or 1), as in
    logaddexp2(-1, -1) = 0 where torch has -1e-8."""
    s = torch.tensor(SPECIALS)
    if name in TORCH_UNARY:
        xs, want = (s,), TORCH_UNARY[name](s)
    else:
        xs = (s.repeat_interleave(len(s)), s.repeat(len(s)))
        want = TORCH_BINARY[name](*xs)
    got = pointwise(name, *xs)
    differ = kind(got) != kind(want)
    tiny = (got.abs() < 1e-37) & (want.abs() < 1e-37)
    huge = (got.abs() > 1e37) & (want.abs() > 1e37) & (torch.signbit(got) == torch.signbit(want))
    scale = torch.stack([x.abs().nan_to_num(0, 0, 0) for x in xs]).amax(0).clamp(min=1)
    noise = ((got == 0) | (want == 0)) & ((got - want).abs() <= 2.0**-20 * scale)
    bad = differ & ~(tiny | huge | noise)
    rows = [
        tuple(x[i].item() for x in xs) + (got[i].item(), want[i].item())
        for i in bad.nonzero().flatten()
    ]
    assert not rows, f"{name}: (operands, ours, torch): {rows[:8]}"


def test_pow_special_exponents_are_the_plain_operations():
    """y = 2, 3, 1, -1, -2, 0.5, -0.5 give exactly x x, (x x) x, x, 1/x, 1/(x x), sqrt|x|,
    1/sqrt|x| (on x >= 0 for the square roots), the same bits whatever the other elements."""
    x = spread(1 << 14, seed=3)
    xp = x.abs()
    # the correctly rounded square root (torch.sqrt on float32 is not, on torch 2.13's
    # CPU build: 1 ulp off for about a sixth of [0, 10))
    sq = torch.sqrt(xp.double()).float()
    for y, want, base in [
        (2.0, x * x, x), (3.0, x * x * x, x), (1.0, x, x), (-1.0, 1 / x, x),
        (-2.0, 1 / (x * x), x), (0.5, sq, xp), (-0.5, 1 / sq, xp),
    ]:  # fmt: skip
        got = pointwise("pow", base, torch.tensor([y]))
        mixed = pointwise("pow", base, torch.where(torch.arange(base.numel()) % 3 == 0, y, 2.5))
        canon = torch.where(torch.isnan(want), torch.tensor(NAN), want)
        assert same(got, canon), y
        assert same(mixed[::3], canon[::3]), y


def test_bitwise_equal_to_torch_where_both_are_plain_ieee_sequences():
    """hardswish, hardsigmoid and the backward ops that are only IEEE operations in
    torch's order give torch's float32 bits (away from the NaN inputs where torch's
    vector body and scalar tail disagree)."""
    x = torch.cat([torch.randn(1 << 15) * 4, torch.tensor([-3.0, 3.0, -0.0, 0.0, INF, -INF])])
    g = torch.randn(x.numel())
    y = torch.rand(x.numel())
    pairs = [
        (pointwise("hardswish", x), torch.nn.functional.hardswish(x)),
        (pointwise("hardsigmoid", x), torch.nn.functional.hardsigmoid(x)),
        (pointwise("sigmoid_backward", g, y), A.sigmoid_backward(g, y)),
        (pointwise("hardswish_backward", g, x), A.hardswish_backward(g, x)),
        (pointwise("hardsigmoid_backward", g, x), A.hardsigmoid_backward(g, x)),
        (pointwise("logit_backward", g, y, params=(0.1,)), A.logit_backward(g, y, 0.1)),
    ]
    for ours, theirs in pairs:
        theirs = torch.where(torch.isnan(theirs), torch.tensor(NAN), theirs)
        assert same(ours, theirs)
