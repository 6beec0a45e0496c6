import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import samebits
from samebits import _native
from samebits.errors import UnsupportedInputError
from samebits.ops import conv
from tests.conftest import TOL, same_bits


def rnd(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


# name -> (item shape (C, *S), weight shape, kwargs for F.convNd)
CONFIGS = {
    "1d": ((6, 23), (8, 6, 5), dict(padding=2)),
    "1d_stride_group_dil": ((6, 31), (8, 3, 3), dict(stride=2, padding=1, dilation=2, groups=2)),
    "1d_nobias_k1": ((5, 9), (4, 5, 1), dict(bias=False)),
    "2d": ((3, 13, 11), (8, 3, 3, 3), dict(padding=1)),
    "2d_stride_asym": ((4, 16, 15), (6, 4, 3, 5), dict(stride=(2, 1), padding=(1, 2))),
    "2d_dilated": ((4, 12, 12), (5, 4, 3, 3), dict(dilation=2, padding=2)),
    "2d_grouped": ((8, 9, 10), (12, 2, 3, 3), dict(groups=4, padding=1)),
    "2d_depthwise": ((10, 12, 9), (10, 1, 7, 7), dict(groups=10, padding=3)),
    "2d_depthwise_mult": ((4, 11, 11), (8, 1, 3, 3), dict(groups=4, stride=2, padding=1)),
    # NCHW planes with rows over 14 positions: the per-plane kernel (wide rows)
    "2d_depthwise_planes": ((6, 9, 40), (6, 1, 5, 5), dict(groups=6, padding=2)),
    "2d_depthwise_planes_s2": ((5, 12, 37), (5, 1, 3, 3), dict(groups=5, stride=2, padding=1)),
    # a 1x1 depthwise kernel (MobileOne's scale branch) on planes wider than 14: the
    # per-plane kernel computed garbage there, so such kernels take the channels-last one
    "2d_depthwise_1x1_wide": ((16, 16, 20), (16, 1, 1, 1), dict(groups=16)),
    "2d_pointwise": ((16, 7, 6), (24, 16, 1, 1), dict()),
    "2d_pointwise_grouped": ((8, 7, 6), (12, 2, 1, 1), dict(groups=4)),
    "2d_pointwise_padded": ((6, 5, 4), (4, 6, 1, 1), dict(padding=1)),
    "3d_pointwise": ((6, 3, 4, 5), (5, 6, 1, 1, 1), dict()),
    "2d_pointwise_1x1_image": ((16, 1, 1), (8, 16, 1, 1), dict()),
    "2d_pointwise_odd_cin": ((7, 9, 8), (10, 7, 1, 1), dict()),
    "2d_pointwise_deep": ((300, 5, 7), (20, 300, 1, 1), dict()),  # K blocks of 256
    # float32 NCHW computed transposed (>= 128 positions and output channels), with
    # partial row and column panels
    "2d_pointwise_transposed": ((40, 12, 11), (130, 40, 1, 1), dict()),
    "2d_patchify": ((3, 16, 16), (12, 3, 4, 4), dict(stride=4)),
    "2d_rows": ((16, 12, 13), (12, 16, 3, 3), dict(padding=1)),  # read in place (OW >= 12)
    "2d_rows_dil_h_nobias": (
        (12, 13, 13),
        (8, 12, 3, 4),
        dict(padding=(2, 1), dilation=(2, 1), bias=False),
    ),
    "1d_rows_stride": ((32, 41), (16, 32, 3), dict(stride=2, padding=1)),
    # read in place with strides: output rows of 14 and 13 split the 6-row panels
    "2d_rows_stride2": ((16, 15, 27), (24, 16, 3, 3), dict(stride=2, padding=1)),
    "2d_pointwise_stride2_padded": ((16, 9, 25), (20, 16, 1, 1), dict(stride=2, padding=1)),
    # NCHW: every other position copied out, then a stride-1 1x1 convolution
    "2d_pointwise_stride2": ((16, 9, 25), (20, 16, 1, 1), dict(stride=2)),
    "1d_rows_k2s2": ((16, 30), (16, 16, 2), dict(stride=2)),
    "3d": ((3, 5, 6, 7), (4, 3, 3, 3, 3), dict(padding=1, stride=(1, 2, 1))),
    "3d_depthwise": ((4, 5, 5, 5), (4, 1, 3, 3, 3), dict(groups=4, padding=1)),
}
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def setup(name, dtype):
    item, wshape, kw = CONFIGS[name]
    kw = dict(kw)
    has_bias = kw.pop("bias", True)
    w = (rnd(*wshape, seed=1) * 0.3).to(dtype)
    b = rnd(wshape[0], seed=2).to(dtype) if has_bias else None
    fn = CONV[len(wshape) - 2]
    return item, (lambda x: fn(x, w, b, **kw)), w, b, kw


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_conv_matches_float64_reference(name, dtype):
    item, f, w, b, kw = setup(name, dtype)
    x = rnd(3, *item, seed=3).to(dtype)
    with samebits.batch_invariant():
        out = f(x)
    ref = conv._reference(x, w, b, **kw)
    assert out.dtype == dtype and out.shape == ref.shape
    torch.testing.assert_close(out, ref, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_conv_rows_invariant_to_batch_position_threads(name, dtype, threads):
    item, f, _, _, _ = setup(name, dtype)
    items = rnd(13, *item, seed=4).to(dtype)
    with samebits.batch_invariant():
        threads(1)
        alone = [f(items[i : i + 1]) for i in range(13)]
        for nthreads, bs in ((2, 5), (3, 13), (5, 2)):
            threads(nthreads)
            perm = torch.randperm(13, generator=torch.Generator().manual_seed(bs))[:bs]
            out = f(items[perm])
            assert _native.last_kernel_threads() == nthreads
            for row, i in enumerate(perm.tolist()):
                assert same_bits(out[row : row + 1], alone[i]), (name, bs, nthreads, row)


def test_native_conv2d_is_batch_variant_somewhere():
    """Why the kernel exists: native conv rows change with the batch for some shape."""
    w = rnd(64, 32, 3, 3, seed=1)
    x = rnd(9, 32, 14, 14, seed=2)
    full = F.conv2d(x, w, padding=1)
    assert any(
        not same_bits(F.conv2d(x[i : i + 1], w, padding=1), full[i : i + 1]) for i in range(9)
    )


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_padding_modes_and_same(mode):
    torch.manual_seed(0)
    m = nn.Conv2d(3, 4, 3, padding="same", padding_mode=mode)
    x = rnd(5, 3, 9, 8, seed=5)
    with samebits.batch_invariant(), torch.no_grad():
        full = m(x)
        alone = [m(x[i : i + 1]) for i in range(5)]
    for i in range(5):
        assert same_bits(full[i : i + 1], alone[i])
    with torch.no_grad():
        torch.testing.assert_close(full, m(x), **TOL[torch.float32])


@pytest.mark.parametrize(
    "kw",
    [
        dict(stride=2, padding=1, output_padding=1, groups=2),
        dict(),
        dict(stride=3, dilation=2, padding=2),
    ],
    ids=["s2_g2_op1", "plain", "s3_d2"],
)
def test_transposed_conv_matches_reference_and_is_invariant(kw, threads):
    w = rnd(6, 4, 3, 3, seed=1)
    g = kw.get("groups", 1)
    b = rnd(4 * g, seed=2)
    x = rnd(7, 6, 9, 8, seed=3)
    with samebits.batch_invariant():
        threads(3)
        full = F.conv_transpose2d(x, w, b, **kw)
        threads(1)
        alone = [F.conv_transpose2d(x[i : i + 1], w, b, **kw) for i in range(7)]
    ref = F.conv_transpose2d(x.double(), w.double(), b.double(), **kw).float()
    torch.testing.assert_close(full, ref, **TOL[torch.float32])
    assert all(same_bits(full[i : i + 1], alone[i]) for i in range(7))


def test_conv_transpose1d_unbatched():
    m = nn.ConvTranspose1d(4, 3, 4, stride=2)
    x = rnd(4, 10, seed=1)
    with samebits.batch_invariant(), torch.no_grad():
        out = m(x)
    with torch.no_grad():
        torch.testing.assert_close(out, m(x), **TOL[torch.float32])


def test_unbatched_conv_equals_batched_row():
    m = nn.Conv1d(3, 5, 3, padding=1)
    x = rnd(4, 3, 12, seed=1)
    with samebits.batch_invariant(), torch.no_grad():
        assert same_bits(m(x[2]), m(x)[2])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", sorted(n for n in CONFIGS if not n.startswith("1d")))
def test_channels_last_input_gives_the_same_bits(name, dtype):
    """NCHW and channels-last inputs take different copies and output layouts (NCHW
    written in place through the kernel's output map), never different bits."""
    item, f, _, _, _ = setup(name, dtype)
    x = rnd(3, *item, seed=2).to(dtype)
    fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
    with samebits.batch_invariant():
        a = f(x)
        b = f(x.to(memory_format=fmt))
    assert a.is_contiguous() and b.is_contiguous(memory_format=fmt)
    assert same_bits(a, b.contiguous())


def test_bad_groups_rejected():
    with pytest.raises(UnsupportedInputError, match="groups=2"):
        conv.convolution(rnd(1, 3, 5, 5), rnd(4, 2, 3, 3), None, [1], [0], [1], False, [0], 2)


def test_covered_ops_lists_convolution():
    assert samebits.covered_ops()["aten::convolution"] == "invariant kernel"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize(
    "layout", ["nchw", "channels_last", "sliced"], ids=["nchw", "channels_last", "sliced"]
)
def test_padded_channels_last_copy_moves_every_bit(dtype, layout, isa):
    """sb_pad_cl (the implicit convolution's input copy): every bit pattern, NaN payloads
    and signed zeros included, lands at its padded channels-last place; zeros elsewhere."""
    N, C, H, W, ph, pw = 2, 19, 7, 21, 2, 1
    g = torch.Generator().manual_seed(3)
    raw = torch.randint(-(2**15), 2**15, (N, C + 1, H, W + 3), generator=g, dtype=torch.int32)
    if dtype == torch.float32:
        x = (raw * 65599).view(torch.float32)  # arbitrary 32-bit patterns
    else:
        x = raw.to(torch.int16).view(torch.bfloat16)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    x = x[:, 1:, :, 2 : 2 + W] if layout == "sliced" else x[:, :C, :, :W]
    Hp, Wq = H + 2 * ph, W + 2 * pw + 3  # three extra columns on the right, as a wide row
    buf = torch.full((N * Hp * Wq * C + 5,), 7.0, dtype=dtype)
    conv._pad_cl(x, ph, pw, Hp, Wq, buf)
    want = torch.zeros(N, Hp, Wq, C, dtype=dtype)
    want[:, ph : ph + H, pw : pw + W] = x.permute(0, 2, 3, 1)
    assert same_bits(buf[: N * Hp * Wq * C].view(N, Hp, Wq, C), want)
    assert torch.equal(buf[N * Hp * Wq * C :], torch.full((5,), 7.0, dtype=dtype))  # no overrun


READ_IN_PLACE = ["1d_rows_stride", "1d_rows_k2s2", "2d_rows", "2d_rows_dil_h_nobias",
                 "2d_rows_stride2", "2d_pointwise_stride2_padded"]  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", READ_IN_PLACE)
def test_rows_read_in_place_give_the_bits_of_copied_rows(name, dtype, isa, monkeypatch):
    """_implicit_conv (im2col rows read from the padded input, in groups of one output
    row) and the im2col copy are two ways of reading the same rows: the same bits."""
    item, f, _, _, _ = setup(name, dtype)
    x = rnd(3, *item, seed=6).to(dtype)
    used = []
    real = conv._implicit_conv
    monkeypatch.setattr(conv, "_implicit_conv", lambda *a: used.append(1) or real(*a))
    with samebits.batch_invariant():
        in_place = f(x)
        assert used, name  # the configuration does take that path
        monkeypatch.setattr(conv, "_implicit_apply", lambda *a: False)
        copied = f(x)
    assert len(used) == 1 and same_bits(in_place, copied)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize(
    "name", ["2d_depthwise", "2d_depthwise_planes", "2d_depthwise_planes_s2", "3d_depthwise"]
)
def test_depthwise_planes_give_the_bits_of_channels_last(name, dtype, isa, monkeypatch):
    """An NCHW depthwise convolution runs per plane or through the channels-last kernel
    by its row length: the same TAP order either way, so the same bits."""
    item, f, _, _, _ = setup(name, dtype)
    x = rnd(3, *item, seed=7).to(dtype)
    with samebits.batch_invariant():
        monkeypatch.setattr(conv, "_small_planes", lambda *a: False)
        planes = f(x)
        monkeypatch.setattr(conv, "_small_planes", lambda *a: True)
        channels_last = f(x)
    assert planes.is_contiguous() and channels_last.is_contiguous()
    assert same_bits(planes, channels_last)
