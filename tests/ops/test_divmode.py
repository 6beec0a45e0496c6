"""div with rounding_mode (trunc, floor) and floor_divide: torch's float64 quotient
rounded, every functional / in-place / out= form, and an element's bits independent
of its place in the row (torch's bfloat16 tail differs from its body), the threads and
the kernel path."""

import pytest
import torch

import samebits
from samebits.ops import divmode
from tests.conftest import same_bits

DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def operands(dtype, n=1031, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = ((torch.rand(n, generator=g) - 0.5) * 200).to(dtype)
    b = ((torch.rand(n, generator=g) - 0.5) * 7).to(dtype)
    b[::13], a[::17] = 0, -0.0  # x / 0, 0 / 0, signed zeros
    return a, b


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", ["trunc", "floor"])
def test_matches_float64_in_every_form(dtype, mode):
    a, b = operands(dtype)
    with samebits.batch_invariant():
        got = torch.div(a, b, rounding_mode=mode)
        out = torch.empty_like(a)
        torch.div(a, b, rounding_mode=mode, out=out)
        inplace = a.clone().div_(b, rounding_mode=mode)
        scalar = torch.div(a, 3.7, rounding_mode=mode)
        floor = torch.floor_divide(a, b) if mode == "floor" else got
        ints = torch.div(torch.arange(-5, 5), 3, rounding_mode=mode)
    assert same_bits(out, got) and same_bits(inplace, got) and same_bits(floor, got)
    assert same_bits(got, divmode._reference(a, b, mode))
    assert same_bits(scalar, divmode._reference(a, 3.7, mode))
    assert torch.equal(ints, torch.div(torch.arange(-5, 5), 3, rounding_mode=mode))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", ["trunc", "floor"])
def test_an_element_has_the_same_bits_anywhere(dtype, mode, isa, threads):
    a, b = operands(dtype, seed=1)
    with samebits.batch_invariant():
        threads(1)
        alone = torch.stack(
            [torch.div(a[i : i + 1], b[i : i + 1], rounding_mode=mode)[0] for i in range(64)]
        )
        for t in (2, 3):
            threads(t)
            for shift in (0, 5, 17):
                full = torch.div(a[shift:], b[shift:], rounding_mode=mode)
                assert same_bits(full[: 64 - shift], alone[shift:]), (shift, t)
