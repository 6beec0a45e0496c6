"""exact_sum / mean / dot / norm against a fractions.Fraction oracle (hypothesis),
and their independence from permutation, chunking and thread count."""

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from samebits.errors import UnsupportedInputError
from samebits.exact import exact_dot, exact_mean, exact_norm, exact_sum

NP = {"float64": np.float64, "float32": np.float32, "float16": np.float16}


def oracle_round(q: Fraction, dtype: str) -> float:
    """Nearest value of ``dtype`` to q, ties to even, found by comparing exact
    distances to the neighbours of a candidate (independent of samebits' rounding)."""
    t = NP[dtype]
    info = np.finfo(t)
    ulp_of_max = Fraction(2) ** (info.maxexp - 1 - info.nmant)
    top = Fraction(float(info.max)) + ulp_of_max / 2
    if q >= top:
        return math.inf
    if q <= -top:
        return -math.inf
    c = t(float(q))
    with np.errstate(over="ignore"):
        cands = {
            v
            for v in (c, np.nextafter(c, t(np.inf)), np.nextafter(c, t(-np.inf)))
            if np.isfinite(v)
        }
    best = min(
        cands,
        key=lambda v: (
            abs(Fraction(float(v)) - q),
            int(np.array(v).view(f"u{np.dtype(t).itemsize}")) & 1,
        ),
    )
    return float(best)


def exact(xs) -> Fraction:
    return sum((Fraction(float(v)) for v in xs), Fraction(0))


def floats(dtype):
    w = {"float64": 64, "float32": 32, "float16": 16}[dtype]
    return st.floats(allow_nan=False, allow_infinity=False, width=w)


def wide_doubles():
    # 1e-300 .. 1e300, subnormals and exact cancellations
    return st.one_of(
        st.floats(min_value=-1e300, max_value=1e300, allow_nan=False),
        st.floats(min_value=-1e-300, max_value=1e-300, allow_nan=False),
        st.sampled_from([5e-324, -5e-324, 2.2250738585072014e-308, 1e300, -1e300, 1.0, 0.1]),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(wide_doubles(), max_size=60))
def test_float64_sum_matches_fraction_oracle(xs):
    got = exact_sum(np.array(xs, dtype=np.float64))
    assert np.array(got).tobytes() == np.array(oracle_round(exact(xs), "float64")).tobytes() or (
        got == 0 and oracle_round(exact(xs), "float64") == 0
    )


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_narrow_types_round_directly_not_via_double(dtype):
    @settings(max_examples=200, deadline=None)
    @given(st.lists(floats(dtype), max_size=40))
    def check(xs):
        arr = np.array(xs, dtype=NP[dtype])
        got = exact_sum(arr)
        want = oracle_round(exact(arr), dtype)
        assert got.dtype == arr.dtype
        assert float(got) == want or (
            math.isinf(want) and math.isinf(float(got)) and (want > 0) == (float(got) > 0)
        )

    check()


def test_double_rounding_trap_for_float32():
    # exact value 1 + 2^-24 + 2^-60: float64 rounds it to 1 + 2^-24 (a float32 tie), which
    # float32 would then round to 1; the correct float32 answer is 1 + 2^-23.
    xs = np.array([1.0, 2.0**-24, 2.0**-60], dtype=np.float64)
    q = exact(xs)
    assert oracle_round(q, "float32") == 1 + 2.0**-23
    # the same exact value from float32 inputs
    f32 = np.array([1.0, 2.0**-24, 2.0**-60], dtype=np.float32)
    assert float(exact_sum(f32)) == 1 + 2.0**-23


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.floats(min_value=-1e150, max_value=1e150, allow_nan=False), min_size=1, max_size=30
    ),
    st.randoms(),
)
def test_mean_dot_norm(xs, rnd):
    a = np.array(xs)
    n = len(xs)
    assert float(exact_mean(a)) == oracle_round(exact(xs) / n, "float64")
    b = a.copy()
    rnd.shuffle(b)
    dot = sum((Fraction(x) * Fraction(y) for x, y in zip(a, b, strict=True)), Fraction(0))
    assert float(exact_dot(a, b)) == oracle_round(dot, "float64")
    ss = sum((Fraction(x) ** 2 for x in a), Fraction(0))
    r = exact_norm(a)
    # correctly rounded sqrt: r is the double nearest sqrt(ss): compare squares exactly
    lo, hi = np.nextafter(r, -np.inf), np.nextafter(r, np.inf)
    mid_lo, mid_hi = (
        (Fraction(float(lo)) + Fraction(float(r))) / 2,
        (Fraction(float(r)) + Fraction(float(hi))) / 2,
    )
    assert (r == 0 and ss == 0) or (mid_lo**2 <= ss <= mid_hi**2)


