"""Quantized inference under the mode: dynamic per-tensor quantization takes its scale
from the whole batch (a row's result depends on the others), so the mode refuses it and
names the cure; per-row dynamic int8 (torchao's int8 dynamic-activation, int8-weight
layout: a scale per token from its own absolute maximum, an exact int8 x int8 -> int32
product, a float rescale) is made of ops that are exact or one rounding each, and runs
invariantly."""

import pytest
import torch
import torch.nn as nn

import samebits
from samebits.errors import NotInvariantError
from tests.conftest import same_bits


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 16)).eval()


def test_dynamic_per_tensor_quantization_is_refused_with_the_cure():
    q = torch.ao.quantization.quantize_dynamic(mlp(), {nn.Linear}, dtype=torch.qint8)
    x = torch.randn(5, 32)
    q(x)  # outside the mode it runs as before
    with samebits.batch_invariant():
        with pytest.raises(NotInvariantError, match=r"quantized::linear_dynamic.*per row"):
            q(x)


def test_quantize_per_tensor_dynamic_is_refused():
    x = torch.randn(4, 8)
    with samebits.batch_invariant():
        with pytest.raises(NotInvariantError, match="quantize_per_tensor_dynamic"):
            torch.quantize_per_tensor_dynamic(x, torch.quint8, False)


class PerRowInt8Linear(nn.Module):
    """torchao's int8 dynamic activation + int8 weight layout, in aten ops: weight
    quantized per output channel once; activation per token at run time."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        w = linear.weight.detach()
        self.w_scale = w.abs().amax(-1).clamp(min=1e-12) / 127  # (N,)
        self.w_q = torch.round(w / self.w_scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.bias = linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead, k = x.shape[:-1], x.size(-1)
        x2 = x.reshape(-1, k)  # (M, K)
        s = x2.abs().amax(-1, keepdim=True).clamp(min=1e-12) / 127  # (M, 1): the row's own
        xq = torch.round(x2 / s).clamp(-127, 127).to(torch.int8)
        acc = torch._int_mm(xq, self.w_q.t().contiguous())  # (M, N) int32, exact
        out = acc.float() * (s * self.w_scale) + self.bias
        return out.view(*lead, -1)


@pytest.mark.parametrize("batch", [2, 9, 17])
def test_per_row_int8_dynamic_linear_is_invariant(batch, threads):
    m = mlp()
    m[0], m[2] = PerRowInt8Linear(m[0]), PerRowInt8Linear(m[2])
    g = torch.Generator().manual_seed(3)
    x = torch.randn(batch, 32, generator=g) * 3
    with samebits.batch_invariant():
        threads(1)
        alone = [m(x[i : i + 1]) for i in range(batch)]
        for t in (1, 2):
            threads(t)
            full = m(x)
            assert all(same_bits(full[i : i + 1], alone[i]) for i in range(batch))
    ref = mlp()(x)
    torch.testing.assert_close(full, ref, rtol=0.05, atol=0.05)  # int8 is close, not equal
