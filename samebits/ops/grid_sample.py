"""Invariant ``grid_sample`` (``grid_sampler_2d`` / ``grid_sampler_3d``: bilinear,
nearest and bicubic (2d), padding zeros / border / reflection, ``align_corners``) and
``affine_grid`` (``affine_grid_generator``).

Why: torch's CPU grid sampler computes its coordinates and weights in a vector body and
a scalar tail that fuse multiply-adds differently, so an output's bits depended on its
position in the row and on the dispatch level.

Order (the **GRID** row of docs/design.md). Every step is one float32 IEEE operation,
in torch's formulas: the grid coordinate is unnormalized (``((g + 1) / 2) * (size - 1)``
with align_corners, else ``((g + 1) * size - 1) / 2``), then clipped (border) or
reflected and clipped (reflection) for bilinear and nearest; nearest rounds half to
even. Bilinear takes the 2^d corners in row-major (z, y, x) order, weight
``(wx * wy) * wz`` with ``wx0 = (x0 + 1) - x``, ``wx1 = x - x0``; bicubic (A = -0.75)
interpolates the 4 x 4 taps along x for each of the 4 rows (``((v0 c0 + v1 c1) + v2 c2)
+ v3 c3``), then along y, padding applied per tap. Taps outside the input are +0 terms.
Sums are left to right in float32. bfloat16 and float16 run in float32 and are
rounded once. Each output depends on its own grid point and image only.
"""

from __future__ import annotations

import math

import torch

from samebits.errors import UnsupportedInputError
from samebits.ops._common import check_float, is_exact_dtype
from samebits.ops.matmul import bmm_f32

BILINEAR, NEAREST, BICUBIC = 0, 1, 2
ZEROS, BORDER, REFLECTION = 0, 1, 2
A = -0.75


def _unnormalize(g: torch.Tensor, size: int, align_corners: bool) -> torch.Tensor:
    if align_corners:
        return ((g + 1.0) / 2.0) * float(size - 1)
    return ((g + 1.0) * float(size) - 1.0) / 2.0


def _reflect(x: torch.Tensor, twice_low: int, twice_high: int) -> torch.Tensor:
    if twice_low == twice_high:
        return torch.zeros_like(x)
    lo = float(twice_low) / 2
    span = float(twice_high - twice_low) / 2
    x = (x - lo).abs()
    extra = torch.fmod(x, span)
    flips = torch.floor(x / span)
    return torch.where(torch.fmod(flips, 2.0) == 0, extra + lo, (span - extra) + lo)


def _pad(x: torch.Tensor, size: int, padding: int, align_corners: bool) -> torch.Tensor:
    """torch's compute_coordinates: clip (border), or reflect then clip (reflection)."""
    if padding == BORDER:
        return x.clamp(0.0, float(size - 1))
    if padding == REFLECTION:
        x = _reflect(x, 0, 2 * (size - 1)) if align_corners else _reflect(x, -1, 2 * size - 1)
        return x.clamp(0.0, float(size - 1))
    return x


class _Image:
    """The input as (N, C, prod(spatial)) float32, read at integer coordinates."""

    def __init__(self, x: torch.Tensor):
        self.sizes = list(x.shape[2:])  # (D,) H, W
        self.flat = x.float().reshape(x.size(0), x.size(1), -1)

    def read(self, coords: list[torch.Tensor]) -> torch.Tensor:
        """coords (z,) y, x: integer-valued float32 (N, P); out of bounds reads +0."""
        inside = torch.ones_like(coords[0], dtype=torch.bool)
        lin = torch.zeros_like(coords[0], dtype=torch.int64)
        for c, size in zip(coords, self.sizes, strict=True):
            inside &= (c >= 0) & (c <= size - 1)
            lin = lin * size + c.clamp(0, size - 1).long()
        n, ch, _ = self.flat.shape
        vals = self.flat.gather(2, lin.unsqueeze(1).expand(n, ch, -1))  # (N, C, P)
        return torch.where(inside.unsqueeze(1), vals, 0.0)


