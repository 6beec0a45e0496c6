"""Position-independent elementwise functions: gelu, silu, sigmoid, rsqrt, exp, tanh,
expm1, log1p, and the functions built on them: elu, celu, selu, softplus, mish,
softshrink, sinh, cosh, atanh.

Why: torch's CPU loops run the vectorized body through SLEEF and the tail of each
contiguous run (and of each thread's chunk) through the scalar libm function.
Measured on torch 2.13: gelu, silu and sigmoid in float32, and gelu and rsqrt in
bfloat16, give different bits in the two paths, so an element's bits depended on
where it sat relative to the end of a buffer, i.e. on the batch size.

Here every element runs one fixed, branch-free sequence of float32 IEEE operations
(explicit fused multiply-adds), the same in vector lanes and scalar tails; bfloat16
and float16 are computed in float32 and rounded once. ``exp`` is 2^n times a
degree-7 polynomial; ``tanh`` goes through ``expm1``; gelu's erf uses a Chebyshev
erfc (relative error < 1.2e-7); ``log1p`` reduces 1 + y to [sqrt(1/2), sqrt(2))
times a power of two and corrects for the rounding of 1 + y. Accuracy is a few ulp of
float32.

The functions built on them (elu, celu, selu, softplus, mish, softshrink, sinh,
cosh, atanh), whose torch kernels
compute the vector body and the scalar tail differently, are fixed formulas over
those functions and IEEE float32 multiplies, adds, compares and selects (each exact
given its operands, so the same at every position and on every path), computed in
float32 and rounded once to the input's dtype:

* elu(x, alpha, scale, input_scale) = x > 0 ? x * scale : expm1(x * input_scale) * (alpha * scale)
  (celu = elu(x, alpha, 1, 1 / alpha); selu = elu with its two constants)
* softplus(x, beta, threshold) = x * beta > threshold ? x : log1p(exp(x * beta)) / beta
* mish(x) = x * tanh(softplus(x, 1, 20))
* softshrink(x, l) = x > l ? x - l : (x < -l ? x + l : x * 0)
* sinh(x) = copysign(|x| > 20 ? (E / 2) * E : (e + e / (e + 1)) / 2, x), e = expm1(|x|),
  E = exp(|x| / 2) (finite up to sinh's own overflow)
* cosh(x) = |x| > 20 ? (E / 2) * E : (exp(|x|) + 1 / exp(|x|)) / 2
* atanh(x) = copysign(log1p(2|x| / (1 - |x|)) / 2, x)

The scalar constants are rounded to float32 once (alpha * scale in double first).
"""

from __future__ import annotations

import torch

from samebits import _native
from samebits.errors import UnsupportedInputError
from samebits.ops._common import check_float, narrow, native_view

GELU, GELU_TANH, SILU, SIGMOID, EXP, TANH, RSQRT, ERF, EXPM1, LOG1P = range(10)


def _run(xc: torch.Tensor, code: int) -> torch.Tensor:
    """The native function on a contiguous float32 or bfloat16 tensor, same dtype out
    (bfloat16 computed in float32 and rounded once by the kernel)."""
    y = torch.empty_like(xc)
    if xc.numel():
        _native.lib().sb_unary(
            xc.data_ptr(), y.data_ptr(), xc.numel(), code, _native.dtype_code(xc.dtype),
            _native.nthreads(),
        )  # fmt: skip
    return y


def _unary(op_name: str, x: torch.Tensor, code: int) -> torch.Tensor:
    dtype = check_float(op_name, x)
    xc, _ = native_view(x.contiguous())
    return narrow(_run(xc, code), dtype).view(x.shape)


def gelu(x: torch.Tensor, *, approximate: str = "none") -> torch.Tensor:
    if approximate not in ("none", "tanh"):
        raise UnsupportedInputError(
            f"aten::gelu: approximate={approximate!r}, expected 'none' or 'tanh'"
        )
    return _unary("aten::gelu", x, GELU if approximate == "none" else GELU_TANH)


def silu(x: torch.Tensor) -> torch.Tensor:
    return _unary("aten::silu", x, SILU)


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    return _unary("aten::sigmoid", x, SIGMOID)


def rsqrt(x: torch.Tensor) -> torch.Tensor:
    return _unary("aten::rsqrt", x, RSQRT)


def exp(x: torch.Tensor) -> torch.Tensor:
    return _unary("aten::exp", x, EXP)


def tanh(x: torch.Tensor) -> torch.Tensor:
    return _unary("aten::tanh", x, TANH)


def _f32(x: torch.Tensor, code: int) -> torch.Tensor:
    """One of the native functions on a float32 tensor, float32 out (no rounding)."""
    return _run(x.contiguous(), code)


def _activation(op_name: str, x: torch.Tensor, fn) -> torch.Tensor:
    """fn on x in float32 (bfloat16 and float16 read exactly), rounded once."""
    dtype = check_float(op_name, x)
    y = fn(x.float())
    return narrow(y, dtype)


