import pytest
import torch
import torch.nn as nn

import samebits
from samebits.errors import NotInvariantError
from samebits.ops import channel_norms
from tests.conftest import TOL, same_bits


def rnd(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def make(name, dtype):
    torch.manual_seed(0)
    m = {
        "batch2d": lambda: nn.BatchNorm2d(6),
        "batch1d": lambda: nn.BatchNorm1d(6),
        "batch3d": lambda: nn.BatchNorm3d(6),
        "group": lambda: nn.GroupNorm(3, 6),
        "group_noaffine": lambda: nn.GroupNorm(2, 6, affine=False),
        "instance2d": lambda: nn.InstanceNorm2d(6, affine=True),
        "instance1d_stats": lambda: nn.InstanceNorm1d(6, track_running_stats=True),
    }[name]()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape))
        if getattr(m, "running_mean", None) is not None:
            m.running_mean.copy_(torch.randn(6))
            m.running_var.copy_(torch.rand(6) + 0.5)
    return m.eval().to(dtype)


SHAPES = {
    "batch2d": (6, 9, 7),
    "batch1d": (6, 13),
    "batch3d": (6, 3, 4, 5),
    "group": (6, 8, 9),
    "group_noaffine": (6, 11),
    "instance2d": (6, 7, 7),
    "instance1d_stats": (6, 10),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", sorted(SHAPES))
def test_channel_norm_matches_float64_reference(name, dtype):
    m = make(name, dtype)
    x = (rnd(4, *SHAPES[name], seed=1) * 2 + 0.5).to(dtype)
    with samebits.batch_invariant(), torch.no_grad():
        out = m(x)
    with torch.no_grad():
        ref = m.double()(x.double()).to(dtype)
    torch.testing.assert_close(out, ref, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", sorted(SHAPES))
def test_channel_norm_rows_invariant(name, dtype, threads):
    m = make(name, dtype)
    items = (rnd(9, *SHAPES[name], seed=2) * 2).to(dtype)
    with samebits.batch_invariant(), torch.no_grad():
        threads(1)
        alone = [m(items[i : i + 1]) for i in range(9)]
        for nthreads, bs in ((2, 9), (3, 4), (5, 2)):
            threads(nthreads)
            perm = torch.randperm(9, generator=torch.Generator().manual_seed(bs))[:bs]
            out = m(items[perm])
            for row, i in enumerate(perm.tolist()):
                assert same_bits(out[row : row + 1], alone[i]), (name, bs, nthreads)


def test_batch_norm_in_training_mode_with_a_batch_is_denied():
    m = nn.BatchNorm2d(3).train()
    with samebits.batch_invariant(), pytest.raises(NotInvariantError, match="model.eval"):
        m(rnd(2, 3, 4, 4))


def test_instance_norm_training_updates_running_stats_like_torch():
    a = nn.InstanceNorm1d(3, track_running_stats=True).train()
    b = nn.InstanceNorm1d(3, track_running_stats=True).train()
    x = rnd(4, 3, 12)
    with samebits.batch_invariant():
        out = a(x)
    ref = b(x)
    torch.testing.assert_close(out, ref, **TOL[torch.float32])
    torch.testing.assert_close(a.running_mean, b.running_mean, **TOL[torch.float32])
    torch.testing.assert_close(a.running_var, b.running_var, **TOL[torch.float32])


def test_group_norm_stats_match_native():
    x, w, b = rnd(3, 6, 5), rnd(6, seed=1), rnd(6, seed=2)
    ours = channel_norms.native_group_norm(x, w, b, 3, 6, 5, 2, 1e-5)
    ref = torch.native_group_norm(x, w, b, 3, 6, 5, 2, 1e-5)
    for a, r in zip(ours, ref, strict=True):
        assert a.shape == r.shape
        torch.testing.assert_close(a, r, **TOL[torch.float32])


def test_reference_helpers():
    x, w, b = rnd(2, 4, 3), rnd(4, seed=1), rnd(4, seed=2)
    m, v = rnd(4, seed=3), rnd(4, seed=4).abs() + 0.1
    torch.testing.assert_close(
        channel_norms._reference_batch_norm(x, w, b, m, v, 1e-5),
        torch.nn.functional.batch_norm(x, m, v, w, b, False, 0.0, 1e-5),
    )
    torch.testing.assert_close(
        channel_norms._reference_group_norm(x, 2, w, b, 1e-5),
        torch.nn.functional.group_norm(x, 2, w, b, 1e-5),
    )


def test_weight_norm_matches_torch_and_weights_are_thread_invariant(threads):
    conv = nn.utils.parametrizations.weight_norm(nn.Conv1d(4, 6, 5), dim=2)
    x = rnd(3, 4, 20)
    with samebits.batch_invariant(), torch.no_grad():
        threads(1)
        one = conv(x)
        threads(3)
        three = conv(x)
    with torch.no_grad():
        torch.testing.assert_close(one, conv(x), **TOL[torch.float32])
    assert same_bits(one, three)


def _torch_affine(x, scale, shift, dtype):
    """The definition sb_affine implements: a float32 multiply, a float32 add, one
    rounding to dtype (torch's IEEE elementwise ops), NaNs canonical (as every kernel
    output's: torch's vectorized conversion to bfloat16 writes 0xffff)."""
    from samebits.ops._common import narrow

    shape = (*(scale.shape if scale.dim() == 2 else (1, x.size(1))), *[1] * (x.dim() - 2))
    y = x.float() * scale.reshape(shape)
    y = y + shift.reshape(shape)
    return narrow(y, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "per_item", "strided"])
@pytest.mark.parametrize("shape", [(3, 5, 7, 6), (2, 45, 3, 5)], ids=str)
def test_native_affine_gives_the_bits_of_two_ieee_ops(layout, dtype, shape):
    """Batch and group norm's last step on every ISA path: special values included
    (inf, nan, denormals, values that round to bfloat16 infinity). Rows of 42 and 45
    (channels-last) elements run the 16-lane, 8-lane and scalar parts of a row."""
    from samebits import _native

    x = rnd(*shape, seed=1) * 4
    flat = x.view(-1)
    flat[:6] = torch.tensor([float("inf"), -float("inf"), float("nan"), 1e-40, -3e38, 3.4e38])
    x = x.to(dtype)
    per_item = layout == "per_item"
    scale = rnd(*(shape[:2] if per_item else shape[1:2]), seed=2) * 2
    shift = rnd(*scale.shape, seed=3)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    if layout == "strided":
        x = x[:, :, :, ::2]
    want = _torch_affine(x, scale, shift, dtype)
    for isa in _native.native_info()["available"]:
        with _native.use_isa(isa):
            got = channel_norms._affine(x, scale, shift, dtype)
        assert got.dtype == dtype and got.shape == x.shape
        assert same_bits(got.contiguous(), want.contiguous()), isa
        if layout == "channels_last":
            assert got.is_contiguous(memory_format=torch.channels_last)
