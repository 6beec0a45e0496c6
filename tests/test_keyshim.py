"""The mode key's C++ kernels (samebits/_keyshim.py, samebits/_native/mode_key.cpp).

Each C++ kernel decides a common case itself and hands every other case to the Python
kernel it replaced. These tests hold the two paths to the same bits, errors and layouts
(``_keyshim.disabled()`` runs the Python kernels alone), and check that the C++ path
really decides the common cases (its call counter moves).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

import samebits
from samebits import _keyshim, _native
from samebits._mode import _cached_plan
from samebits.errors import NotInvariantError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _entries(kind: str) -> list[str]:
    return [q for q, k, *_ in _cached_plan()[1] if k == kind]


def _op(qualname: str):
    base, _, ov = qualname.partition("::")[2].partition(".")
    return getattr(getattr(torch.ops.aten, base), ov or "default")


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The bytes of a float tensor as integers (NaNs compare by their bits)."""
    if not t.dtype.is_floating_point:
        return t
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def _same(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride()
        assert torch.equal(_bits(a), _bits(b))
    else:
        assert type(a) is type(b) and a == b


def _both(fn, kind: str | None = None):
    """(result with the C++ kernels, result with the Python kernels, calls the C++
    kernels of ``kind`` (or all) decided), each in the mode; an exception is returned as
    its type and message."""

    def call():
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - compared between the two paths
            return (type(err), str(err))

    with samebits.batch_invariant():
        before = _keyshim.fast_calls(kind)
        fast = call()
        calls = _keyshim.fast_calls(kind) - before
        with _keyshim.disabled():
            slow = call()
    return fast, slow, calls


def test_the_library_is_built_and_its_kernels_installed():
    with samebits.batch_invariant():
        pass
    assert _keyshim.status().startswith("on ("), _keyshim.status()
    assert samebits.native_info()["mode_key"] == _keyshim.status()
    kinds = {k for _, k, *_ in _cached_plan()[1]}
    assert kinds == set(_keyshim.KINDS)
    assert int(_keyshim.status().rsplit(", ", 1)[1].split()[0]) == len(_cached_plan()[1])


def test_the_functional_arithmetic_and_engine_kernels_are_unboxed():
    with samebits.batch_invariant():
        pass
    for q in ("aten::add.Tensor", "aten::add.Scalar", "aten::mul.Tensor", "aten::div.Scalar",
              "aten::rsub.Tensor", "aten::exp", "aten::atan2", "aten::pow.Tensor_Scalar",
              "aten::pow.Scalar"):  # fmt: skip
        assert _keyshim.unboxed(q), q
    for q in ("aten::add_.Tensor", "aten::mul.out", "aten::linear"):  # boxed kernels
        assert not _keyshim.unboxed(q), q


def _engine_args(qualname: str, dtype: torch.dtype, number: float | int):
    """Tensors inside every op's domain for Tensor arguments, ``number`` for Scalars."""
    gen = torch.Generator().manual_seed(7)
    args = []
    for a in _op(qualname)._schema.arguments:
        if a.has_default_value():  # past the operands (gelu's approximate): the default
            continue
        if str(a.type) == "Tensor":
            args.append((torch.rand(3, 5, generator=gen) * 0.8 + 0.1).to(dtype))
        else:
            args.append(number)
    return args


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("qualname", _entries("engine"))
def test_an_engine_op_gets_the_python_kernels_bits_from_the_cpp_kernel(qualname, dtype):
    op = _op(qualname)
    for number in (0.37, 3, 1e-3):
        args = _engine_args(qualname, dtype, number)
        fast, slow, calls = _both(lambda a=args: op(*a))
        _same(fast, slow)
        assert calls == 1, f"{qualname} {dtype} {number}: the C++ kernel did not decide"


def _param_entries() -> list[str]:
    return [q for q, k, _, _, params in _cached_plan()[1] if k == "engine" and params]


def test_the_engine_ops_with_parameters_have_cpp_kernels():
    names = {q.partition("::")[2] for q in _param_entries()}
    assert {"softplus", "softshrink", "elu", "selu", "logit", "softplus_backward"} <= names


# non-default values for each parameter argument: floats, ints, tiny, large, None
_PARAM_VALUES = [0.37, 2, 1e-3, 30.0, -0.5, None]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("qualname", _param_entries())
def test_an_engine_ops_parameters_are_read_in_cpp_as_the_python_kernel_reads_them(qualname, dtype):
    """Every parameter argument at values other than its default, positional: the C++
    kernel gives the Python kernel's bits and decides the call, or hands it over (a
    refusal, or None where the parameter takes no None) and both give the same error."""
    op = _op(qualname)
    schema = op._schema.arguments
    base = _engine_args(qualname, dtype, 0.37)  # the operands (and required numbers)
    nops = sum(str(a.type) == "Tensor" for a in schema)
    for value in _PARAM_VALUES:
        args = base[:nops] + [value] * (len(schema) - nops)
        fast, slow, calls = _both(lambda a=args: op(*a), "engine")
        if isinstance(slow, tuple) and not isinstance(slow, torch.Tensor):
            assert fast == slow and calls == 0, (qualname, value)  # refused in Python
            continue
        _same(fast, slow)
        assert calls == 1, f"{qualname} {value}: the C++ kernel did not decide"


def test_a_refused_parameter_gets_the_python_kernels_error():
    x = torch.randn(5, 7)
    fast, slow, calls = _both(lambda: torch.nn.functional.softshrink(x, -0.25), "engine")
    assert fast == slow and calls == 0
    assert fast[0] is samebits.errors.UnsupportedInputError and "lambd must be >= 0" in fast[1]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gelu_at_its_default_runs_in_cpp_and_its_other_form_in_python(dtype):
    F = torch.nn.functional
    x, g = torch.randn(6, 40).to(dtype), torch.randn(6, 40).to(dtype)
    cases = [
        (lambda: F.gelu(x), 1),
        (lambda: F.gelu(x, approximate="none"), 1),
        (lambda: torch.ops.aten.gelu_backward(g, x), 1),
        (lambda: F.gelu(x, approximate="tanh"), 0),
        (lambda: torch.ops.aten.gelu_backward(g, x, approximate="tanh"), 0),
        (lambda: F.gelu(x, approximate="erf"), 0),  # refused by both paths
    ]
    for fn, want in cases:
        fast, slow, calls = _both(fn, "engine")
        if isinstance(fast, torch.Tensor):
            _same(fast, slow)
        else:
            assert fast == slow
        assert calls == want


def test_sqrt_runs_in_cpp_for_float32_and_bfloat16_and_float64_takes_the_ieee_root():
    """sqrt's Python kernel differs from its Spec's only for float64 (the correctly rounded
    root that the engine does not compute), a dtype the C++ engine call hands back."""
    x = torch.rand(6, 40) * 10
    for t, want in ((x, 1), (x.bfloat16(), 1), (x.double(), 0)):
        fast, slow, calls = _both(lambda t=t: torch.sqrt(t), "engine")
        _same(fast, slow)
        assert calls == want, t.dtype
    root = torch.from_numpy(np.sqrt(x.double().numpy()))
    assert torch.equal(fast, root)


def test_a_default_engine_is_what_the_spec_chooses_at_the_defaults():
    from samebits.ops import pointwise

    x = torch.ones(2)
    for name, spec in pointwise.ATEN.items():
        if spec.default_engine is not None:
            operands = [x] * len(pointwise._aten(name)._schema.arguments[:2])
            n = pointwise.fast_kind(name, "functional")[2]
            assert spec.engine(*operands[:n]) == spec.default_engine, name


@pytest.mark.parametrize("qualname", ["aten::exp", "aten::sigmoid", "aten::atan2"])
def test_other_layouts_and_dtypes_go_to_the_python_kernel(qualname):
    op = _op(qualname)
    arity = len(op._schema.arguments)
    x = torch.rand(4, 6) + 0.1
    cases = {
        "transposed": [x.t()] * arity,
        "no element": [x[:0]] * arity,
        "float16": [x.half()] * arity,
        "mixed dtypes": [x, x.bfloat16()][:arity] if arity > 1 else [x.double()],
        "broadcast": [x, x[:1]][:arity] if arity > 1 else [x.to(torch.int32)],
    }
    for name, args in cases.items():
        fast, slow, calls = _both(lambda a=args: op(*a), "engine")
        _same(fast, slow)
        assert calls == 0, f"{qualname}, {name}: the C++ kernel took a case it must hand on"


def test_one_element_and_size_one_strides_keep_the_python_kernels_layout():
    x = torch.rand(1, 1, 8)[:, :, 3:4]  # (1, 1, 1), strides (8, 8, 1): contiguous
    for fn in (lambda: torch.exp(x), lambda: torch.sigmoid(x.bfloat16()), lambda: x**0.5):
        fast, slow, calls = _both(fn)
        _same(fast, slow)
        assert calls == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_linear_gets_the_python_kernels_bits_from_the_cpp_kernel(dtype):
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(24, 40, generator=gen).to(dtype)
    b = torch.randn(24, generator=gen).to(dtype)
    for shape in [(1, 40), (5, 40), (2, 3, 40), (40,)]:
        x = torch.randn(*shape, generator=gen).to(dtype)
        for bias in (None, b):
            fast, slow, calls = _both(lambda x=x, bias=bias: torch.nn.functional.linear(x, w, bias))
            _same(fast, slow)
            assert calls == 1, (shape, bias is None)


def test_linear_hands_other_layouts_and_errors_to_the_python_kernel():
    gen = torch.Generator().manual_seed(4)
    x, w, b = torch.randn(5, 40, generator=gen), torch.randn(24, 40, generator=gen), torch.randn(24)
    cases = {
        "weight stored K-major": (x, w.t().contiguous().t(), b),
        "x not contiguous": (torch.randn(40, 5).t(), w, b),
        "bias of another dtype": (x, w, b.double()),
        "float16": (x.half(), w.half(), None),
        "K does not match": (x[:, :30], w, None),
        "strided bias": (x, w, torch.randn(48)[::2]),
    }
    for name, args in cases.items():
        fast, slow, calls = _both(lambda a=args: torch.nn.functional.linear(*a), "linear")
        _same(fast, slow)
        assert calls == 0, name


def _reduce_input(dtype: torch.dtype, shape=(64, 3, 33)) -> torch.Tensor:
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(*shape, generator=gen) * torch.logspace(-3, 3, shape[-1])
    x[0, 0, 0], x[1, 1, 1] = float("nan"), float("inf")
    x[2, 2, 3], x[2, 2, 4] = float("inf"), -float("inf")  # inf - inf: a NaN the sum makes
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("op", [torch.sum, torch.mean])
def test_sum_and_mean_get_the_python_kernels_bits_from_the_cpp_kernel(op, dtype):
    """Over one run of dims (leading, middle or trailing) and over the whole tensor."""
    x = _reduce_input(dtype)
    for dim in ([-1], [2], [1, 2], [2, 1], [0, 1, 2], -1, 0, [1], [0, 1], [1, 0]):
        for keepdim in (False, True):
            for kw in ({}, {"dtype": dtype}):
                fast, slow, calls = _both(lambda d=dim, k=keepdim, kw=kw: op(x, d, k, **kw))
                _same(fast, slow)
                assert calls == 1, (dim, keepdim, kw)
    for t in (x, x[3], x[3:4, 1:2, 5:6], torch.randn(50000).to(dtype)):  # the whole tensor
        for kw in ({}, {"dtype": dtype}):
            fast, slow, calls = _both(lambda t=t, kw=kw: op(t, **kw), op.__name__)
            _same(fast, slow)
            assert calls == 1, (t.shape, kw)


@pytest.mark.parametrize("op", [torch.sum, torch.mean])
def test_sum_and_mean_hand_other_reductions_to_the_python_kernel(op):
    x = _reduce_input(torch.float32, (6, 5, 7))
    cases = {
        "dims apart": lambda: op(x, [0, 2]),
        "the whole, not contiguous": lambda: op(x.transpose(0, 2)),
        "the whole, float64 accumulation": lambda: op(x, dtype=torch.float64),
        "the whole, empty": lambda: op(x[:0]),
        "an empty dim list": lambda: op(x, []),
        "float64 accumulation": lambda: op(x, -1, dtype=torch.float64),
        "not contiguous": lambda: op(x.transpose(0, 2), -1),
        "float16": lambda: op(x.half(), -1),
        "a repeated dim": lambda: op(x, [2, -1]),
        "a dim out of range": lambda: op(x, 3),
    }
    for name, fn in cases.items():
        fast, slow, calls = _both(fn, op.__name__)
        if isinstance(fast, torch.Tensor):
            _same(fast, slow)
        else:
            assert fast[0] is slow[0], name
        assert calls == 0, name


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_layer_norm_and_rms_norm_get_the_python_kernels_bits_from_the_cpp_kernel(dtype):
    F = torch.nn.functional
    gen = torch.Generator().manual_seed(6)
    x = (torch.randn(3, 5, 24, generator=gen) * 3 + 1).to(dtype)
    x[0, 0, 0] = float("nan")
    w, b = torch.randn(24, generator=gen), torch.randn(24, generator=gen)
    cases = {
        "layer_norm": lambda: torch.ops.aten.native_layer_norm(
            x, [24], w.to(dtype), b.to(dtype), 1e-5
        ),
        "layer_norm, no affine": lambda: torch.ops.aten.native_layer_norm(
            x, [24], None, None, 1e-3
        ),
        "layer_norm, float32 weight": lambda: torch.ops.aten.native_layer_norm(x, [24], w, b, 1e-5),
        "layer_norm, bias only": lambda: torch.ops.aten.native_layer_norm(x, [24], None, b, 1e-5),
        "layer_norm, two dims": lambda: torch.ops.aten.native_layer_norm(
            x, [5, 24], None, None, 1e-5
        ),
        "F.layer_norm": lambda: F.layer_norm(x, [24], w.to(dtype), b.to(dtype)),
        "rms_norm": lambda: F.rms_norm(x, [24], w.to(dtype), 1e-6),
        "rms_norm, default eps": lambda: F.rms_norm(x, [24]),
    }
    for name, fn in cases.items():
        fast, slow, calls = _both(fn, "norm")
        for f, s in zip(fast, slow, strict=True) if isinstance(fast, tuple) else [(fast, slow)]:
            _same(f, s)
        assert calls == 1, name


def test_norms_hand_other_layouts_and_errors_to_the_python_kernel():
    aten = torch.ops.aten
    x, w, w2 = torch.randn(4, 6, 8), torch.randn(8), torch.randn(16)
    cases = {
        "x not contiguous": lambda: aten.native_layer_norm(x.transpose(0, 1), [8], w, None, 1e-5),
        "float16": lambda: aten.native_layer_norm(x.half(), [8], None, None, 1e-5),
        "shape does not match": lambda: aten.native_layer_norm(x, [6], None, None, 1e-5),
        "weight and bias dtypes differ": lambda: aten.native_layer_norm(
            x, [8], w, w.bfloat16(), 1e-5
        ),
        "strided weight": lambda: aten.native_layer_norm(x, [8], w2[::2], None, 1e-5),
        "float64 weight": lambda: aten.native_layer_norm(x, [8], w.double(), None, 1e-5),
        "no rows": lambda: aten.native_layer_norm(x[:0], [8], None, None, 1e-5),
    }
    for name, fn in cases.items():
        fast, slow, calls = _both(fn, "norm")
        if isinstance(fast, tuple) and isinstance(fast[0], torch.Tensor):
            for f, s in zip(fast, slow, strict=True):
                _same(f, s)
        else:
            assert fast == slow, name  # the same error from both paths
        assert calls == 0, name


def _qkv(dtype, b=2, hq=4, hk=4, lq=3, s=7, d=16, dv=16):
    gen = torch.Generator().manual_seed(8)
    q = torch.randn(b, hq, lq, d, generator=gen).to(dtype)
    k = torch.randn(b, hk, s, d, generator=gen).to(dtype)
    v = torch.randn(b, hk, s, dv, generator=gen).to(dtype)
    return q, k, v


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_gets_the_python_kernels_bits_from_the_cpp_kernel(dtype):
    sdpa = torch.nn.functional.scaled_dot_product_attention
    q, k, v = _qkv(dtype)
    qd = q[:, :, -1:]  # a decode step
    q2, k2, v2 = _qkv(dtype, hq=8, hk=2, lq=1, s=9)  # grouped query heads
    keep = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    keep[0, ..., :3] = False  # left padding
    bias = torch.randn(3, 7)
    cases = {
        "plain": lambda: sdpa(q, k, v),
        "decode": lambda: sdpa(qd, k, v),
        "causal": lambda: sdpa(q, k, v, is_causal=True),
        "bool mask, broadcast": lambda: sdpa(q, k, v, attn_mask=keep),
        "float mask, broadcast": lambda: sdpa(q, k, v, attn_mask=bias),
        "scale": lambda: sdpa(q, k, v, scale=0.3),
        "gqa": lambda: sdpa(q2, k2, v2, enable_gqa=True),
        "3-d": lambda: sdpa(q[0], k[0], v[0]),
        "value dim": lambda: sdpa(*_qkv(dtype, dv=8)),
        "(B, L, H, D) storage": lambda: sdpa(
            *(t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))
        ),
    }
    for name, fn in cases.items():
        fast, slow, calls = _both(fn, "attention")
        _same(fast, slow)
        assert calls == 1, name


