import pytest
import torch

import samebits
from samebits.errors import UnsupportedInputError
from samebits.ops import elementwise
from tests.conftest import TOL, same_bits

OPS = {
    "gelu": elementwise.gelu,
    "gelu_tanh": lambda x: elementwise.gelu(x, approximate="tanh"),
    "silu": elementwise.silu,
    "sigmoid": elementwise.sigmoid,
    "rsqrt": elementwise.rsqrt,
    "exp": elementwise.exp,
    "tanh": elementwise.tanh,
    "expm1": lambda x: elementwise._f32(x.float(), elementwise.EXPM1).to(x.dtype),
    "log1p": lambda x: elementwise._f32(x.float(), elementwise.LOG1P).to(x.dtype),
    "elu": lambda x: elementwise.elu(x, 0.7),
    "celu": lambda x: elementwise.celu(x, 1.3),
    "selu": elementwise.selu,
    "softplus": lambda x: elementwise.softplus(x, 2.0, 15.0),
    "mish": elementwise.mish,
    "softshrink": lambda x: elementwise.softshrink(x, 0.3),
    "sinh": elementwise.sinh,
    "cosh": elementwise.cosh,
    "atanh": elementwise.atanh,
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("name", sorted(OPS))
def test_matches_reference(name, dtype):
    x = torch.linspace(-12, 12, 5001).to(dtype)
    if name == "rsqrt":
        x = x.abs() + 1e-3
    if name == "exp":
        x = x * 7
    if name in ("sinh", "cosh"):  # past 88.7, where exp overflows but they do not
        x = x * 7.5
    if name == "atanh":
        x = x / 12.5
    if name == "log1p":  # (-1, 1e6]: near -1, near 0, and far
        x = torch.cat([x.float().exp() * 0.08 - 0.99, x.float() * 1e-4, x.float().abs() ** 5])
        x = x.to(dtype)
    ref = elementwise._REFERENCES[name](x)
    tol = dict(TOL[dtype])
    if dtype == torch.float32:
        tol = dict(rtol=2e-6, atol=1e-6)  # a few ulp; atol for cancellation near 0 (as in torch)
    torch.testing.assert_close(OPS[name](x), ref, **tol)


def test_special_values():
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-30, 100.0, -100.0])
    x = torch.cat([x, torch.tensor([-1.0, -2.0, 3e38, -0.999999, 1e-7, -1e-7])])
    for name, f in OPS.items():
        torch.testing.assert_close(
            f(x), elementwise._REFERENCES[name](x), equal_nan=True, rtol=2e-6, atol=1e-30
        )


@pytest.mark.parametrize("name", sorted(OPS))
def test_bits_do_not_depend_on_position(name):
    x = torch.randn(1000, generator=torch.Generator().manual_seed(0)) * 4
    if name == "rsqrt":
        x = x.abs()
    full = OPS[name](x)
    for i in range(0, 1000, 37):
        assert same_bits(OPS[name](x[i : i + 1])[0], full[i])


@pytest.mark.parametrize("code", range(10), ids=lambda c: f"op{c}")
def test_vector_kernel_equals_the_scalar_sequence(code):
    """The AVX2 intrinsics and the scalar C functions are the same operations: equal bits
    on normal, huge, tiny, subnormal, signed-zero, infinite and NaN inputs."""
    from samebits import _native

    g = torch.Generator().manual_seed(1)
    special = [0.0, -0.0, float("inf"), -float("inf"), float("nan"), -float("nan"), 1e-40, -1e-40]
    special += [88.7, 88.8, 88.73, -104.0, -103.97, 9.1, 10.0, 0.3, -0.3, 3e38, -3e38]
    special += [-1.0, -0.99999994, -1.5, 1.0, 2.0, 0.41421357, -0.29289323]
    x = torch.cat([torch.randn(20000, generator=g) * s for s in (0.1, 1, 3, 10, 100)])
    x = torch.cat([x, torch.tensor(special)])
    x = torch.cat([x, x.view(torch.int32).add(1).view(torch.float32)[:1003]])  # odd length
    vec, ref = torch.empty_like(x), torch.empty_like(x)
    _native.lib().sb_unary(x.data_ptr(), vec.data_ptr(), x.numel(), code, _native.F32, 2)
    _native.lib().sb_unary_scalar(x.data_ptr(), ref.data_ptr(), x.numel(), code)
    assert vec.numpy().tobytes() == ref.numpy().tobytes()


