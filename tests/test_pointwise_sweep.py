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


def unary_pointwise_ops() -> list[str]:
    names = []
    for name in dir(torch.ops.aten):
        packet = getattr(torch.ops.aten, name)
        if name.endswith("_") or not hasattr(packet, "overloads"):
            continue
        if "default" not in packet.overloads():
            continue
        op = packet.default
        if torch.Tag.pointwise not in op.tags or len(op._schema.returns) != 1:
            continue
        required = [
            a for a in op._schema.arguments if not a.kwarg_only and not a.has_default_value()
        ]
        if len(required) == 1 and str(required[0].type) == "Tensor":
            names.append(name)
    return sorted(names)


OPS = unary_pointwise_ops()


def test_the_sweep_sees_the_known_cases():
    assert len(OPS) > 50
    assert {"elu", "softplus", "mish", "exp", "sqrt"} <= set(OPS)


def rows(x: torch.Tensor, op) -> list[tuple[int, int]]:
    """(start, length) slices whose bits differ from the same rows of the full batch."""
    full = op(x)
    differ = []
    for i in range(x.size(0)):
        for n in (1, 2, 3):
            if i + n <= x.size(0):
                part = op(x[i : i + n])
                if not torch.equal(part.view(BITS[x.dtype]), full[i : i + n].view(BITS[x.dtype])):
                    differ.append((i, n))
    return differ


@pytest.mark.parametrize("dtype", list(BITS), ids=str)
def test_no_unary_pointwise_op_varies_silently(dtype):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 37, generator=g) * 3  # 37: every row has a scalar tail
    inputs = [x.to(dtype), (x.abs() + 0.1).to(dtype)]
    silent = []
    for name in OPS:
        op = getattr(torch.ops.aten, name).default
        for inp in inputs:
            try:
                with samebits.batch_invariant(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    differ = rows(inp, op)
            except samebits.NotInvariantError:
                break  # denied, loudly
            except (RuntimeError, TypeError, NotImplementedError, ValueError):
                break  # the op does not take this dtype / input
            if differ:
                silent.append((name, differ[:3]))
                break
    assert not silent, f"pointwise ops that vary with the batch under the mode: {silent}"
