"""No silent variance in pointwise ops: every unary pointwise aten op in torch's registry
(tag ``pointwise``, one required tensor argument) either raises NotInvariantError under
the mode or gives each row the same bits alone as inside a larger batch.

torch's CPU kernels usually compute an element the same way in the vector body and the
scalar tail, but not always (elu, softplus, mish, ...: an element's bits then depend
on where it falls in the buffer, that is, on the batch). The mode denies those
(samebits/_mode.py, _VARYING_POINTWISE); this sweep finds any that it misses.
"""

import warnings

import pytest
import torch

import samebits

BITS = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}


def pointwise_ops(n_tensors: int) -> list[str]:
    """Pointwise aten overloads whose required arguments are ``n_tensors`` tensors."""
    names = []
    for name in dir(torch.ops.aten):
        packet = getattr(torch.ops.aten, name)
        if name.endswith("_") or not hasattr(packet, "overloads"):
            continue
        for ov in packet.overloads():
            op = getattr(packet, ov)
            if torch.Tag.pointwise not in op.tags or len(op._schema.returns) != 1:
                continue
            required = [
                a for a in op._schema.arguments if not a.kwarg_only and not a.has_default_value()
            ]
            if [str(a.type) for a in required] == ["Tensor"] * n_tensors:
                names.append(f"{name}.{ov}")
    return sorted(names)


OPS = pointwise_ops(1)
BINARY = pointwise_ops(2)


def aten(name: str):
    base, ov = name.split(".")
    return getattr(getattr(torch.ops.aten, base), ov)


def test_the_sweep_sees_the_known_cases():
    assert len(OPS) > 50 and len(BINARY) > 50
    assert {"elu.default", "softplus.default", "mish.default", "exp.default"} <= set(OPS)
    assert {"pow.Tensor_Tensor", "atan2.default", "add.Tensor"} <= set(BINARY)


def rows(op, *xs: torch.Tensor) -> list[tuple[int, int]]:
    """(start, length) slices whose bits differ from the same rows of the full batch."""
    full = op(*xs)
    if full.dtype not in BITS:
        return []
    bits = BITS[full.dtype]
    differ = []
    for i in range(xs[0].size(0)):
        for n in (1, 2, 3):
            if i + n <= xs[0].size(0):
                part = op(*(x[i : i + n] for x in xs))
                if not torch.equal(part.view(bits), full[i : i + n].view(bits)):
                    differ.append((i, n))
    return differ


def silent_ops(names: list[str], inputs: list[tuple[torch.Tensor, ...]]) -> list:
    silent = []
    for name in names:
        op = aten(name)
        for xs in inputs:
            try:
                with samebits.batch_invariant(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    differ = rows(op, *xs)
            except samebits.NotInvariantError:
                break  # denied, loudly
            except (RuntimeError, TypeError, NotImplementedError, ValueError):
                break  # the op does not take these inputs
            if differ:
                silent.append((name, differ[:3]))
                break
    return silent


@pytest.mark.parametrize("dtype", list(BITS), ids=str)
def test_no_unary_pointwise_op_varies_silently(dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 37, generator=g) * 3  # 37: every row has a scalar tail
    inputs = [(x.to(dtype),), ((x.abs() + 0.1).to(dtype),)]
    silent = silent_ops(OPS, inputs)
    assert not silent, f"pointwise ops that vary with the batch under the mode: {silent}"


@pytest.mark.parametrize("dtype", list(BITS), ids=str)
def test_no_binary_pointwise_op_varies_silently(dtype):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(7, 37, generator=g) * 3, torch.randn(7, 37, generator=g) * 2
    inputs = [
        (x.to(dtype), y.to(dtype)),
        ((x.abs() + 0.1).to(dtype), (y.abs() + 0.1).to(dtype)),
    ]
    silent = silent_ops(BINARY, inputs)
    assert not silent, f"pointwise ops that vary with the batch under the mode: {silent}"


@pytest.mark.parametrize("exponent", [2, 3, 0.5, -1, -0.5, 1.7, -2, 2.5])
@pytest.mark.parametrize("dtype", list(BITS), ids=str)
def test_pow_by_a_scalar_runs_only_where_it_is_invariant(dtype, exponent):
    x = torch.rand(7, 37, generator=torch.Generator().manual_seed(2)).to(dtype) + 0.1
    op = lambda t: torch.pow(t, exponent)  # noqa: E731
    try:
        with samebits.batch_invariant():
            differ = rows(op, x)
    except samebits.NotInvariantError:
        assert exponent not in (2, 3, 0.5, -1)  # the plain exponents always run
        return
    assert not differ, (exponent, differ)
