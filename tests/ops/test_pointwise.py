"""The pointwise engine from the aten side: every op of ``samebits.ops.pointwise.ATEN``
against torch's float64 result (a tolerance: this compares a formula with its
reference), its forms (functional, in-place, out=) giving the same bits, each row alone
giving the bits it has in the batch, torch's type promotion and layouts, the refusals,
and samebits' normal and uniform samplers. The formulas' accuracy in ulp and their
bits on every kernel path are tests/native/test_pointwise_math.py's."""

import math

import pytest
import torch
import torch.nn.functional as F

import samebits
from samebits.errors import NotInvariantError, UnsupportedInputError
from samebits.ops import pointwise
from tests.conftest import same_bits

TOLS = {
    torch.float32: dict(rtol=1e-5, atol=1e-6),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1e-5),
    torch.float16: dict(rtol=2e-3, atol=1e-5),
}


def grid(dtype=torch.float32, lo=-6.0, hi=6.0, n=4001) -> torch.Tensor:
    return torch.linspace(lo, hi, n).to(dtype)


# name -> (call on tensors, input domain (lo, hi) or None for the default)
# each case takes x and a second operand y: x reversed along its last dim, so a row's
# operands come from that row alone
CASES = {
    "exp": (lambda x, y: torch.exp(x), (-80, 80)),
    "exp2": (lambda x, y: torch.exp2(x), (-120, 120)),
    "expm1": (lambda x, y: torch.expm1(x), (-20, 20)),
    "log": (lambda x, y: torch.log(x), (1e-3, 1e4)),
    "log2": (lambda x, y: torch.log2(x), (1e-3, 1e4)),
    "log10": (lambda x, y: torch.log10(x), (1e-3, 1e4)),
    "log1p": (lambda x, y: torch.log1p(x), (-0.99, 1e3)),
    "sin": (lambda x, y: torch.sin(x), (-100, 100)),
    "cos": (lambda x, y: torch.cos(x), (-100, 100)),
    "tan": (lambda x, y: torch.tan(x), (-1.5, 1.5)),
    "asin": (lambda x, y: torch.asin(x), (-1, 1)),
    "acos": (lambda x, y: torch.acos(x), (-1, 1)),
    "atan": (lambda x, y: torch.atan(x), (-50, 50)),
    "sinh": (lambda x, y: torch.sinh(x), (-80, 80)),
    "cosh": (lambda x, y: torch.cosh(x), (-80, 80)),
    "tanh": (lambda x, y: torch.tanh(x), None),
    "asinh": (lambda x, y: torch.asinh(x), (-1e3, 1e3)),
    "acosh": (lambda x, y: torch.acosh(x), (1, 1e3)),
    "atanh": (lambda x, y: torch.atanh(x), (-0.999, 0.999)),
    "erf": (lambda x, y: torch.erf(x), None),
    "erfc": (lambda x, y: torch.erfc(x), (-4, 9)),
    "erfinv": (lambda x, y: torch.erfinv(x), (-0.999, 0.999)),
    "lgamma": (lambda x, y: torch.lgamma(x), (0.01, 30)),
    "digamma": (lambda x, y: torch.digamma(x), (0.01, 30)),
    "sigmoid": (lambda x, y: torch.sigmoid(x), (-30, 30)),
    "logsigmoid": (lambda x, y: F.logsigmoid(x), (-30, 30)),
    "silu": (lambda x, y: F.silu(x), None),
    "gelu": (lambda x, y: F.gelu(x), None),
    "gelu_tanh": (lambda x, y: F.gelu(x, approximate="tanh"), None),
    "mish": (lambda x, y: F.mish(x), None),
    "softplus": (lambda x, y: F.softplus(x, 2.0, 15.0), None),
    "elu": (lambda x, y: F.elu(x, 0.7), None),
    "celu": (lambda x, y: F.celu(x, 1.3), None),
    "selu": (lambda x, y: F.selu(x), None),
    "hardswish": (lambda x, y: F.hardswish(x), None),
    "hardsigmoid": (lambda x, y: F.hardsigmoid(x), None),
    "softshrink": (lambda x, y: F.softshrink(x, 0.3), None),
    "rsqrt": (lambda x, y: torch.rsqrt(x), (1e-3, 1e3)),
    "sinc": (lambda x, y: torch.sinc(x), (-20, 20)),
    "logit": (lambda x, y: torch.logit(x, 1e-6), (0.001, 0.999)),
    "pow 2.5": (lambda x, y: torch.pow(x, 2.5), (0.01, 20)),
    "pow -1.5": (lambda x, y: x.pow(-1.5), (0.01, 20)),
    "pow tensor": (lambda x, y: torch.pow(x, y / 5), (0.01, 20)),
    "pow scalar base": (lambda x, y: torch.pow(2.0, x), (-30, 30)),
    "atan2": (lambda x, y: torch.atan2(x, y), None),
    "logaddexp": (lambda x, y: torch.logaddexp(x, y * 3), (-50, 50)),
    "logaddexp2": (lambda x, y: torch.logaddexp2(x, y * 3), (-50, 50)),
    "xlogy": (lambda x, y: torch.xlogy(x, x.abs() + 0.5), None),
    "hypot": (lambda x, y: torch.hypot(x, y), None),
    "add alpha": (lambda x, y: torch.add(x, y, alpha=0.3), None),
    "sub alpha": (lambda x, y: torch.sub(x, y, alpha=-1.5), None),
    "rsub alpha": (lambda x, y: torch.rsub(x, y, alpha=2.5), None),
    "addcmul": (lambda x, y: torch.addcmul(x, y, x * 0.5, value=0.3), None),
    "addcdiv": (lambda x, y: torch.addcdiv(x, y, x.abs() + 1, value=-1.5), None),
    "lerp scalar": (lambda x, y: torch.lerp(x, y, 0.3), None),
    "lerp tensor": (lambda x, y: torch.lerp(x, y, torch.sigmoid(x)), None),
}