def test_gelu_approximate_checked():
    with pytest.raises(UnsupportedInputError, match="approximate='erf'"):
        elementwise.gelu(torch.ones(2), approximate="erf")


NATIVE_SAFE = {
    "exp": torch.exp,
    "tanh": torch.tanh,
    "erf": torch.erf,
    "sin": torch.sin,
    "cos": torch.cos,
    "log": lambda x: torch.log(x.abs() + 0.1),
    "relu": torch.relu,
    "pow2": lambda x: x.pow(2),
    "sqrt": lambda x: x.abs().sqrt(),
    "div": lambda x: x / 3.0,
}


@pytest.mark.parametrize("name", sorted(NATIVE_SAFE))
def test_ops_left_native_are_position_independent_on_this_build(name):
    """Canary for the elementwise ops the mode leaves to torch (used by HF models):
    their scalar tail and vector body agree here. If a torch upgrade breaks this,
    the op must move into samebits.ops.elementwise."""
    f = NATIVE_SAFE[name]
    inv = 1.0 / (10000 ** (torch.arange(0, 64, 2).float() / 64))
    x = torch.cat(
        [
            torch.randn(3000, generator=torch.Generator().manual_seed(1)) * 5,
            (torch.arange(0, 200).float()[:, None] * inv).flatten(),
        ]
    )
    full = f(x)
    one = torch.stack([f(x[i : i + 1])[0] for i in range(0, x.numel(), 7)])
    assert same_bits(one, full[::7])
    with samebits.batch_invariant():
        assert same_bits(f(x), full)


ACTIVATIONS = {
    "elu": (lambda x, **k: torch.nn.functional.elu(x, 0.7, **k), lambda x: elementwise.elu(x, 0.7)),
    "celu": (lambda x, **k: torch.nn.functional.celu(x, 1.3, **k), lambda x: elementwise.celu(x, 1.3)),
    "selu": (torch.nn.functional.selu, elementwise.selu),
    "mish": (torch.nn.functional.mish, elementwise.mish),
    "softplus": (lambda x, **k: torch.nn.functional.softplus(x, 2.0, 15.0),
                 lambda x: elementwise.softplus(x, 2.0, 15.0)),
    "softshrink": (lambda x, **k: torch.nn.functional.softshrink(x, 0.3),
                   lambda x: elementwise.softshrink(x, 0.3)),
    "sinh": (lambda x, **k: torch.sinh(x), elementwise.sinh),
    "cosh": (lambda x, **k: torch.cosh(x), elementwise.cosh),
    "atanh": (lambda x, **k: torch.atanh(x / 7), lambda x: elementwise.atanh(x / 7)),
}  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_run_under_the_mode_invariant_to_batch(name, dtype):
    """Torch's kernels for these vary with an element's position; under the mode they
    run samebits' formulas (functional and in-place forms): the same bits for a row
    alone as in the batch."""
    f, ours = ACTIVATIONS[name]
    x = (torch.randn(37, 53, generator=torch.Generator().manual_seed(3)) * 6).to(dtype)
    with samebits.batch_invariant():
        full = f(x)
        assert same_bits(full, ours(x))
        for i in (0, 17, 36):
            assert same_bits(f(x[i : i + 1]), full[i : i + 1])
        if name in ("elu", "celu", "selu"):
            y = x.clone()
            f(y, inplace=True)
            assert same_bits(y, full)


@pytest.mark.parametrize("code", range(10), ids=lambda c: f"op{c}")
def test_bfloat16_table_holds_the_float32_results_rounded(code, isa):
    """A large bfloat16 tensor is looked up in a 65536-entry table (unary.c); every
    entry must be the float32 kernel's result rounded to bfloat16."""
    every = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(torch.bfloat16)
    looked_up = elementwise._run(every, code)  # 65536 elements: the table
    computed = elementwise._run(every.float(), code).to(torch.bfloat16)
    nan = computed.isnan()
    assert torch.equal(looked_up.isnan(), nan)
    assert torch.equal(looked_up[~nan].view(torch.int16), computed[~nan].view(torch.int16))
    # a short tensor after the table exists: the same entries
    assert torch.equal(
        elementwise._run(every[:100], code).view(torch.int16), looked_up[:100].view(torch.int16)
    )