def test_attention_hands_other_cases_to_the_python_kernel():
    sdpa = torch.nn.functional.scaled_dot_product_attention
    q, k, v = _qkv(torch.float32)
    cases = {
        "float16": lambda: sdpa(q.half(), k.half(), v.half()),
        "dropout": lambda: sdpa(q, k, v, dropout_p=0.1),
        "mask and causal": lambda: sdpa(
            q, k, v, torch.ones(3, 7, dtype=torch.bool), is_causal=True
        ),
        "head dim 300": lambda: sdpa(*_qkv(torch.float32, d=300, dv=4)),
        "q strided last dim": lambda: sdpa(q[..., ::2], k[..., ::2], v),
        "float64 mask": lambda: sdpa(q, k, v, attn_mask=torch.zeros(3, 7, dtype=torch.float64)),
        "heads differ without gqa": lambda: sdpa(*_qkv(torch.float32, hq=8, hk=2)),
        "no query rows": lambda: sdpa(q[:, :, :0], k, v),
    }
    for name, fn in cases.items():
        fast, slow, calls = _both(fn, "attention")
        if isinstance(fast, torch.Tensor):
            _same(fast, slow)
        else:
            assert fast == slow, name
        assert calls == 0, name


def test_arange_is_refused_or_passed_as_the_python_guard_says():
    cases = {
        "integers": (lambda: torch.arange(10), 1),
        "integral floats": (lambda: torch.arange(0.0, 8.0, 2.0), 1),
        "float dtype, integral": (lambda: torch.arange(5, dtype=torch.float32), 1),
        "fractional step": (lambda: torch.arange(0, 1, 0.1), 0),
        "fractional, int dtype": (lambda: torch.arange(0.5, 4, dtype=torch.int64), 1),
        "fractional, float dtype": (lambda: torch.arange(0.5, 4, dtype=torch.float64), 0),
        "fractional, float out=": (lambda: torch.arange(0.5, 4, out=torch.empty(0)), 0),
        "fractional, int out=": (
            lambda: torch.arange(0.5, 4, out=torch.empty(0, dtype=torch.int64)),
            1,
        ),
        "range": (lambda: torch.range(0, 1, 0.25), 0),
        "inf end": (lambda: torch.arange(0, float("inf")), 0),
    }
    for name, (fn, want) in cases.items():
        fast, slow, calls = _both(fn, "range")
        if want:
            _same(fast, slow)
        else:
            assert fast[0] is slow[0] is NotInvariantError, name  # refused by both paths
        assert calls == want, name