def test_special_values():
    inf, nan = math.inf, math.nan
    assert math.isnan(exact_sum(np.array([nan, 1.0])))
    assert math.isnan(exact_sum(np.array([inf, -inf])))
    assert exact_sum(np.array([inf, 1.0, 5.0])) == inf and exact_sum(np.array([-inf, 1.0])) == -inf
    assert (
        exact_sum(np.array([1.7e308, 1.7e308])) == inf
        and exact_sum(np.array([-1.7e308] * 2)) == -inf
    )
    assert exact_sum(np.array([1.7e308, 1.7e308, -1.7e308])) == 1.7e308  # no spurious overflow
    assert (
        exact_sum(np.array([], dtype=np.float32)) == 0
        and exact_sum(np.array([], dtype=np.float32)).dtype == np.float32
    )
    assert exact_sum(np.array([6e4, 6e4], dtype=np.float16)) == np.float16(np.inf)
    assert exact_sum(np.array([5e-324, 5e-324])) == 1e-323
    assert math.isnan(float(exact_mean(np.array([]))))


def test_bfloat16_and_dims_and_types():
    t = torch.randn(4, 5, 6, generator=torch.Generator().manual_seed(0)).bfloat16()
    r = exact_sum(t, dim=(0, 2), keepdim=True)
    assert isinstance(r, torch.Tensor) and r.dtype == torch.bfloat16 and r.shape == (1, 5, 1)
    for j in range(5):
        q = exact(t[:, j, :].flatten().float().numpy())
        # bfloat16 = float32 with 8 significant bits: check by exact comparison of candidates
        v = float(r[0, j, 0])
        ulp = 2.0 ** (math.floor(math.log2(abs(v))) - 7) if v else 2.0**-133
        assert abs(Fraction(v) - q) <= Fraction(ulp) / 2
    ints = np.arange(10)
    assert exact_sum(ints) == 45 and exact_sum(torch.arange(4), dim=0).item() == 6
    a = np.random.default_rng(1).standard_normal((30, 4))
    assert exact_sum(a, 0).shape == (4,) and exact_sum(a, (0, 1)).shape == ()
    assert (
        exact_sum(a[::2, ::-1], 0).tobytes()
        == exact_sum(np.ascontiguousarray(a[::2, ::-1]), 0).tobytes()
    )


def test_permutation_chunking_and_threads(threads):
    x = np.random.default_rng(2).standard_normal(200_003) * np.exp(
        np.random.default_rng(3).uniform(-30, 30, 200_003)
    )
    ref = np.array(exact_sum(x)).tobytes()
    x32 = torch.from_numpy(x).float()
    ref32 = exact_sum(x32).numpy().tobytes()
    rng = np.random.default_rng(4)
    for _ in range(3):
        assert np.array(exact_sum(rng.permutation(x))).tobytes() == ref
    # chunked: exact sums of chunks, then an exact sum of... the exact states (via 2-D reduce)
    padded = np.concatenate([x, np.zeros(7)])  # 200010 = 10 x 20001
    assert np.array(exact_sum(padded.reshape(10, -1))).tobytes() == ref
    assert np.array(exact_sum(padded.reshape(-1, 10))).tobytes() == ref
    for t in (1, 2, 3, 5):
        threads(t)
        assert np.array(exact_sum(x)).tobytes() == ref
        assert exact_sum(x32).numpy().tobytes() == ref32


def test_bad_inputs():
    with pytest.raises(UnsupportedInputError, match="complex"):
        exact_sum(np.array([1 + 2j]))
    with pytest.raises(UnsupportedInputError, match="complex"):
        exact_sum(torch.tensor([1 + 2j]))
    with pytest.raises(UnsupportedInputError, match="tensors on meta"):
        exact_sum(torch.empty(3, device="meta"))
    with pytest.raises(UnsupportedInputError, match=r"shapes \(3,\) and \(4,\)"):
        exact_dot(np.ones(3), np.ones(4))
    with pytest.raises(UnsupportedInputError, match="expected a numpy array"):
        exact_sum([1.0, 2.0])
    with pytest.raises(UnsupportedInputError, match="dim 5 is out of range"):
        exact_sum(np.ones((2, 2)), dim=5)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("spread", [0, 10, 60, 100])
def test_vectorized_bins_match_oracle_across_blocks(dtype, spread):
    """Runs past the 2048-value blocks and the 4-lane tails, with 1 to 6 bins."""
    rng = np.random.default_rng(spread)
    n = 5003
    x = (rng.standard_normal(n) * 2.0 ** rng.integers(-spread, spread + 1, n)).astype(NP[dtype])
    x[::97] = 0.0
    assert float(exact_sum(x)) == oracle_round(exact(x), dtype)
    assert float(exact_sum(x[1:])) == oracle_round(exact(x[1:]), dtype)