def _cubic_coefficients(t: torch.Tensor) -> list[torch.Tensor]:
    def near(x):  # |x| <= 1
        return ((A + 2) * x - (A + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A

    return [far(t + 1.0), near(t), near(1.0 - t), far((1.0 - t) + 1.0)]


def grid_sampler(x, grid, interpolation_mode: int, padding_mode: int, align_corners: bool):
    """``aten::grid_sampler_2d`` / ``grid_sampler_3d``: x (N, C, [D,] H, W), grid
    (N, [Do,] Ho, Wo, nd) with x first; see the module doc."""
    nd = x.dim() - 2
    op = f"aten::grid_sampler_{nd}d"
    if is_exact_dtype(x.dtype):
        return NotImplemented
    dtype = check_float(op, x, grid)
    if grid.size(-1) != nd or grid.dim() != x.dim() or grid.size(0) != x.size(0):
        raise UnsupportedInputError(
            f"{op}: grid {tuple(grid.shape)} does not match input {tuple(x.shape)}"
        )
    if interpolation_mode == BICUBIC and nd != 2:
        raise UnsupportedInputError(f"{op}: bicubic needs a 4-D input")
    N, C = x.shape[:2]
    out_spatial = list(grid.shape[1:-1])
    img = _Image(x)
    g = grid.float().reshape(N, -1, nd)  # (N, P, nd): x, y(, z)
    # source coordinates in the input's dim order (z,) y, x
    src = [_unnormalize(g[..., nd - 1 - i], img.sizes[i], align_corners) for i in range(nd)]
    if interpolation_mode == BICUBIC:
        out = _bicubic(img, src, padding_mode, align_corners)
    else:
        src = [_pad(s, img.sizes[i], padding_mode, align_corners) for i, s in enumerate(src)]
        if interpolation_mode == NEAREST:
            out = img.read([torch.round(s) for s in src])
        elif interpolation_mode == BILINEAR:
            out = _bilinear(img, src)
        else:
            raise UnsupportedInputError(f"{op}: interpolation_mode {interpolation_mode}")
    return out.reshape(N, C, *out_spatial).to(dtype)


def _bilinear(img: _Image, src: list[torch.Tensor]) -> torch.Tensor:
    lo = [torch.floor(s) for s in src]
    # 1-D weights per dim: w[i][0] towards the low corner, w[i][1] towards the high one
    w = [((f + 1.0) - s, s - f) for s, f in zip(src, lo, strict=True)]
    acc = None
    nd = len(src)
    for corner in range(2**nd):  # row-major over (z,) y, x
        bits = [(corner >> (nd - 1 - i)) & 1 for i in range(nd)]
        weight = w[nd - 1][bits[nd - 1]]  # x first, then y, then z
        for i in reversed(range(nd - 1)):
            weight = weight * w[i][bits[i]]
        vals = img.read([f + b for f, b in zip(lo, bits, strict=True)])
        term = vals * weight.unsqueeze(1)
        acc = term if acc is None else acc + term
    return acc


def _bicubic(img: _Image, src: list[torch.Tensor], padding: int, align_corners: bool):
    iy, ix = src
    y0, x0 = torch.floor(iy), torch.floor(ix)
    cx = [c.unsqueeze(1) for c in _cubic_coefficients(ix - x0)]
    cy = [c.unsqueeze(1) for c in _cubic_coefficients(iy - y0)]
    H, W = img.sizes

    def tap(y, x):
        return img.read([_pad(y, H, padding, align_corners), _pad(x, W, padding, align_corners)])

    rows = []
    for j in range(4):
        y = y0 + float(j - 1)
        v = [tap(y, x0 + float(i - 1)) for i in range(4)]
        rows.append(((v[0] * cx[0] + v[1] * cx[1]) + v[2] * cx[2]) + v[3] * cx[3])
    return ((rows[0] * cy[0] + rows[1] * cy[1]) + rows[2] * cy[2]) + rows[3] * cy[3]


def affine_grid_generator(theta, size, align_corners: bool):
    """``aten::affine_grid_generator``: the base grid (coordinates ``(2i + 1) / n - 1``,
    or ``2i / (n - 1) - 1`` with align_corners, computed in double and rounded once;
    x, y(, z), 1 per point) times theta^T in the SEQ order (one product per output
    coordinate: ``fma`` over x, y(, z), 1), rounded once."""
    if is_exact_dtype(theta.dtype):
        return NotImplemented
    dtype = check_float("aten::affine_grid_generator", theta)
    N, *spatial = [int(s) for s in size[:1]] + [int(s) for s in size[2:]]
    nd = len(spatial)

    def line(n):
        i = torch.arange(n, dtype=torch.float64)
        if n <= 1:
            return torch.zeros(n, dtype=torch.float64)
        v = (2 * i) / (n - 1) - 1 if align_corners else (2 * i + 1) / n - 1
        return v.float()

    axes = [line(n) for n in reversed(spatial)]  # x, y(, z)
    mesh = torch.meshgrid(*reversed(axes), indexing="ij")  # (z,) y, x order
    cols = [m.reshape(-1) for m in reversed(mesh)] + [torch.ones(math.prod(spatial))]
    base = torch.stack(cols, -1)  # (P, nd + 1)
    out = bmm_f32(base.expand(N, -1, -1), theta.float().transpose(1, 2))  # (N, P, nd)
    return out.to(dtype).reshape(N, *spatial, nd)


def _reference(x, grid, **kwargs):
    """torch's grid_sample in float64, rounded to x's dtype."""
    import torch.nn.functional as F

    return F.grid_sample(x.double(), grid.double(), **kwargs).to(x.dtype)