_ARITH = [
    lambda x, y: x + y,
    lambda x, y: torch.add(x, y, alpha=0.3),
    lambda x, y: torch.add(x, y, alpha=2),
    lambda x, y: x - 1.5,
    lambda x, y: torch.sub(x, 0.7, alpha=0.3),
    lambda x, y: torch.rsub(x, y, alpha=0.3),
    lambda x, y: 2.0 - x,
    lambda x, y: x * y,
    lambda x, y: x * 0.3,
    lambda x, y: 0.3 * x,
    lambda x, y: x * 3,
    lambda x, y: x / 0.7,
    lambda x, y: x / y,
    lambda x, y: x * y[0, 0],
    lambda x, y: x**2.5,
    lambda x, y: 2.0**x,
    lambda x, y: x * 1e-3,
    lambda x, y: x.clone().mul_(0.3),
    lambda x, y: x.clone().add_(y, alpha=0.3),
    lambda x, y: x.clone().div_(y),
    lambda x, y: torch.mul(x, 0.3, out=torch.empty_like(x)),
    lambda x, y: torch.add(x, y, alpha=0.3, out=torch.empty_like(x)),
]


@pytest.mark.parametrize(
    "dtype",
    [torch.float32, torch.bfloat16, torch.float16, torch.float64, torch.int32, torch.complex64],
)
@pytest.mark.parametrize("k", range(len(_ARITH)))
def test_add_sub_mul_div_get_the_python_kernels_bits_and_errors(k, dtype):
    gen = torch.Generator().manual_seed(k)
    x = (torch.rand(4, 6, generator=gen) * 4 + 0.5).to(dtype)
    y = (torch.rand(4, 6, generator=gen) * 4 + 0.5).to(dtype)
    fast, slow, calls = _both(lambda: _ARITH[k](x, y))
    if isinstance(fast, tuple) and not isinstance(fast, torch.Tensor):
        assert fast == slow  # the same refusal from both paths
    else:
        _same(fast, slow)


