"""Invariant convolutions: conv1d/2d/3d, strided, padded, dilated, grouped, depthwise,
and transposed, through ``aten::convolution``.

Every shape is handled as 3-D (conv1d and conv2d get unit leading spatial dims) and
channels-last. Reduction order, for output (n, co, position):

* **GEMM path** (every convolution with more than one input channel per group):
  im2col rows of K = taps x (Cin / groups) in (kd, kh, kw, cin) order, multiplied by
  the weight reshaped the same way, in the GEMM's **DOT** order (float32) or **PAIR**
  order (bfloat16) over K (see samebits/ops/matmul.py). How the rows are read never
  changes that order: copied out by chunks of rows (chunks and threads split rows
  only, never K); read in place from the padded input, one run of kw x cin per kernel
  row (groups == 1, conv1d or conv2d without width dilation: _implicit_conv); or, for a
  1x1 convolution of an NCHW input, the input itself, read channel by channel or, with
  the product transposed, as the GEMM's K-major B (_pointwise_t).
* **TAP path** (one input channel per group: depthwise): acc = +0, one fused
  multiply-add per tap in (kd, kh, kw) order, then + bias (samebits/_native/conv.c).

Zero padding enters as exact zeros at fixed taps. Which path runs, and so each
order, depends only on the convolution's parameters, never on the batch size,
the item's position, the spatial tile or the thread count. Accumulation is float32;
bfloat16 is read exactly and rounded once; float16 is widened to float32.
Transposed convolutions become direct ones: the input dilated by the stride
(zeros inserted), padded by dilation * (k - 1) - padding, and the kernel flipped.
A channels-last input gets a channels-last output, as in torch. The GEMM path
writes its results straight into the output's layout (NCHW or channels-last)
through the kernel's output map, and a 1x1 stride-1 float32 convolution of an NCHW
input reads it in place: layouts decide copies, never an order.
Padding modes other than zeros (reflect, replicate, circular) reach this op already
padded by ``F.pad``, a gather.
"""

from __future__ import annotations

import ctypes
import math
import threading

import torch
import torch.nn.functional as F

from samebits import _native
from samebits.errors import UnsupportedInputError
from samebits.ops._common import check_float, is_exact_dtype, narrow, native_view
from samebits.ops.matmul import _check_status, _gemm_map

COL_BYTES = 16 << 20  # im2col chunk: rows of about this many bytes (few chunks: each
# chunk is two parallel regions, and a busy machine can delay a region by a time slice)


def _triple(v, nd: int, fill: int) -> list[int]:
    v = [int(e) for e in v]
    if len(v) == 1 and nd > 1:
        v = v * nd
    return [fill] * (3 - nd) + v


def convolution(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride,
    padding,
    dilation,
    transposed: bool,
    output_padding,
    groups: int,
) -> torch.Tensor:
    """Matches ``aten::convolution`` (batched or unbatched input)."""
    if is_exact_dtype(x.dtype):
        return NotImplemented
    dtype = check_float("aten::convolution", x, weight, bias)
    nd = weight.dim() - 2
    if nd not in (1, 2, 3) or x.dim() not in (nd + 1, nd + 2):
        raise UnsupportedInputError(
            f"aten::convolution: input {tuple(x.shape)} and weight {tuple(weight.shape)} "
            "are not a 1-, 2- or 3-D convolution"
        )
    unbatched = x.dim() == nd + 1
    if unbatched:
        x = x.unsqueeze(0)
    if transposed:
        x, weight, padding = _as_direct(
            x, weight, stride, padding, dilation, output_padding, groups
        )
        stride = [1] * nd
    keep_cl = _channels_last(x)
    out = _conv3d(
        x.reshape(*x.shape[:2], *[1] * (3 - nd), *x.shape[2:]),  # (N, C, D, H, W)
        weight.reshape(*weight.shape[:2], *[1] * (3 - nd), *weight.shape[2:]),
        bias,
        _triple(stride, nd, 1),
        _triple(padding, nd, 0),
        _triple(dilation, nd, 1),
        int(groups),
        keep_cl,
    )  # (N, Co, OD, OH, OW) float32
    out = narrow(out.reshape(*out.shape[:2], *out.shape[5 - nd :]), dtype)
    return out[0] if unbatched else out