def _c(v) -> float:
    """A scalar argument as the float32 value the formulas use."""
    return float(torch.tensor(float(v), dtype=torch.float64).float())


def elu(x: torch.Tensor, alpha=1.0, scale=1.0, input_scale=1.0) -> torch.Tensor:
    def f(xf):
        neg = _f32(xf * _c(input_scale), EXPM1) * _c(float(alpha) * float(scale))
        return torch.where(xf > 0, xf * _c(scale), neg)

    return _activation("aten::elu", x, f)


def celu(x: torch.Tensor, alpha=1.0) -> torch.Tensor:
    if float(alpha) == 0:
        raise UnsupportedInputError("aten::celu: alpha must not be 0 (it divides the input)")
    return elu(x, alpha, 1.0, 1.0 / float(alpha))


SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def selu(x: torch.Tensor) -> torch.Tensor:
    return elu(x, SELU_ALPHA, SELU_SCALE, 1.0)


def _softplus_f32(xf: torch.Tensor, beta, threshold) -> torch.Tensor:
    z = xf * _c(beta)
    soft = _f32(_f32(z, EXP), LOG1P) / _c(beta)
    return torch.where(z > _c(threshold), xf, soft)


def softplus(x: torch.Tensor, beta=1.0, threshold=20.0) -> torch.Tensor:
    return _activation("aten::softplus", x, lambda xf: _softplus_f32(xf, beta, threshold))


def mish(x: torch.Tensor) -> torch.Tensor:
    return _activation("aten::mish", x, lambda xf: xf * _f32(_softplus_f32(xf, 1.0, 20.0), TANH))


def softshrink(x: torch.Tensor, lambd=0.5) -> torch.Tensor:
    if float(lambd) < 0:
        raise UnsupportedInputError(f"aten::softshrink: lambd must be >= 0, got {lambd}")

    def f(xf):
        lam = _c(lambd)
        inner = torch.where(xf < -lam, xf + lam, xf * 0.0)  # x * 0 keeps NaN and the sign
        return torch.where(xf > lam, xf - lam, inner)

    return _activation("aten::softshrink", x, f)


def _sinh_f32(xf: torch.Tensor) -> torch.Tensor:
    a = xf.abs()
    e = _f32(a, EXPM1)
    small = 0.5 * (e + e / (e + 1.0))
    half = _f32(a * 0.5, EXP)  # exp(a) = half * half stays finite past exp's range
    return torch.copysign(torch.where(a > 20.0, (half * 0.5) * half, small), xf)


def sinh(x: torch.Tensor) -> torch.Tensor:
    return _activation("aten::sinh", x, _sinh_f32)


def cosh(x: torch.Tensor) -> torch.Tensor:
    def f(xf):
        a = xf.abs()
        e = _f32(a, EXP)
        half = _f32(a * 0.5, EXP)
        return torch.where(a > 20.0, (half * 0.5) * half, 0.5 * (e + 1.0 / e))

    return _activation("aten::cosh", x, f)


def atanh(x: torch.Tensor) -> torch.Tensor:
    def f(xf):
        a = xf.abs()
        return torch.copysign(0.5 * _f32((2.0 * a) / (1.0 - a), LOG1P), xf)

    return _activation("aten::atanh", x, f)


_REFERENCES = {
    "gelu": lambda x: torch.nn.functional.gelu(x.double()).to(x.dtype),
    "gelu_tanh": lambda x: torch.nn.functional.gelu(x.double(), approximate="tanh").to(x.dtype),
    "silu": lambda x: torch.nn.functional.silu(x.double()).to(x.dtype),
    "sigmoid": lambda x: torch.sigmoid(x.double()).to(x.dtype),
    "rsqrt": lambda x: torch.rsqrt(x.double()).to(x.dtype),
    "exp": lambda x: torch.exp(x.double()).to(x.dtype),
    "tanh": lambda x: torch.tanh(x.double()).to(x.dtype),
    "expm1": lambda x: torch.expm1(x.double()).to(x.dtype),
    "log1p": lambda x: torch.log1p(x.double()).to(x.dtype),
    "elu": lambda x: torch.nn.functional.elu(x.double(), 0.7).to(x.dtype),
    "celu": lambda x: torch.nn.functional.celu(x.double(), 1.3).to(x.dtype),
    "selu": lambda x: torch.nn.functional.selu(x.double()).to(x.dtype),
    "softplus": lambda x: torch.nn.functional.softplus(x.double(), 2.0, 15.0).to(x.dtype),
    "mish": lambda x: torch.nn.functional.mish(x.double()).to(x.dtype),
    "softshrink": lambda x: torch.nn.functional.softshrink(x.double(), 0.3).to(x.dtype),
    "sinh": lambda x: torch.sinh(x.double()).to(x.dtype),
    "cosh": lambda x: torch.cosh(x.double()).to(x.dtype),
    "atanh": lambda x: torch.atanh(x.double()).to(x.dtype),
}