def test_the_common_arithmetic_is_decided_in_cpp():
    x, y = torch.rand(4, 6), torch.rand(4, 6)
    xb = x.bfloat16()
    cases = {
        "x + y": lambda: x + y,
        "x * 0.5": lambda: x * 0.5,
        "x - y": lambda: x - y,
        "x / y": lambda: x / y,
        "xb * 0.5": lambda: xb * 0.5,  # the engine, with a wrapped Python number
        "0.3 * xb": lambda: 0.3 * xb,
        "xb / 3": lambda: xb / 3,
        "x ** 2.5": lambda: x**2.5,  # the engine, with a Scalar argument
        "2.0 ** x": lambda: 2.0**x,
        "torch.exp(xb)": lambda: torch.exp(xb),
        "add alpha=0.3": lambda: torch.add(x, y, alpha=0.3),  # the engine's fma, alpha read in C++
        "sub xb 0.7 alpha=0.3": lambda: torch.sub(xb, 0.7, alpha=0.3),
        "rsub alpha=2": lambda: torch.rsub(x, y, alpha=2),
    }
    for name, fn in cases.items():
        fast, slow, calls = _both(fn)
        _same(fast, slow)
        assert calls == 1, name


def test_a_forced_kernel_path_is_the_one_a_fast_call_uses():
    with samebits.batch_invariant():
        process = _keyshim.thread_pointwise()
        assert process == _native.entry_address(_native.process_kernels().isa, "sb_pointwise")
        for isa in _native.native_info()["available"]:
            with _native.use_isa(isa):
                want = _native.entry_address(isa, "sb_pointwise")
                assert _keyshim.thread_pointwise() == want
                seen: dict[str, int | None] = {}

                def other_thread(seen=seen):
                    seen["addr"] = _keyshim.thread_pointwise()

                t = threading.Thread(target=other_thread)
                t.start()
                t.join()
                assert seen["addr"] == process  # the path is per thread
        assert _keyshim.thread_pointwise() == process