def _as_direct(x, weight, stride, padding, dilation, output_padding, groups):
    """A transposed convolution as a direct one: (input, weight, padding), stride 1."""
    nd = weight.dim() - 2
    s = [int(e) for e in (stride * nd if len(stride) == 1 else stride)]
    p = [int(e) for e in (padding * nd if len(padding) == 1 else padding)]
    d = [int(e) for e in (dilation * nd if len(dilation) == 1 else dilation)]
    op = [int(e) for e in (output_padding * nd if len(output_padding) == 1 else output_padding)]
    k = weight.shape[2:]
    if any(e > 1 for e in s):  # insert stride - 1 zeros between input samples
        up = x.new_zeros(
            *x.shape[:2], *[(n - 1) * st + 1 for n, st in zip(x.shape[2:], s, strict=True)]
        )
        up[(slice(None), slice(None), *[slice(None, None, st) for st in s])] = x
        x = up
    pads = []
    for i in reversed(range(nd)):  # F.pad wants the last dim first; negative crops
        lo = d[i] * (k[i] - 1) - p[i]
        pads += [lo, lo + op[i]]
    x = F.pad(x, pads)
    cin, cog = weight.shape[:2]
    g = int(groups)
    w = weight.reshape(g, cin // g, cog, *k).transpose(1, 2)  # (G, Co/G, Cin/G, *k)
    w = w.reshape(g * cog, cin // g, *k).flip(list(range(2, 2 + nd)))
    return x, w, [0] * nd


def _channels_last(x: torch.Tensor) -> bool:
    """Whether torch would give this input's convolution a channels-last output."""
    fmt = {4: torch.channels_last, 5: torch.channels_last_3d}.get(x.dim())
    return fmt is not None and not x.is_contiguous() and x.is_contiguous(memory_format=fmt)


def _padded_cl(x: torch.Tensor, padding: list[int]) -> torch.Tensor:
    """(N, C, D, H, W) -> channels-last (N, Dp, Hp, Wp, C), zero-padded, contiguous,
    in one copy (none for a channels-last input without padding)."""
    xcl = x.permute(0, 2, 3, 4, 1)  # (N, D, H, W, C)
    pd, ph, pw = padding
    N, D, H, W, C = xcl.shape
    if xcl.is_contiguous() and not any(padding):
        return xcl
    if D == 1 and not pd and x.dtype in _PAD_NATIVE:
        out = x.new_empty(N, 1, H + 2 * ph, W + 2 * pw, C)
        _pad_cl(x[:, :, 0], ph, pw, H + 2 * ph, W + 2 * pw, out)
        return out
    if not any(padding):
        return xcl.contiguous()
    out = xcl.new_empty(N, D + 2 * pd, H + 2 * ph, W + 2 * pw, C)
    _zero_borders(out, ((1, pd, pd), (2, ph, ph), (3, pw, pw)))
    out[:, pd : pd + D, ph : ph + H, pw : pw + W].copy_(xcl)
    return out


_PAD_NATIVE = (torch.float32, torch.bfloat16)
_scratch = threading.local()


def _scratch_buffer(numel: int, dtype: torch.dtype) -> torch.Tensor:
    """``numel`` elements of a per-thread scratch buffer, for the padded input copy of
    an implicit convolution, which lives only during the call. A fresh multi-megabyte
    buffer per call cost about 1 ms of page faults on a 56x56x64 batch of 8 (a sixth
    of the convolution); the thread keeps the largest one it needed instead, and
    releases it when the thread ends."""
    nbytes = numel * dtype.itemsize
    buf = getattr(_scratch, "buf", None)
    if buf is None or buf.numel() < nbytes:
        buf = _scratch.buf = torch.empty(nbytes, dtype=torch.uint8)
    return buf[:nbytes].view(dtype)


def _taps_first(weight: torch.Tensor) -> torch.Tensor:
    """(Co, Cg, KD, KH, KW) -> (Co, K), contiguous, K in (kd, kh, kw, cin) order: the
    order of an im2col row. float32 and bfloat16 go through sb_pad_cl's transposing copy
    (weight as (Co, Cg, 1, taps)); torch's permute-copy of a 512x512x3x3 weight took
    ~1.3 ms, about a fifth of that convolution."""
    Co, Cg = weight.shape[:2]
    T = math.prod(weight.shape[2:])
    if weight.dtype in _PAD_NATIVE:
        out = torch.empty(Co, T * Cg, dtype=weight.dtype)
        _pad_cl(weight.reshape(Co, Cg, 1, T), 0, 0, 1, T, out)
        return out
    return weight.reshape(Co, Cg, T).permute(0, 2, 1).reshape(Co, T * Cg).contiguous()


def _pad_cl(x4: torch.Tensor, ph: int, pw: int, Hp: int, Wq: int, buf: torch.Tensor) -> None:
    """The first N * Hp * Wq * C elements of ``buf`` := x4 (N, C, H, W, any strides) as
    (N, Hp, Wq, C), x at rows ph.. and columns pw.., zeros elsewhere: one native pass
    (sb_pad_cl, a copy) for float32 and bfloat16, torch's copies otherwise."""
    N, C, H, W = x4.shape
    if x4.dtype in _PAD_NATIVE and buf.dtype == x4.dtype:
        meta = (ctypes.c_int64 * 12)(N, C, H, W, *x4.stride(), ph, pw, Hp, Wq)
        _native.lib().sb_pad_cl(
            x4.data_ptr(), meta, buf.data_ptr(), _native.dtype_code(x4.dtype), _native.nthreads()
        )
        return
    xp = buf.reshape(-1)[: N * Hp * Wq * C].view(N, Hp, Wq, C)
    _zero_borders(xp, ((1, ph, Hp - ph - H), (2, pw, Wq - pw - W)))
    xp[:, ph : ph + H, pw : pw + W].copy_(x4.permute(0, 2, 3, 1))


def _zero_borders(t: torch.Tensor, borders) -> None:
    """Zeros on the borders only, (dim, before, after) each (filling the whole buffer
    first cost a pass over it)."""
    for dim, lo, hi in borders:
        if lo:
            t.narrow(dim, 0, lo).zero_()
        if hi:
            t.narrow(dim, t.size(dim) - hi, hi).zero_()


def _empty_out(N, Co, osz, keep_cl, dt=None) -> torch.Tensor:
    """The result (N, Co, OD, OH, OW): contiguous, or channels-last in memory; bfloat16
    when the GEMM runs the PAIR order (it rounds each result once, as .to() would),
    else float32."""
    dtype = torch.bfloat16 if dt == _BF16 else torch.float32
    if keep_cl:
        return torch.empty(N, *osz, Co, dtype=dtype).permute(0, 4, 1, 2, 3)
    return torch.empty(N, Co, *osz, dtype=dtype)


_BF16 = _native.dtype_code(torch.bfloat16)


def _conv3d(x, weight, bias, stride, padding, dilation, groups, keep_cl) -> torch.Tensor:
    N, C = x.shape[:2]
    Co, Cg = weight.shape[:2]
    ks = list(weight.shape[2:])
    if C != Cg * groups or Co % groups:
        raise UnsupportedInputError(
            f"aten::convolution: input has {C} channels, weight {tuple(weight.shape)} "
            f"with groups={groups} expects {Cg * groups}"
        )
    pointwise = (
        Cg > 1
        and x.dtype in _PAD_NATIVE
        and not keep_cl
        and ks == [1, 1, 1]
        and not any(padding)
        and x.is_contiguous()
    )
    if pointwise and stride != [1, 1, 1]:
        # a strided 1x1 convolution reads every s-th position: those, copied out, are
        # a stride-1 convolution's input (the same products, in the same order)
        x = x[:, :, :: stride[0], :: stride[1], :: stride[2]].contiguous()
        stride = [1, 1, 1]
    if _implicit_apply(x, ks, Cg, stride, dilation, groups, padding):
        return _implicit_conv(x, weight, bias, stride, padding, dilation, keep_cl)
    if pointwise and (x.dtype == torch.float32 or math.prod(x.shape[2:]) > 1):
        return _pointwise_nchw(x, weight, bias, groups)
    if Cg == 1 and not keep_cl and x.is_contiguous():
        # the AVX-512 paths' channels-last kernel copies each block of 16 channels
        # compactly, padding an NCHW input itself
        blocks = _native.lib().isa.startswith("avx512")
        if not _small_planes(x, ks, stride, padding, blocks):
            return _depthwise_nchw(x, weight, bias, stride, padding, dilation)
        if x.dtype in _PAD_NATIVE and weight.shape[0] == C and blocks:
            return _depthwise_blocks(x, weight, bias, stride, padding, dilation)
    xcl, dt = native_view(_padded_cl(x, padding))  # (N, Dp, Hp, Wp, C): exact zeros at fixed taps
    osz = [(xcl.shape[1 + i] - dilation[i] * (ks[i] - 1) - 1) // stride[i] + 1 for i in range(3)]
    if any(o <= 0 for o in osz):
        raise UnsupportedInputError(
            f"aten::convolution: kernel {tuple(ks)} is larger than the padded input "
            f"{tuple(xcl.shape[1:4])}"
        )
    if Cg == 1:  # (N, Co, OD, OH, OW): channels-last in memory, or NCHW in x's dtype
        nchw = None if keep_cl else (x.dtype if x.dtype in _PAD_NATIVE else torch.float32)
        return _depthwise(xcl, weight, bias, stride, dilation, osz, groups, dt, nchw)
    return _gemm_conv(xcl, weight, bias, stride, dilation, osz, groups, dt, keep_cl)


def _small_planes(x, ks, stride, padding, blocks: bool) -> bool:
    """Whether an NCHW depthwise convolution runs through the channels-last kernel
    (vectors across channels) rather than per plane (vectors along rows). Measured
    faster, copies included: for output rows of 14 positions or fewer (ConvNeXt's and
    MobileNet's 14x14 and 7x7 stages), and with ``blocks`` (the AVX-512 paths, which
    copy each block of 16 channels compactly) for kernels of 25 taps or more at any
    size (ConvNeXt's 7x7); 3x3 kernels on large planes run faster per plane."""
    ow = (x.shape[4] + 2 * padding[2] - ks[2]) // stride[2] + 1
    wide = math.prod(ks) >= 25 and blocks
    # 1x1 kernels (MobileOne's and FastViT's scale branches): the per-plane kernel
    # returned wrong values for them (garbage, NaN) on planes wider than 14
    return ow <= 14 or wide or math.prod(ks) == 1


def _implicit_apply(x, ks, Cg, stride, dilation, groups, padding) -> bool:
    """Whether the GEMM can read its im2col rows straight from the padded input: one
    image row of KW taps x C channels is one contiguous run (groups == 1, no width
    dilation, conv1d or conv2d), runs are whole blocks of the order (8 k for DOT,
    a pair for PAIR) and output rows are 12 positions or more. A 1x1 stride-1
    convolution needs no copy at all and goes elsewhere. The order is the GEMM path's
    either way; this only saves the copy."""
    if not (groups == 1 and ks[0] == 1 and x.shape[2] == 1 and dilation[2] == 1):
        return False
    if ks[1] * ks[2] == 1 and stride == [1, 1, 1]:
        return False
    ow = (x.shape[4] + 2 * padding[2] - ks[2]) // stride[2] + 1
    # short output rows (7x7 images) measured faster copied out: most of the kernels'
    # 6-row panels then straddle two output rows
    return ow >= 12 and ks[2] * Cg % (2 if x.dtype == torch.bfloat16 else 8) == 0


def _implicit_conv(x, weight, bias, stride, padding, dilation, keep_cl) -> torch.Tensor:
    """The GEMM path's order for conv1d/conv2d with groups == 1, its im2col rows read
    in place: A's row for output (oh, ow) is KH runs of KW x Cin elements of the padded
    channels-last input, one per kernel row (sb_gemm_map's A runs), so K is in (kh, kw,
    cin) order exactly as im2col lays it out. Rows come in groups of OW, one per output
    row (the map's aw, aws): within a group they are sw x Cin apart, and group oh
    starts at oh x sh padded input rows; one GEMM covers every image (batch stride
    Hp * Wp * Cin)."""
    N, C, _, H, W = x.shape
    Co, _, _, KH, KW = weight.shape
    sh, sw, dh = stride[1], stride[2], dilation[1]
    ph, pw = padding[1], padding[2]
    Hp, Wp = H + 2 * ph, W + 2 * pw
    OH = (Hp - dh * (KH - 1) - 1) // sh + 1
    OW = (Wp - KW) // sw + 1
    if OH <= 0 or OW <= 0:
        raise UnsupportedInputError(
            f"aten::convolution: kernel {(KH, KW)} is larger than the padded input {(Hp, Wp)}"
        )
    xd, dt = native_view(x.new_empty(0))
    buf = _scratch_buffer(N * Hp * Wp * C, xd.dtype)  # (N, Hp, Wp, C), zero borders
    _pad_cl(x[:, :, 0], ph, pw, Hp, Wp, buf)
    wk, wdt = native_view(_taps_first(weight))  # (Co, KH * KW * C)
    if wdt != dt:
        raise UnsupportedInputError(
            f"aten::convolution: input {x.dtype} and weight {weight.dtype} differ in dtype"
        )
    b, bdt = (None, 0) if bias is None else native_view(bias.to(weight.dtype).contiguous())
    M, K = OH * OW, KH * KW * C
    out = _empty_out(N, Co, [1, OH, OW], keep_cl, dt)
    si, sj = (Co, 1) if keep_cl else (1, M)  # row r = (oh, ow) -> output; column j -> channel j
    _gemm_map(
        buf.data_ptr(), sw * C, 1, Hp * Wp * C, wk.data_ptr(), K, 0,
        out.data_ptr(), Co * M, N, M, Co, K, b, bdt, dt,
        (M, M, 0, si, sj, 0, KW * C, dh * Wp * C, 0, int(dt == _BF16), OW, sh * Wp * C),
    )  # fmt: skip
    return out  # (N, Co, 1, OH, OW)


def _pointwise_nchw(x, weight, bias, groups) -> torch.Tensor:
    """A 1x1, stride-1, unpadded convolution of a contiguous NCDHW input, read and
    written in place: bfloat16, and float32 with many positions and output channels,
    computed transposed (_pointwise_t); other float32 as one GEMM of N x P rows
    (position p of image n reads x[n, :, p], channel by channel), each result stored
    at out[n, co, p]. The same bits either way; the choice is speed only (float32
    transposed measured faster from 128 positions and 128 output channels, slower
    at 7x7 = 49 positions, where 15 of its 64 columns of 16-column panels are idle)."""
    N, C = x.shape[:2]
    osz = list(x.shape[2:])
    P = math.prod(osz)
    Co, Cg = weight.shape[:2]
    cog = Co // groups
    wk = weight.reshape(Co, Cg).contiguous()
    b = None if bias is None else bias.contiguous()
    if x.dtype == torch.bfloat16 or (P >= 128 and cog >= 128):
        return _pointwise_t(x, wk, b, groups, osz)
    out = torch.empty(N, Co, *osz, dtype=torch.float32)
    if not out.numel():
        return out
    e = x.element_size()
    lda, ka, awq = (C, 1, 0) if P == 1 else (1, P, P)
    for g in range(groups):
        _gemm_map(
            x.data_ptr() + g * Cg * P * e, lda, ka, C * P,
            wk.data_ptr() + g * cog * Cg * e, Cg, 0,
            out.data_ptr() + g * cog * P * 4, 0, 1, N * P, cog, Cg,
            None if b is None else b[g * cog : (g + 1) * cog], _native.dtype_code(torch.float32),
            _native.dtype_code(torch.float32),
            (P, P, Co * P, 1, P, 0, 0, 0, awq, 0),
        )  # fmt: skip
    return out


def _pointwise_t(x, wk, b, groups, osz) -> torch.Tensor:
    """The 1x1 convolution of an NCDHW input, computed transposed: per image,
    out[n] (Co, P) = W (Co, Cin) @ x[n] (Cin, P), a GEMM whose rows are the output
    channels and whose B is the image itself, read K-major (one row of positions per
    input channel). Per output it is the chain of the GEMM path's order (DOT for
    float32, PAIR for bfloat16) over the input channels with the factors of each
    product swapped, which IEEE multiplication does not notice: the bits of the
    channels-last path. The bias is indexed by row (flag 2); a bfloat16 result is
    rounded once (flag 1)."""
    N, C = x.shape[:2]
    Co, Cg = wk.shape
    cog, P = Co // groups, math.prod(osz)
    out = torch.empty(N, Co, *osz, dtype=x.dtype)
    if not out.numel():
        return out
    xv, dt = native_view(x)
    wv, _ = native_view(wk)
    bv, bdt = native_view(b) if b is not None else (None, 0)
    e = x.element_size()
    for g in range(groups):
        _gemm_map(
            wv.data_ptr() + g * cog * Cg * e, Cg, 1, 0,
            xv.data_ptr() + g * Cg * P * e, P, C * P,
            out.data_ptr() + g * cog * P * e, Co * P, N, cog, P, Cg,
            None if bv is None else bv[g * cog : (g + 1) * cog], bdt, dt,
            (cog, cog, 0, P, 1, 0, 0, 0, 0, 2 | int(dt == _BF16)), w_kmajor=True,
        )  # fmt: skip
    return out


def _depthwise(xcl, weight, bias, stride, dilation, osz, groups, dt, nchw_dtype=None, pads=None):
    """TAP order; a channel multiplier m > 1 repeats each input channel m times.
    Returns (N, Co, OD, OH, OW): float32 and channels-last in memory, or, with
    ``nchw_dtype``, contiguous in that dtype (the kernel stores it so, each result
    rounded once). With ``pads`` (AVX-512 paths), ``xcl`` is the unpadded NCDHW input
    and the kernel pads each block of 16 channels itself."""
    N = xcl.shape[0]
    Co = weight.shape[0]
    if Co != groups:
        xcl = xcl.repeat_interleave(Co // groups, dim=-1)  # channel o reads input o // m
    w, wdt = native_view(weight.reshape(Co, -1).t().contiguous())  # (taps, Co)
    b = None
    if bias is not None:
        b, bdt = native_view(bias.to(w.dtype).contiguous())
    if nchw_dtype is None:
        out = torch.empty(N, *osz, Co, dtype=torch.float32).permute(0, 4, 1, 2, 3)
    else:
        out = torch.empty(N, Co, *osz, dtype=nchw_dtype)
    x_nchw = pads is not None
    if x_nchw:  # the padded sizes
        dims = [s + 2 * p for s, p in zip(xcl.shape[2:], pads, strict=True)]
    else:
        dims, pads = list(xcl.shape[1:4]), [0, 0, 0]
    meta = torch.tensor(
        [N, *dims, Co, *weight.shape[2:], *stride, *dilation, *osz,
         int(nchw_dtype is not None), _native.dtype_code(out.dtype), int(x_nchw), *pads],
        dtype=torch.int64,
    )  # fmt: skip
    if out.numel():
        status = _native.lib().sb_depthwise(
            xcl.data_ptr(), w.data_ptr(), None if b is None else b.data_ptr(), out.data_ptr(),
            meta.data_ptr(), dt, wdt, _native.nthreads(),
        )  # fmt: skip
        _check_status(status)
    return out


def _nchw_out_size(x, weight, stride, padding, dilation) -> list[int]:
    """(OD, OH, OW) of a convolution of an unpadded NCDHW input, or the error naming
    a kernel larger than the padded input."""
    ks = list(weight.shape[2:])
    osz = [
        (s + 2 * p - d * (k - 1) - 1) // st + 1
        for s, p, d, k, st in zip(x.shape[2:], padding, dilation, ks, stride, strict=True)
    ]
    if any(o <= 0 for o in osz):
        raise UnsupportedInputError(
            f"aten::convolution: kernel {tuple(ks)} is larger than the padded input "
            f"{tuple(s + 2 * p for s, p in zip(x.shape[2:], padding, strict=True))}"
        )
    return osz


def _depthwise_blocks(x, weight, bias, stride, padding, dilation) -> torch.Tensor:
    """TAP order on an NCDHW input through the channels-last kernel, which copies each
    block of 16 channels of an item, padded, into a compact buffer itself (AVX-512
    paths): no padded channels-last copy of the whole input, NCDHW output in x's dtype."""
    osz = _nchw_out_size(x, weight, stride, padding, dilation)
    xd, dt = native_view(x)
    return _depthwise(
        xd, weight, bias, stride, dilation, osz, weight.shape[0], dt, x.dtype, padding
    )


def _depthwise_nchw(x, weight, bias, stride, padding, dilation) -> torch.Tensor:
    """TAP order on an NCDHW input, written NCDHW (sb_depthwise_nchw pads one plane at
    a time in its own buffer): the same operations per output as _depthwise."""
    N, Cin, D, H, W = x.shape
    Co = weight.shape[0]
    ks = list(weight.shape[2:])
    osz = _nchw_out_size(x, weight, stride, padding, dilation)
    xd, dt = native_view(x)
    w, wdt = native_view(weight.reshape(Co, -1).contiguous())  # (Co, taps)
    b = None if bias is None else native_view(bias.to(w.dtype).contiguous())[0]
    out = torch.empty(N, Co, *osz, dtype=torch.bfloat16 if dt == _BF16 else torch.float32)
    meta = torch.tensor(
        [N, Cin, D, H, W, Co, *ks, *stride, *dilation, *padding, *osz, dt], dtype=torch.int64
    )
    if out.numel():
        status = _native.lib().sb_depthwise_nchw(
            xd.data_ptr(), w.data_ptr(), None if b is None else b.data_ptr(), out.data_ptr(),
            meta.data_ptr(), dt, wdt, _native.nthreads(),
        )  # fmt: skip
        _check_status(status)
    return out


def _gemm_conv(xcl, weight, bias, stride, dilation, osz, groups, dt, keep_cl) -> torch.Tensor:
    """im2col by chunks of rows (native copy), then the GEMM in DOT order, per group,
    written straight into the result's layout."""
    N, D, H, W, C = xcl.shape
    Co, Cg = weight.shape[:2]
    ks = list(weight.shape[2:])
    cog, taps = Co // groups, math.prod(ks)
    K = taps * Cg
    wk, wdt = native_view(_taps_first(weight))  # (Co, K)
    if wdt != dt:
        raise UnsupportedInputError(
            f"aten::convolution: input {xcl.dtype} and weight {weight.dtype} differ in dtype"
        )
    b, bdt = (None, 0) if bias is None else native_view(bias.to(weight.dtype).contiguous())
    P = math.prod(osz)
    rows = N * P
    out = _empty_out(N, Co, osz, keep_cl, dt)
    if not rows:
        return out
    # row r = (n, position) -> its output; column j -> channel j
    so, si, sj = (0, Co, 1) if keep_cl else (Co * P, 1, P)
    wrap = rows if keep_cl else P
    cbf = int(dt == _BF16)
    pointwise = taps == 1 and stride == [1, 1, 1]
    step = max(256, COL_BYTES // max(1, K * xcl.element_size()))
    col = None if pointwise else torch.empty(min(step, rows), K, dtype=xcl.dtype)
    meta = torch.tensor([N, D, H, W, C, *ks, *stride, *dilation, *osz, 0, Cg], dtype=torch.int64)
    e = xcl.element_size()
    for g in range(groups):
        wg = wk[g * cog : (g + 1) * cog]  # (Co/G, K)
        bg = None if b is None else b[g * cog : (g + 1) * cog]
        c0 = out.data_ptr() + g * cog * sj * out.element_size()  # this group's column 0
        if pointwise:  # the input itself is the im2col matrix
            _gemm_map(
                xcl.data_ptr() + g * Cg * e, C, 1, 0, wg.data_ptr(), K, 0,
                c0, 0, 1, rows, cog, K, bg, bdt, dt, (wrap, wrap, so, si, sj, 0, 0, 0, 0, cbf),
            )  # fmt: skip
            continue
        meta[17] = g * Cg
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            _native.lib().sb_im2col(
                xcl.data_ptr(), meta.data_ptr(), r0, r1, col.data_ptr(), dt, _native.nthreads()
            )
            _gemm_map(
                col.data_ptr(), K, 1, 0, wg.data_ptr(), K, 0,
                c0, 0, 1, r1 - r0, cog, K, bg, bdt, dt, (wrap, wrap, so, si, sj, r0, 0, 0, 0, cbf),
            )  # fmt: skip
    return out


def _reference(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """float64 convolution (any dimensionality), rounded to ``x.dtype``."""
    fn = (F.conv1d, F.conv2d, F.conv3d)[weight.dim() - 3]
    b = None if bias is None else bias.double()
    return fn(x.double(), weight.double(), b, stride, padding, dilation, groups).to(x.dtype)
