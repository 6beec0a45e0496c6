"""mse / huber / smooth_l1 / binary_cross_entropy (with logits) / soft_margin losses:
against float64 for every reduction, gradients too; an element's term has the same
bits alone and in a batch; a batch's sum is the SUM order over its elements, so masked
(exactly zero) elements anywhere change no bit."""

import pytest
import torch
import torch.nn.functional as F

import samebits
from samebits.ops import pointwise_losses
from samebits.ops.reductions import _sum_f64
from tests.conftest import TOL, same_bits


def data(n=6, m=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, m, generator=g) * 2, torch.randn(n, m, generator=g)
    p = torch.rand(n, m, generator=g) * 0.98 + 0.01
    t = (torch.rand(n, m, generator=g) > 0.5).float()
    w, pw = torch.rand(n, m, generator=g), torch.rand(m, generator=g) + 0.5
    return dict(x=x, y=y, p=p, t=t, w=w, pw=pw, s=torch.sign(y))


# name -> (operands of the dict above, keyword arguments taken from it or constants)
CASES = {
    "mse_loss": (("x", "y"), {}),
    "huber_loss": (("x", "y"), dict(delta=0.7)),
    "smooth_l1_loss": (("x", "y"), dict(beta=0.6)),
    "binary_cross_entropy": (("p", "t"), dict(weight="w")),
    "binary_cross_entropy_with_logits": (("x", "t"), dict(weight="w", pos_weight="pw")),
    "soft_margin_loss": (("x", "s"), {}),
}


def call(name, d, dtype, reduction, rows=slice(None)):
    ops, kw = CASES[name]
    args = [d[o][rows].to(dtype) for o in ops]
    kwargs = {k: (d[v] if v == "pw" else d[v][rows]).to(dtype) if isinstance(v, str) else v
              for k, v in kw.items()}  # fmt: skip
    return args, kwargs, getattr(F, name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_float64_with_gradients(name, dtype):
    d = data()
    for reduction in ("none", "mean", "sum"):
        args, kwargs, fn = call(name, d, dtype, reduction)
        first = args[0].clone().requires_grad_()
        with samebits.batch_invariant():
            got = fn(first, *args[1:], reduction=reduction, **kwargs)
            got.sum().backward()
        ref = pointwise_losses._reference(name, *args, reduction=reduction, **kwargs)
        torch.testing.assert_close(got, ref, **TOL[dtype])
        up = args[0].double().requires_grad_()
        dk = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        fn(up, *[a.double() for a in args[1:]], reduction=reduction, **dk).sum().backward()
        tol = TOL[dtype] if dtype == torch.float32 else dict(rtol=3e-2, atol=3e-2)
        torch.testing.assert_close(first.grad, up.grad.to(dtype), **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", sorted(CASES))
def test_rows_alone_and_the_sum_is_the_sum_order_of_the_terms(name, dtype, isa, threads):
    d = data(seed=1)
    with samebits.batch_invariant():
        threads(1)
        args, kw, fn = call(name, d, dtype, "none")
        full = fn(*args, reduction="none", **kw)
        total = fn(*args, reduction="sum", **kw)
        for t in (2, 3):
            threads(t)
            for r in (0, 3, 5):
                a, k, _ = call(name, d, dtype, "none", slice(r, r + 1))
                assert same_bits(fn(*a, reduction="none", **k), full[r : r + 1]), (r, t)
    if dtype == torch.float32:  # the sum is the SUM order over the elements' terms
        assert same_bits(total, _sum_f64(full.reshape(-1), [0]).float())