def test_wrapped_python_bindings_leave_the_cpp_entries_and_their_count():
    """A tool may wrap a path's Python bindings to count kernel calls
    (tools/kernel_hashes.py): the C++ kernels take the library's own entry points and
    count their calls for it."""
    isa = _native.native_info()["isa"]
    k = _native._kernels_for(isa)
    original = k.sb_pointwise
    k.sb_pointwise = lambda *args: original(*args)
    try:
        with samebits.batch_invariant(), _native.use_isa(isa):
            assert _keyshim.thread_pointwise() == _native.entry_address(isa, "sb_pointwise")
            before = _keyshim.entry_calls()["sb_pointwise"]
            torch.exp(torch.rand(32))
            assert _keyshim.entry_calls()["sb_pointwise"] == before + 1
    finally:
        k.sb_pointwise = original


def test_a_fast_call_in_another_thread_in_the_mode():
    x = torch.rand(64) + 0.1
    with samebits.batch_invariant():
        want = torch.exp(x)
    out = {}

    def work():
        with samebits.batch_invariant():
            before = _keyshim.fast_calls()
            out["y"] = torch.exp(x)
            out["calls"] = _keyshim.fast_calls() - before

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert torch.equal(out["y"], want) and out["calls"] >= 1


def test_meta_tensors_with_python_numbers_run_meta_kernels():
    # a Python number is a CPU tensor, so the call's key set has CPU next to Meta: the
    # mode must see a meta call (torch's meta kernels), not a CPU one
    with samebits.batch_invariant():
        w = torch.empty(10, 4, device="meta")
        torch.nn.init.normal_(w)
        assert torch.ops.prims.mul(w, 1.0).device.type == "meta"
        assert (w * 0.5 + 1).device.type == "meta"