def _domain(name, dtype):
    _, dom = CASES[name]
    return grid(dtype, *(dom or (-6.0, 6.0)))


def _tol(name, dtype):
    tol = dict(TOLS[dtype])
    if name == "pow tensor" and dtype != torch.float32:
        tol["rtol"] = 3e-2  # y / 5 is rounded to the dtype in the call, not in the reference
    if name in ("lgamma", "digamma", "sinc", "tan"):
        tol["atol"] = max(tol["atol"], 1e-5)  # near zeros and poles
    if name in ("xlogy", "atan2", "add alpha", "sub alpha", "rsub alpha", "addcmul", "lerp scalar",
                "lerp tensor", "addcdiv", "logaddexp", "logaddexp2", "softshrink", "hypot"):  # fmt: skip
        tol["atol"] = max(tol["atol"], 1e-5 if dtype == torch.float32 else 2e-2)  # cancellation
    return tol


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_torch_in_float64(name, dtype):
    f, _ = CASES[name]
    x = _domain(name, dtype)
    y = x.flip(-1)
    with samebits.batch_invariant():
        got = f(x, y)
    ref = f(x.double(), y.double()).to(dtype)
    torch.testing.assert_close(got, ref, equal_nan=True, **_tol(name, dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", sorted(CASES))
def test_rows_alone_have_the_batch_bits(name, dtype, threads):
    f, _ = CASES[name]
    x = _domain(name, dtype)[:3700].reshape(100, 37)  # 37: each row ends in a vector tail
    y = x.flip(-1)
    with samebits.batch_invariant():
        threads(2)
        full = f(x, y)
        threads(1)
        for i in (0, 1, 50, 99):
            assert same_bits(f(x[i : i + 1], y[i : i + 1]), full[i : i + 1]), i


def test_forms_give_one_result():
    x = grid()[:999].reshape(27, 37)
    with samebits.batch_invariant():
        for fn, inplace in [
            (lambda t: torch.exp(t), lambda t: t.exp_()),
            (lambda t: torch.pow(t.abs(), 2.5), lambda t: t.abs_().pow_(2.5)),
            (lambda t: torch.add(t, 0.7, alpha=0.3), lambda t: t.add_(0.7, alpha=0.3)),
            (lambda t: torch.erf(t), lambda t: t.erf_()),
            (lambda t: F.silu(t), lambda t: F.silu(t, inplace=True)),
        ]:
            ref = fn(x)
            y = x.clone()
            inplace(y)
            assert same_bits(y, ref)
        out = torch.empty(27, 37)
        torch.exp(x, out=out)
        assert same_bits(out, torch.exp(x))
        wrong = torch.empty(3)  # out= of another shape is resized, as torch does
        torch.log1p(x.abs(), out=wrong)
        assert same_bits(wrong, torch.log1p(x.abs()))


def test_type_promotion_follows_torch():
    i = torch.arange(6)
    with samebits.batch_invariant():
        assert torch.exp(i).dtype == torch.float32  # int -> the default float dtype
        assert torch.add(i, i, alpha=3).dtype == torch.int64  # integers stay exact, native
        assert torch.add(i, i, alpha=3).tolist() == [0, 4, 8, 12, 16, 20]
        b = torch.ones(4, dtype=torch.bfloat16)
        assert torch.pow(b, 2.5).dtype == torch.bfloat16
        assert torch.pow(b, torch.tensor(2.5)).dtype == torch.bfloat16  # a 0-dim operand
        assert torch.atan2(b, torch.ones(4)).dtype == torch.float32  # dims promote
        assert (b * 0.3).dtype == torch.bfloat16


def test_layouts_are_kept():
    x = torch.randn(2, 3, 5, 7).to(memory_format=torch.channels_last)
    with samebits.batch_invariant():
        y = F.gelu(x)
        z = torch.exp(x.transpose(1, 3))
    assert y.is_contiguous(memory_format=torch.channels_last)
    with samebits.batch_invariant():
        assert same_bits(y.contiguous(), F.gelu(x.contiguous()))
        assert same_bits(z.contiguous(), torch.exp(x.transpose(1, 3).contiguous()))


def test_float64_and_complex_are_refused():
    with samebits.batch_invariant():
        with pytest.raises(NotInvariantError, match="float64"):
            torch.exp(torch.ones(3, dtype=torch.float64))
        with pytest.raises(NotInvariantError, match="complex"):
            torch.ones(3, dtype=torch.complex64) * torch.ones(3, dtype=torch.complex64)
        assert torch.sqrt(torch.ones(3, dtype=torch.float64)).dtype == torch.float64  # one op


def test_bad_parameters_are_named():
    with samebits.batch_invariant():
        with pytest.raises(UnsupportedInputError, match="approximate='erf'"):
            torch.ops.aten.gelu(torch.ones(2), approximate="erf")
        with pytest.raises(UnsupportedInputError, match="celu: alpha must not be 0"):
            F.celu(torch.ones(2), 0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_normal_and_uniform_draws_follow_the_generator(dtype):
    def draw(seed):
        g = torch.Generator().manual_seed(seed)
        with samebits.batch_invariant():
            n = torch.randn(50000, generator=g).to(dtype)
            u = torch.empty(50000, dtype=dtype).uniform_(-2.0, 3.0, generator=g)
            k = torch.empty(7).normal_(10.0, 0.5, generator=g)
        return n, u, k

    n, u, k = draw(0)
    n2, u2, k2 = draw(0)
    assert same_bits(n, n2) and same_bits(u, u2) and same_bits(k, k2)
    assert not same_bits(n, draw(1)[0])
    assert abs(n.float().mean().item()) < 0.02 and abs(n.float().std().item() - 1) < 0.02
    assert u.min().item() >= -2.0 and u.max().item() <= 3.0
    assert abs(u.float().mean().item() - 0.5) < 0.05
    assert abs(k.mean().item() - 10.0) < 1.0


@pytest.mark.parametrize("shape", [(2, 3), (30, 40), (pointwise.DRAW_CHUNK // 100, 301)])
def test_normal_in_chunks_gives_the_draws_of_one_pass(shape):
    """normal_ (its second draws) and uniform_ on a contiguous tensor draw a chunk at a
    time: the
    values equal the one-pass sampler's (which a transposed tensor takes), draw for
    draw in the logical order, and the generator ends in the same state."""
    ga, gb = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    strided = torch.empty(shape[::-1]).t()
    assert not strided.is_contiguous()
    with samebits.batch_invariant():
        a = torch.empty(shape).normal_(0.5, 2.0, generator=ga)  # contiguous: chunked
        b = strided.normal_(0.5, 2.0, generator=gb)  # one pass
        a2 = torch.empty(shape).uniform_(-0.3, 0.7, generator=ga)
        b2 = torch.empty(shape[::-1]).t().uniform_(-0.3, 0.7, generator=gb)
    assert same_bits(a, b.contiguous()) and same_bits(a2, b2.contiguous())
    assert torch.equal(ga.get_state(), gb.get_state())


def test_activation_gradients_under_the_mode_match_torch():
    """The engine's backward ops (silu, gelu both forms, sigmoid, tanh, softplus, elu,
    hardswish, hardsigmoid, logsigmoid, mish, logit) against torch's, and the same
    bits for a row alone as in the batch."""
    acts = {
        "silu": F.silu, "gelu": F.gelu, "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
        "sigmoid": torch.sigmoid, "tanh": torch.tanh, "softplus": lambda t: F.softplus(t, 2.0, 5.0),
        "elu": lambda t: F.elu(t, 0.7), "selu": F.selu, "hardswish": F.hardswish,
        "hardsigmoid": F.hardsigmoid, "logsigmoid": F.logsigmoid, "mish": F.mish,
        "logit": lambda t: torch.logit(torch.sigmoid(t), 1e-6),
    }  # fmt: skip
    x = (torch.linspace(-7, 7, 37 * 12).reshape(12, 37)).requires_grad_()
    for name, f in acts.items():
        ref = torch.autograd.grad(f(x).sum(), x)[0]
        with samebits.batch_invariant():
            got = torch.autograd.grad(f(x).sum(), x)[0]
            row = torch.autograd.grad(f(x[5:6]).sum(), x)[0][5:6]
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5, msg=name)
        assert same_bits(row, got[5:6]), name
    assert math.isfinite(got.sum().item())


def test_logsigmoid_buffer_is_computed_only_where_a_backward_can_read_it():
    """log_sigmoid_forward's buffer feeds torch's own backward: empty where x does not
    require grad; where it does, a backward run after the mode exits (torch's kernel,
    reading the buffer) gives torch's gradient of the same forward."""
    x = torch.linspace(-6, 6, 101)
    with samebits.batch_invariant():
        out, buf = torch.ops.aten.log_sigmoid_forward(x)
    assert buf.numel() == 0
    torch.testing.assert_close(out, F.logsigmoid(x), rtol=1e-6, atol=0)  # torch's, outside
    xg = x.clone().requires_grad_()
    with samebits.batch_invariant():
        y = F.logsigmoid(xg)
        _, buf = torch.ops.aten.log_sigmoid_forward(xg.detach().requires_grad_())
    assert buf.shape == x.shape
    y.sum().backward()  # outside the mode: torch's backward reads the buffer
    torch.testing.assert_close(xg.grad, torch.sigmoid(-x), rtol=1e-6, atol=1e-7)
