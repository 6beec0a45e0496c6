"""bfloat16 linear under the mode computes the PAIR order (VDPBF16PS's, gemm_bf16.c):
checked against an exact rational model of that order, and every kernel path (the
instruction itself where the CPU has AVX512_BF16, emulations elsewhere) against each
other on operands chosen to hit denormals, underflow, overflow, signed zeros and tails."""

from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import samebits
from samebits import _native

TINY = Fraction(1, 2**126)  # the smallest normal float32
HUGE = Fraction(2**128) - Fraction(2**104)  # the largest float32


def f32(x: Fraction) -> Fraction | float:
    """x rounded to float32, nearest-even on 24 bits with no exponent floor, then FTZ:
    results below the smallest normal become zero (after rounding, as x86 does)."""
    if x == 0:
        return Fraction(0)
    sign, m = (-1 if x < 0 else 1), abs(x)
    e = m.numerator.bit_length() - m.denominator.bit_length()
    e += 1 if m >= Fraction(2) ** e * 2 else 0
    e -= 1 if m < Fraction(2) ** e else 0  # 2**e <= m < 2**(e+1)
    scaled = m / Fraction(2) ** (e - 23)  # in [2**23, 2**24)
    q, r = divmod(scaled.numerator, scaled.denominator)
    if 2 * r > scaled.denominator or (2 * r == scaled.denominator and q % 2):
        q += 1
    v = q * Fraction(2) ** (e - 23)
    if v < TINY:
        return -0.0 if sign < 0 else 0.0
    if v > HUGE:
        return sign * float("inf")
    return sign * v


def daz(x: float) -> Fraction:
    return Fraction(0) if x == 0 or abs(x) < 2.0**-126 else Fraction(x)


def pair_dot(a: list[float], b: list[float]) -> float:
    """The PAIR order of gemm_bf16.c, exactly: one accumulator from +0 over the pairs
    of k (an odd K padded with a zero), odd element first, one rounding per fma,
    DAZ/FTZ."""
    if len(a) % 2:
        a, b = a + [0.0], b + [0.0]
    acc: Fraction | float = Fraction(0)
    for p in range(0, len(a), 2):
        for idx in (p + 1, p):
            acc = f32(daz(a[idx]) * daz(b[idx]) + Fraction(acc))
    return float(acc)


def bf16_values(rng: np.random.Generator, n: int, tiny: bool) -> torch.Tensor:
    """bfloat16 values; with ``tiny``, exponents near the bottom of the range (denormals
    and products that underflow) mixed with ordinary ones."""
    x = torch.from_numpy(rng.standard_normal(n).astype(np.float32))
    if tiny:
        scale = torch.from_numpy(2.0 ** rng.integers(-140, -55, n).astype(np.float32))
        x = torch.where(torch.from_numpy(rng.random(n) < 0.6), x * scale, x)
    return x.to(torch.bfloat16)


@pytest.mark.parametrize("K", [2, 31, 32, 45, 96, 301, 600])
@pytest.mark.parametrize("tiny", [False, True], ids=["normal", "tiny"])
# M <= 4 (8 on the AVX-512 paths) runs the few-row kernel, more rows the packed one
@pytest.mark.parametrize("M", [3, 7, 11], ids=["m3", "m7", "m11"])
def test_linear_computes_the_pair_order_exactly(K, tiny, M, isa):
    rng = np.random.default_rng(K + 1000 * tiny)
    x, w = bf16_values(rng, M * K, tiny).view(M, K), bf16_values(rng, 5 * K, tiny).view(5, K)
    if tiny:  # tiny operands against tiny running sums: flushes at every step
        x[0] = x[0] * 2.0**-60
    with samebits.batch_invariant():
        got = F.linear(x, w).float()  # (M, 5)
    want = [
        [pair_dot(x[i].float().tolist(), w[j].float().tolist()) for j in range(5)] for i in range(M)
    ]
    want = torch.tensor(want, dtype=torch.float32).to(torch.bfloat16).float()
    assert torch.equal(got.view(torch.int32), want.view(torch.int32)), (got, want)


def edge_operands(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**16, size=(2, 9, 77), dtype=np.uint16)
    exp = (bits >> 7) & 0xFF
    bits[exp == 0xFF] &= 0x807F  # no inf / NaN operands: their NaN payloads are not promised
    a, b = torch.from_numpy(bits.astype(np.int16)).view(torch.bfloat16)
    bias = bf16_values(rng, 9, tiny=True)
    return a, b, bias


def test_every_path_gives_the_bits_of_the_instruction():
    """Random bit patterns (denormals, tiny and huge products: sums that underflow or
    overflow) through every path this CPU runs; with AVX512_BF16 one of them is the
    instruction itself."""
    paths = samebits.native_info()["available"]
    for seed in range(3):
        a, b, bias = edge_operands(seed)
        outs = {}
        for isa in paths:
            with _native.use_isa(isa), samebits.batch_invariant():
                outs[isa] = F.linear(a, b, bias).view(torch.int16)
        first = outs[paths[0]]
        for isa, out in outs.items():
            assert torch.equal(out, first), (isa, paths[0])


@pytest.mark.skipif(
    "avx512_bf16" not in samebits.native_info()["available"], reason="no AVX512_BF16 on this CPU"
)
def test_the_native_path_runs_the_instruction():
    assert "avx512_bf16" in samebits.native_info()["cpu_features"]
    with _native.use_isa("avx512_bf16"):
        assert _native.lib().isa == "avx512_bf16"


HAS_BF16 = "avx512_bf16" in samebits.native_info()["cpu_features"]


@pytest.mark.skipif(not HAS_BF16, reason="no AVX512_BF16 on this CPU")
def test_the_load_time_probe_accepts_this_cpus_instruction():
    """The loader runs avx512_bf16 only after VDPBF16PS gave the emulation's bits on the
    probe's edge operands; here it does, so the path is available."""
    assert _native._pair_probe(_native._state["dll"])
    assert "avx512_bf16" in samebits.native_info()["available"]


class _SkewedInstruction:
    """The library, except that sb_gemm_avx512_bf16 returns one bit off in its first
    output: a stand-in for a CPU whose instruction rounds differently."""

    def __init__(self, dll):
        self.dll = dll

    def __getattr__(self, name):
        real = getattr(self.dll, name)
        if name != "sb_gemm_avx512_bf16":
            return real

        class Skewed:
            argtypes = restype = None

            def __call__(self, *args):
                status = real(*args)
                c = args[8]
                c[0] = -c[0] if c[0] else 1.0
                return status

        return Skewed()


@pytest.mark.skipif(not HAS_BF16, reason="no AVX512_BF16 on this CPU")
def test_a_cpu_whose_instruction_differs_keeps_the_emulating_path(monkeypatch):
    assert not _native._pair_probe(_SkewedInstruction(_native._state["dll"]))
    monkeypatch.setitem(_native._state, "refused", {"avx512_bf16": _native.PAIR_MISMATCH})
    with pytest.raises(samebits.NativeBuildError, match="not used on this CPU: its VDPBF16PS"):
        _native._check_path("avx512_bf16", _native._state["features"])
