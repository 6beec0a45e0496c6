"""Multi-input kernels refuse mixed dtypes by name; under the mode, the ops torch
differentiates by decomposition (linear, rms_norm, sdpa) give the forward bits of
the mode without gradients and the gradients of the reference math."""

import threading

import pytest
import torch
import torch.nn.functional as F

import samebits
from samebits._mode import installed
from samebits.errors import UnsupportedInputError


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "call",
    [
        lambda: F.scaled_dot_product_attention(
            rand(1, 2, 4, 8), rand(1, 2, 4, 8).bfloat16(), rand(1, 2, 4, 8).bfloat16()
        ),
        lambda: F.linear(rand(3, 8), rand(5, 8).bfloat16()),
        lambda: F.linear(rand(3, 8), rand(5, 8), rand(5).bfloat16()),
        lambda: torch.mm(rand(3, 8).bfloat16(), rand(8, 5)),
        lambda: torch.bmm(rand(2, 3, 8), rand(2, 8, 5).half()),
    ],
    ids=["sdpa", "linear-weight", "linear-bias", "mm", "bmm"],
)
def test_mixed_dtypes_are_refused_by_name(call):
    with samebits.batch_invariant(), pytest.raises(UnsupportedInputError) as e:
        call()
    assert "differ in dtype" in str(e.value) and "torch." in str(e.value)


CASES = {
    "linear": (lambda x, w, b: F.linear(x, w, b), [(6, 16), (12, 16), (12,)]),
    "rms_norm": (lambda x, w: F.rms_norm(x, (16,), w, 1e-6), [(6, 16), (16,)]),
    "sdpa": (
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        [(2, 2, 5, 8), (2, 2, 5, 8), (2, 2, 5, 8)],
    ),
    "sdpa-mask": (
        lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m),
        [(1, 2, 4, 8), (1, 2, 6, 8), (1, 2, 6, 8), (1, 1, 4, 6)],
    ),
    # differentiated through torch's own decomposition (no reference in ops/_autograd.py)
    "matmul": (lambda a, b: torch.matmul(a, b), [(3, 5, 16), (16, 7)]),
    "einsum": (lambda a, b: torch.einsum("bik,bjk->bij", a, b), [(2, 5, 16), (2, 4, 16)]),
    "lstm": (
        lambda x, w_ih, w_hh, b: torch.lstm(
            x,
            (x.new_zeros(1, 2, 4), x.new_zeros(1, 2, 4)),
            (w_ih, w_hh, b, b),
            True,
            1,
            0.0,
            False,
            False,
            True,
        )[0],
        [(2, 5, 8), (16, 8), (16, 4), (16,)],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_under_the_mode(name):
    f, shapes = CASES[name]
    inputs = [rand(*s, seed=i) for i, s in enumerate(shapes)]
    with samebits.batch_invariant(), torch.no_grad():
        plain = f(*inputs)
    native_in = [t.clone().requires_grad_() for t in inputs]
    native_out = f(*native_in)
    native_grads = torch.autograd.grad(native_out.square().sum(), native_in)
    ours_in = [t.clone().requires_grad_() for t in inputs]
    with samebits.batch_invariant():
        out = f(*ours_in)
        grads = torch.autograd.grad(out.square().sum(), ours_in)
    assert torch.equal(out.detach(), plain)  # gradients leave the forward bits alone
    for g, ref in zip(grads, native_grads, strict=True):
        torch.testing.assert_close(g, ref, rtol=1e-4, atol=1e-5)


def test_other_threads_keep_torchs_gradients_while_the_mode_is_installed():
    x, w = rand(4, 8).requires_grad_(), rand(3, 8, seed=1)
    ref = torch.autograd.grad(F.linear(x, w).sum(), x)[0]
    got, entered, done = [], threading.Event(), threading.Event()

    def hold():
        with samebits.batch_invariant():
            entered.set()
            done.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    try:
        entered.wait(30)
        assert installed()  # this thread is outside the mode, with samebits' kernels in torch
        got.append(torch.autograd.grad(F.linear(x, w).sum(), x)[0])
    finally:
        done.set()
        t.join()
    assert torch.equal(got[0], ref)