_OFF = """
import torch, samebits
from samebits import _keyshim
with samebits.batch_invariant():
    y = torch.exp(torch.ones(4)) + torch.ones(4)
print(samebits.native_info()["mode_key"])
print(_keyshim.fast_calls())
"""


@pytest.mark.parametrize(
    ("env", "why"),
    [({"SAMEBITS_KEY_SHIM": "0"}, "SAMEBITS_KEY_SHIM=0"), ({"CXX": "/nonexistent/c++"}, "no C++")],
)
def test_without_the_library_the_python_kernels_run(env, why):
    run_env = {**os.environ, **env}  # the cache's C library; no C++ build is tried
    out = subprocess.run(
        [sys.executable, "-c", _OFF], capture_output=True, text=True, env=run_env, check=True
    )
    status, calls = out.stdout.strip().splitlines()[-2:]
    assert status.startswith("off (") and why in status and calls == "0"


_FALLTHROUGHS = """
import torch, samebits
from samebits import _mode
with samebits.batch_invariant():
    pass
plan = _mode._key_plan(_mode._cached_plan()[0])
falls = [q for q, kernel in plan if kernel is None]
where = set()
for q in falls:
    name, _, overload = q.partition(".")
    dump = torch._C._dispatch_dump(q if overload else name)
    line = next(ln for ln in dump.splitlines() if ln.startswith(_mode.KEY_NAME + ":"))
    assert "fallthrough" in line, line
    where.add("mode_key.cpp" if "mode_key.cpp" in line else "python")
print(len(falls), sorted(where))
"""


@pytest.mark.parametrize(
    ("env", "where"), [({}, "mode_key.cpp"), ({"SAMEBITS_KEY_SHIM": "0"}, "python")]
)
def test_every_fallthrough_is_registered_in_one_place(env, where):
    """The ops the policy lets through get a fallthrough on the mode key: from C++ in one
    call where the C++ kernels are on, through torch.library where they are off."""
    out = subprocess.run(
        [sys.executable, "-c", _FALLTHROUGHS],
        capture_output=True, text=True, env={**os.environ, **env}, check=True,
    )  # fmt: skip
    count, places = out.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(count) > 500 and places == f"['{where}']"
