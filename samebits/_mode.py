"""The batch-invariant mode: the only module that touches ``torch.library``.

How it works
------------
Entering ``batch_invariant()`` in any thread installs, process-wide, CPU kernels
for every covered aten op (``_COVERED``) and a raising kernel for every
reduction-bearing op without an invariant kernel (``_DENIED``). Each installed
kernel first asks whether *the calling thread* is in the mode:

* yes: run the samebits kernel (or raise / warn for a denied op);
* no: call the kernel that was registered before (captured with
  ``torch.library.get_kernel``), so other threads keep native behaviour.

Installation is reference-counted across threads: the first thread to enter
installs; when the last has left and none has entered for the uninstall delay
(``SAMEBITS_UNINSTALL_DELAY_S``, default 1 s), a timer removes the library, which
restores exactly the kernels registered before (ours are dropped, nothing else is
touched). Registering takes ~8 ms; the delay lets a loop or a server enter per call.

Thread semantics (documented and tested): the mode is per thread. A thread that
did not enter it is unaffected, apart from one Python call per covered op while
another thread holds the mode. Threads started inside a block do not inherit it.
``batch_invariant(False)`` inside an enabled block turns it off for that block.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib.abc
import importlib.machinery
import os
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from samebits import _native
from samebits._native_ok import NATIVE_OK
from samebits.errors import NotInvariantError
from samebits.ops import (
    _autograd,
    attention,
    channel_norms,
    conv,
    elementwise,
    fused_attention,
    matmul,
    norms,
    pooling,
    recurrent,
    reductions,
    resample,
    softmax,
)

POLICIES = ("raise", "warn")


class NotInvariantWarning(UserWarning):
    """Raised as a warning instead of NotInvariantError under on_unsupported="warn"."""


# ------------------------------------------------------------------ op table
# Each entry: aten overload name -> function taking the overload's arguments.
# A function may return NotImplemented: "native is already invariant here"
# (integer and bool dtypes, whose sums are exact in any order).


def _addmm_activation(bias, a, b, *, beta=1, alpha=1, use_gelu=False):
    out = matmul.addmm(bias, a, b, beta=beta, alpha=alpha)
    if out is NotImplemented:
        return out
    return elementwise.gelu(out, approximate="tanh") if use_gelu else torch.relu(out)


def _convolution_full(
    x, w, b, stride, padding, dilation, transposed, output_padding, groups, *_flags
):
    """``aten::_convolution``: ``convolution`` plus backend flags that change nothing here."""
    return conv.convolution(x, w, b, stride, padding, dilation, transposed, output_padding, groups)


def _glu(x, dim=-1):
    """a * sigmoid(b) with samebits' sigmoid (torch's differs between dispatch levels)."""
    if not x.dtype.is_floating_point:
        return NotImplemented
    a, b = x.chunk(2, dim)
    return a * elementwise.sigmoid(b)


def _addr(m, v1, v2, *, beta=1, alpha=1):
    """beta * m + alpha * outer(v1, v2), one rounding per operation (torch's vector
    path fuses them at some dispatch levels and not at others)."""
    if not m.dtype.is_floating_point:
        return NotImplemented
    outer = v1.unsqueeze(1) * v2.unsqueeze(0)  # (N, M), exact products rounded once
    if alpha != 1:
        outer = outer * alpha
    if beta == 0:
        return outer.expand(m.shape).clone() if outer.shape != m.shape else outer
    return (m if beta == 1 else m * beta) + outer


def _vdot(a, b):
    return NotImplemented if a.dtype.is_complex else matmul.dot(a, b)


def _rsqrt(x):
    return NotImplemented if not x.dtype.is_floating_point else elementwise.rsqrt(x)


def _sum_default(x, *, dtype=None):
    return reductions.sum(x, None, False, dtype=dtype)


def _mean_default(x, *, dtype=None):
    return reductions.mean(x, None, False, dtype=dtype)


def _corr(c):
    return 1 if c is None else c


def _std_mean(x, dim=None, *, correction=None, keepdim=False):
    v, m = reductions.var_mean(x, dim, correction=_corr(correction), keepdim=keepdim)
    return v.sqrt(), m


def _norm_p(x, p=2, dim=None, keepdim=False, *, dtype=None):
    p = 2 if p is None else p
    if p != 2:
        raise NotInvariantError(
            "aten::norm", x.dtype, x.shape, f"only the 2-norm is covered, got p={p}"
        )
    return reductions.vector_norm(x, 2, dim, keepdim, dtype=dtype)


def _vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None):
    if ord != 2:
        raise NotInvariantError(
            "aten::linalg_vector_norm", x.dtype, x.shape, f"only ord=2 is covered, got ord={ord}"
        )
    return reductions.vector_norm(x, ord, dim, keepdim, dtype=dtype)


_COVERED: dict[str, Callable] = {
    "mm": matmul.mm,
    "addmm": matmul.addmm,
    "bmm": matmul.bmm,
    "baddbmm": matmul.baddbmm,
    "mv": matmul.mv,
    "addmv": matmul.addmv,
    "dot": matmul.dot,
    "linear": matmul.linear,
    "matmul": matmul.matmul,
    "einsum": matmul.einsum,
    "_addmm_activation": _addmm_activation,
    "_softmax": softmax.softmax,
    "_log_softmax": softmax.log_softmax,
    "native_layer_norm": norms.native_layer_norm,
    "rms_norm": norms.rms_norm,
    "sum.dim_IntList": reductions.sum,
    "sum": _sum_default,
    "mean.dim": reductions.mean,
    "mean": _mean_default,
    "var.correction": lambda x, dim=None, *, correction=None, keepdim=False: reductions.var(
        x, dim, correction=_corr(correction), keepdim=keepdim
    ),
    "std.correction": lambda x, dim=None, *, correction=None, keepdim=False: reductions.std(
        x, dim, correction=_corr(correction), keepdim=keepdim
    ),
    "var_mean.correction": lambda x, dim=None, *, correction=None, keepdim=False: (
        reductions.var_mean(x, dim, correction=_corr(correction), keepdim=keepdim)
    ),
    "std_mean.correction": _std_mean,
    "linalg_vector_norm": _vector_norm,
    "norm.ScalarOpt_dim": _norm_p,
    "scaled_dot_product_attention": attention.scaled_dot_product_attention,
    "gelu": elementwise.gelu,
    "silu": elementwise.silu,
    "sigmoid": elementwise.sigmoid,
    "elu": elementwise.elu,
    "celu": elementwise.celu,
    "selu": elementwise.selu,
    "softplus": elementwise.softplus,
    "mish": elementwise.mish,
    "softshrink": elementwise.softshrink,
    "sinh": elementwise.sinh,
    "cosh": elementwise.cosh,
    "atanh": elementwise.atanh,
    "rsqrt": _rsqrt,
    "convolution": conv.convolution,
    "_convolution": _convolution_full,
    "native_batch_norm": channel_norms.native_batch_norm,
    "_native_batch_norm_legit_no_training": lambda x, w, b, rm, rv, momentum, eps: (
        channel_norms.native_batch_norm(x, w, b, rm, rv, False, momentum, eps)
    ),
    "_batch_norm_no_update": lambda x, w, b, rm, rv, momentum, eps: (
        *channel_norms.native_batch_norm(x, w, b, rm, rv, False, momentum, eps),
        x.new_empty(0, dtype=torch.uint8),
    ),
    "native_group_norm": channel_norms.native_group_norm,
    "_weight_norm_interface": channel_norms.weight_norm_interface,
    "glu": _glu,
    "addr": _addr,
    "vdot": _vdot,
    "avg_pool2d": functools.partial(pooling.avg_pool, nd=2),
    "avg_pool3d": functools.partial(pooling.avg_pool, nd=3),
    "_adaptive_avg_pool2d": functools.partial(pooling.adaptive_avg_pool, nd=2),
    "_adaptive_avg_pool3d": functools.partial(pooling.adaptive_avg_pool, nd=3),
    "upsample_linear1d": resample.upsample_linear1d,
    "upsample_bilinear2d": resample.upsample_bilinear2d,
    "upsample_trilinear3d": resample.upsample_trilinear3d,
    "upsample_bicubic2d": resample.upsample_bicubic2d,
    "lstm.input": recurrent.lstm_input,
    "lstm.data": recurrent.lstm_data,
    "gru.input": recurrent.make("gru", packed=False),
    "gru.data": recurrent.make("gru", packed=True),
    "rnn_tanh.input": recurrent.make("rnn_tanh", packed=False),
    "rnn_tanh.data": recurrent.make("rnn_tanh", packed=True),
    "rnn_relu.input": recurrent.make("rnn_relu", packed=False),
    "rnn_relu.data": recurrent.make("rnn_relu", packed=True),
    "_native_multi_head_attention": fused_attention.native_multi_head_attention,
    "_transformer_encoder_layer_fwd": fused_attention.transformer_encoder_layer_fwd,
}

# Covered ops whose inputs can also be nested tensors (another dispatch key):
# nn.TransformerEncoder with a padding mask runs its layers on nested tensors.
_COVERED_NESTED: dict[str, Callable] = {
    "_transformer_encoder_layer_fwd": fused_attention.transformer_encoder_layer_fwd,
}

# Reduction-bearing ops with no invariant kernel: under the mode they raise
# NotInvariantError (or warn) when given floating-point tensors.
_DENIED: dict[str, str] = {
    "prod": "a product's rounding depends on its order",
    "prod.dim_int": "a product's rounding depends on its order",
    "nansum": "use torch.where(x.isnan(), 0, x).sum()",
    "nanmean": "use a masked sum divided by a count",
    "logsumexp": "write it as max + log(sum(exp(x - max))), which the mode covers",
    "cumprod": "no invariant cumulative product",
    "logcumsumexp": "no invariant kernel",
    "trace": "use x.diagonal().sum()",
    "addbmm": "use baddbmm(...).sum(0) or bmm",
    "_cdist_forward": "write the distance with matmul and sum",
    "_pdist_forward": "write the distance with matmul and sum",
    "_embedding_bag": "sum/mean bags reduce in a thread-dependent order; use embedding + sum",
    "nll_loss_forward": "loss reductions sum over the batch by definition",
    "mse_loss": "loss reductions sum over the batch by definition",
    "_scaled_dot_product_flash_attention_for_cpu": "call scaled_dot_product_attention instead",
    "_masked_softmax": "reached inside torch's fused attention, which the mode replaces; "
    "use softmax with a -inf mask",
    "_upsample_bilinear2d_aa": "no invariant antialiased resampling; use antialias=False",
    "_upsample_bicubic2d_aa": "no invariant antialiased resampling; use antialias=False",
    "mkldnn_rnn_layer": "oneDNN's recurrent layer; reached through aten::lstm, which the mode "
    "covers: call nn.LSTM / torch.lstm",
    "_cholesky_solve_helper": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "_linalg_det": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "_linalg_eigh": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "_linalg_eigvals": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "_linalg_slogdet": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "_linalg_solve_ex": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "_linalg_svd": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "cholesky": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "cholesky_inverse": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "cholesky_solve": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "geqrf": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "linalg_cholesky_ex": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "linalg_eig": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "linalg_householder_product": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "linalg_inv_ex": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "linalg_ldl_factor_ex": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "linalg_ldl_solve": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "linalg_lstsq": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "linalg_lu": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "linalg_lu_factor_ex": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "linalg_lu_solve": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "linalg_matrix_exp": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "linalg_qr": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "linalg_solve_triangular": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "ormqr": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "triangular_solve": "LAPACK-style factorizations and solves block and thread their reductions; no invariant kernel",
    "binary_cross_entropy": "loss reductions sum over the batch by definition",
    "binary_cross_entropy_with_logits": "loss reductions sum over the batch by definition",
    "huber_loss": "loss reductions sum over the batch by definition",
    "smooth_l1_loss": "loss reductions sum over the batch by definition",
    "soft_margin_loss": "loss reductions sum over the batch by definition",
    "multi_margin_loss": "loss reductions sum over the batch by definition",
    "multilabel_margin_loss_forward": "loss reductions sum over the batch by definition",
    "nll_loss2d_forward": "loss reductions sum over the batch by definition",
    "_ctc_loss": "loss reductions sum over the batch by definition",
    "_ctc_loss.Tensor": "loss reductions sum over the batch by definition",
    "mkldnn_convolution": "a convolution backend, reached through aten::convolution, which the mode covers: call F.conv*d",
    "_nnpack_spatial_convolution": "a convolution backend, reached through aten::convolution, which the mode covers: call F.conv*d",
    "_slow_conv2d_forward": "a convolution backend, reached through aten::convolution, which the mode covers: call F.conv*d",
    "slow_conv3d_forward": "a convolution backend, reached through aten::convolution, which the mode covers: call F.conv*d",
    "slow_conv_dilated2d": "a convolution backend, reached through aten::convolution, which the mode covers: call F.conv*d",
    "slow_conv_dilated3d": "a convolution backend, reached through aten::convolution, which the mode covers: call F.conv*d",
    "slow_conv_transpose2d": "a convolution backend, reached through aten::convolution, which the mode covers: call F.conv*d",
    "slow_conv_transpose3d": "a convolution backend, reached through aten::convolution, which the mode covers: call F.conv*d",
    "convolution_overrideable": "a convolution backend, reached through aten::convolution, which the mode covers: call F.conv*d",
    "conv_tbc": "no invariant kernel: use F.conv1d on (batch, channels, time)",
    "col2im": "sums overlapping patches; no invariant kernel",
    "index_add": "accumulates floats into shared outputs in an order that depends on threads and indices",
    "index_reduce": "accumulates floats into shared outputs in an order that depends on threads and indices",
    "scatter_add": "accumulates floats into shared outputs in an order that depends on threads and indices",
    "scatter.reduce": "accumulates floats into shared outputs in an order that depends on threads and indices",
    "scatter.value_reduce": "accumulates floats into shared outputs in an order that depends on threads and indices",
    "scatter_reduce.two": "accumulates floats into shared outputs in an order that depends on threads and indices",
    "_unsafe_masked_index_put_accumulate": "accumulates floats into shared outputs in an order that depends on threads and indices",
    "segment_reduce": "accumulates floats into shared outputs in an order that depends on threads and indices",
    "embedding_renorm": "accumulates floats into shared outputs in an order that depends on threads and indices",
    "_embedding_bag_forward_only": "sum/mean bags reduce in a thread-dependent order; use embedding + sum",
    "_euclidean_dist": "write the distance with matmul and sum",
    "dist": "use torch.linalg.vector_norm(a - b)",
    "renorm": "no invariant kernel",
    "linalg__powsum": "only the 2-norm is covered: use torch.linalg.vector_norm(x, 2)",
    "norm.Scalar": "use torch.linalg.vector_norm(x, 2)",
    "norm.ScalarOpt_dtype": "use torch.linalg.vector_norm(x, 2)",
    "norm.ScalarOpt_dim_dtype": "use torch.linalg.vector_norm(x, 2, dim)",
    "_logcumsumexp": "no invariant kernel",
    "_compute_linear_combination": "no invariant kernel",
    "affine_grid_generator": "a batched matmul of the base grid; no invariant kernel",
    "grid_sampler_2d": "not checked for invariance; no invariant kernel",
    "grid_sampler_3d": "not checked for invariance; no invariant kernel",
    "_grid_sampler_2d_cpu_fallback": "not checked for invariance; no invariant kernel",
    "_upsample_lanczos2d_aa": "no invariant antialiased resampling; use antialias=False",
    "log_sigmoid_forward": "its bits differ between torch dispatch levels; no invariant kernel",
    "_transform_bias_rescale_qkv": "reached inside torch's fused attention, which the mode replaces",
    "_safe_softmax": "no invariant kernel: use softmax with a -inf mask",
    "_weight_int8pack_mm": "a quantized matmul with float activations; no invariant kernel",
    "_weight_int4pack_mm_for_cpu": "a quantized matmul with float activations; no invariant kernel",
    "_dyn_quant_matmul_4bit": "a quantized matmul with float activations; no invariant kernel",
    "_scaled_mm": "no invariant float8 matmul",
    "_scaled_mm_v2": "no invariant float8 matmul",
    "_grouped_mm": "no invariant grouped matmul: use bmm",
    "quantized_lstm.input": "quantized recurrent layers: no invariant kernel",
    "quantized_lstm.data": "quantized recurrent layers: no invariant kernel",
    "quantized_lstm.input_legacy": "quantized recurrent layers: no invariant kernel",
    "quantized_lstm.data_legacy": "quantized recurrent layers: no invariant kernel",
    "quantized_gru.input": "quantized recurrent layers: no invariant kernel",
    "quantized_gru.data": "quantized recurrent layers: no invariant kernel",
    "quantized_gru.input_legacy": "quantized recurrent layers: no invariant kernel",
    "quantized_gru.data_legacy": "quantized recurrent layers: no invariant kernel",
    "_batch_norm_with_update_functional": "batch statistics depend on the whole batch by definition: call model.eval()",
    "_native_batch_norm_legit_functional": "batch statistics depend on the whole batch by definition: call model.eval()",
    "_native_batch_norm_legit.no_stats": "batch statistics depend on the whole batch by definition: call model.eval()",
    "batch_norm_update_stats": "batch statistics depend on the whole batch by definition: call model.eval()",
    "_histogramdd_from_bin_cts": "weighted histograms sum weights in a thread-dependent order",
    "_histogramdd_from_bin_tensors": "weighted histograms sum weights in a thread-dependent order",
    "histogram.bin_ct": "weighted histograms sum weights in a thread-dependent order",
    "histogram.bins_tensor": "weighted histograms sum weights in a thread-dependent order",
    "_fused_moving_avg_obs_fq_helper_functional": "a training-time quantization observer",
    "linalg_cross": "its bits differ between torch dispatch levels; no invariant kernel",
    "polar": "complex outputs are outside the mode",
    "_sparse_addmm": "sparse tensors have no invariant kernel",
    "_sparse_sum.dim": "sparse tensors have no invariant kernel",
    "_fft_r2c": "no invariant FFT",
    "_fft_c2r": "no invariant FFT",
    "_fft_c2c": "no invariant FFT",
}


def _accumulates(x, indices, values, accumulate=False, *_rest, **kw) -> bool:
    return bool(kw.get("accumulate", accumulate)) and x.dtype.is_floating_point


# Ops that are a copy (invariant) in their common use and a float accumulation (order-
# dependent for repeated indices) otherwise: native, or denied when the predicate holds.
_ACCUMULATE_WHY = (
    "accumulate=True sums floats at repeated indices in an order that depends on threads; "
    "accumulate into a dense tensor with a covered op (e.g. one_hot @ values)"
)


def _floating_input(x, *_rest, **_kw) -> bool:
    return isinstance(x, torch.Tensor) and x.dtype.is_floating_point


# Pointwise ops whose CPU kernel on this torch computes the vector body and the scalar
# tail differently, so an element's bits depend on where it falls in the buffer (its
# position in the batch): found by tests/test_pointwise_sweep.py over torch's registry,
# at the avx512, avx2 and default dispatch levels.
_TAIL_WHY = (
    "torch's CPU kernel computes the vector body and the scalar tail differently, so an "
    "element's bits depend on its position in the batch; no invariant kernel yet"
)
# (elu, celu, selu, softplus, mish, softshrink, sinh, cosh and atanh vary too: covered)
_VARYING_POINTWISE = ("exp2", "digamma", "special_i0e")
_VARYING_BINARY = (
    "pow.Tensor_Tensor", "atan2", "igamma", "igammac", "ldexp.Tensor",
    "logaddexp", "logaddexp2", "silu_backward",
)  # fmt: skip
# exponents torch computes with plain multiplies, divisions or sqrt (the same in the
# vector body and the tail); any other goes through its pow, which differs
_EXACT_EXPONENTS = (0, 1, 2, 3, 0.5, -1)


def _general_pow(x, exponent, *_rest, **_kw) -> bool:
    return _floating_input(x) and exponent not in _EXACT_EXPONENTS


_GUARDED: dict[str, tuple[Callable[..., bool], str]] = {
    "index_put": (_accumulates, _ACCUMULATE_WHY),
    "_index_put_impl": (_accumulates, _ACCUMULATE_WHY),
    "_unsafe_index_put": (_accumulates, _ACCUMULATE_WHY),
    "put": (_accumulates, _ACCUMULATE_WHY),
    **{name: (_floating_input, _TAIL_WHY) for name in _VARYING_POINTWISE + _VARYING_BINARY},
    "pow.Tensor_Scalar": (_general_pow, _TAIL_WHY + f" (exponents {_EXACT_EXPONENTS} run)"),
    "gelu_backward": (
        lambda g, *_a, **_k: _floating_input(g) and g.dtype == torch.float16,
        _TAIL_WHY,
    ),
}


def covered_ops() -> dict[str, str]:
    """Aten ops the mode handles, and how: "invariant kernel", "denied: why",
    "native, denied when: why", or "native (invariant by construction): why"."""
    table = {f"aten::{n}": "invariant kernel" for n in _COVERED}
    table.update({f"aten::{n}": f"denied: {why}" for n, why in _DENIED.items()})
    table.update({f"aten::{n}": f"native, denied when {why}" for n, (_, why) in _GUARDED.items()})
    table.update(
        {
            f"aten::{n}": f"native (invariant by construction): {why}"
            for n, why in _NATIVE_OK.items()
        }
    )
    return dict(sorted(table.items()))


# Ops left native on purpose because torch's own kernel already has a fixed order.
_NATIVE_OK: dict[str, str] = NATIVE_OK


# ------------------------------------------------------------- thread state
_NO_ISA = object()  # a frame that did not choose a kernel path


@dataclass(frozen=True)
class _Frame:
    enabled: bool
    on_unsupported: str
    isa_token: object = _NO_ISA


class _Local(threading.local):
    def __init__(self) -> None:
        self.stack: list[_Frame] = []


_tls = _Local()
_lock = threading.Lock()
_holders = 0  # threads (counted per enabled frame) that need the library installed
_lib: torch.library.Library | None = None
_fallbacks: dict[str, object] = {}


def is_batch_invariant() -> bool:
    """Whether the calling thread is inside an enabled ``batch_invariant()`` block."""
    return bool(_tls.stack) and _tls.stack[-1].enabled


def _policy() -> str:
    return _tls.stack[-1].on_unsupported if _tls.stack else "raise"


def _describe(args) -> tuple[object, object]:
    for a in args:
        if isinstance(a, torch.Tensor):
            return a.dtype, a.shape
    return None, None


@functools.cache  # a pure function of torch's op registry; most of an install's time
def _out_and_inplace(name: str) -> tuple[list[str], list[str]]:
    """Existing ``.out`` and in-place overloads of a functional op name."""
    base, _, overload = name.partition(".")
    packet = getattr(torch.ops.aten, base, None)
    outs, inplace = [], []
    if packet is not None:
        for ov in packet.overloads():
            schema = getattr(packet, ov)._schema
            returns_alias = any(
                a.alias_info is not None and a.alias_info.is_write for a in schema.arguments
            )
            if not returns_alias or ov == (overload or "default"):
                continue
            # the same positional arguments, names and types (pow.Scalar_out has pow's
            # names but a Scalar base: it is not an out= form of pow.Tensor_Tensor)
            same_args = [(a.name, str(a.type)) for a in schema.arguments if not a.kwarg_only]
            func_schema = getattr(packet, overload or "default")._schema
            if same_args == [
                (a.name, str(a.type)) for a in func_schema.arguments if not a.kwarg_only
            ]:
                outs.append(f"{base}.{ov}")
    inplace_packet = getattr(torch.ops.aten, base + "_", None)
    if inplace_packet is not None and not base.startswith("_"):
        ov = overload or "default"
        if ov in inplace_packet.overloads():
            inplace.append(f"{base}_" + (f".{overload}" if overload else ""))
    return outs, inplace


def _fallback_key(name: str, key: str) -> str:
    """Where torch's own kernel for (op, dispatch key) sits in ``_fallbacks``."""
    return name if key == "CPU" else f"{name}@{key}"


def _make_kernel(name: str, fn: Callable, variant: str, key: str = "CPU") -> Callable:
    fkey = _fallback_key(name, key)

    def native(keyset, args, kwargs):  # torch's kernel as it was at this install
        return _fallbacks[fkey].call_boxed(keyset, *args, **kwargs)

    @functools.wraps(fn)
    def kernel(keyset, *args, **kwargs):
        if not is_batch_invariant():
            return native(keyset, args, kwargs)
        call_kwargs = dict(kwargs)
        out = call_kwargs.pop("out", None) if variant == "out" else None
        try:
            res = fn(*args, **call_kwargs)
        except NotInvariantError as err:
            if _policy() == "warn":
                warnings.warn(str(err), NotInvariantWarning, stacklevel=3)
                # run the native op with the mode off, so its inner ops don't warn again
                _tls.stack.append(_Frame(False, "warn"))
                try:
                    return native(keyset, args, kwargs)
                finally:
                    _tls.stack.pop()
            raise
        if res is NotImplemented:
            return native(keyset, args, kwargs)
        if variant == "out":
            results = res if isinstance(res, tuple) else (res,)
            outs = out if isinstance(out, (tuple, list)) else (out,)
            for o, r in zip(outs, results, strict=True):
                if o.shape != r.shape:
                    o.resize_(r.shape)
                o.copy_(r)
            return out
        if variant == "inplace":
            args[0].copy_(res)
            return args[0]
        return res

    return kernel


@functools.cache
def _decomposed_covered() -> tuple[str, ...]:
    """Covered ops that torch differentiates by decomposition (CompositeImplicitAutograd):
    linear, matmul, einsum, rms_norm, sdpa, the recurrent layers. Each gets an
    AutogradCPU kernel (_autograd_kernel)."""
    return tuple(
        n
        for n in _COVERED
        if _op_exists(n)
        and torch._C._dispatch_has_kernel_for_dispatch_key(
            f"aten::{n}", "CompositeImplicitAutograd"
        )
    )


def _autograd_kernel(name: str) -> Callable:
    """The AutogradCPU kernel of an op torch differentiates by decomposition (see
    ops/_autograd.py). Overriding its CPU kernel alone would leave autograd nothing
    to differentiate (torch's "Could not run 'aten::linear_backward'"). Outside the
    mode: torch's own (the decomposition, with its gradients). In the mode with
    gradients wanted: the samebits forward with the reference's gradients. Else: on
    to the CPU kernel below autograd, as before."""
    fkey = _fallback_key(name, "AutogradCPU")  # torch's kernel as it was at this install
    base, _, overload = name.partition(".")
    op = getattr(getattr(torch.ops.aten, base), overload or "default")
    reference = _autograd.REFERENCES.get(name)

    def below(*args, **kwargs):  # the mode's CPU kernel (fallbacks included)
        with torch._C._AutoDispatchBelowAutograd():
            return op(*args, **kwargs)

    def kernel(keyset, *args, **kwargs):
        if not is_batch_invariant():
            return _fallbacks[fkey].call_boxed(keyset, *args, **kwargs)
        if _autograd.needs_grad(args, kwargs):
            # gradients from ops/_autograd.py's reference, or else torch's own
            # decomposition (its ops have derivative formulas and run in the mode)
            ref = reference or functools.partial(_fallbacks[fkey].call_boxed, keyset)
            return _autograd.with_grad(ref, below, args, kwargs)
        with torch._C._AutoDispatchBelowAutograd():
            return op(*args, **kwargs)

    return kernel


def _deny_kernel(name: str, why: str) -> Callable:
    def fn(*args, **kwargs):
        dtype, shape = _describe(args)
        if dtype is not None and not dtype.is_floating_point:
            return NotImplemented
        raise NotInvariantError(f"aten::{name}", dtype, shape, why)

    return fn


def _guard_kernel(name: str, when: Callable[..., bool], why: str) -> Callable:
    def fn(*args, **kwargs):
        if when(*args, **kwargs):
            dtype, shape = _describe(args)
            raise NotInvariantError(f"aten::{name}", dtype, shape, why)
        return NotImplemented

    return fn


@functools.cache
def _registrations() -> tuple[tuple[str, str, Callable], ...]:
    """(op, dispatch key, kernel) for every registration the mode makes, built once per
    process: the kernels find torch's own kernel in ``_fallbacks``, which each install
    refills, so re-entering the mode only registers."""
    plan: list[tuple[str, Callable, str]] = []
    for name, fn in _COVERED.items():
        plan.append((name, fn, "functional"))
        outs, inplace = _out_and_inplace(name)
        plan += [(o, fn, "out") for o in outs] + [(i, fn, "inplace") for i in inplace]
    for name, why in _DENIED.items():
        if _op_exists(name):
            plan.append((name, _deny_kernel(name, why), "functional"))
            outs, _ = _out_and_inplace(name)
            plan += [(o, _deny_kernel(o, why), "out") for o in outs]
    for name, (when, why) in _GUARDED.items():
        fn = _guard_kernel(name, when, why)
        outs, inplace = _out_and_inplace(name)
        if name.startswith("pow."):
            # pow(scalar, tensor) runs through pow.Tensor_Tensor_out with the base as a
            # wrapped number, which reaches a Python kernel as a float and cannot be
            # passed back: the out= forms of pow stay native
            outs = []
        plan.append((name, fn, "functional"))
        plan += [(o, fn, "out") for o in outs] + [(i, fn, "inplace") for i in inplace]
    regs: list[tuple[str, str, Callable]] = []
    done: set[str] = set()
    for name, fn, variant in plan:
        if not _op_exists(name) or name in done:
            continue  # (a second registration would take the first as its fallback)
        done.add(name)
        regs.append((name, "CPU", _make_kernel(name, fn, variant)))
    regs += [(n, "AutogradCPU", _autograd_kernel(n)) for n in _decomposed_covered()]
    for name, fn in _COVERED_NESTED.items():
        if _op_exists(name):
            regs.append(
                (name, "NestedTensorCPU", _make_kernel(name, fn, "functional", "NestedTensorCPU"))
            )
    return tuple(regs)


def _install() -> torch.library.Library:
    regs = _registrations()
    # taken before any kernel changes (the autograd kernels' fallbacks are torch's
    # decompositions, with their gradients)
    for name, key, _ in regs:
        _fallbacks[_fallback_key(name, key)] = torch.library.get_kernel(f"aten::{name}", key)
    lib = torch.library.Library("aten", "IMPL")
    with warnings.catch_warnings():
        # torch warns when a CPU kernel is overridden; that is the point here
        warnings.simplefilter("ignore")
        for name, key, kernel in regs:
            lib.impl(name, kernel, key, with_keyset=True)
    return lib


@functools.cache
def _op_exists(name: str) -> bool:
    base, _, overload = name.partition(".")
    packet = getattr(torch.ops.aten, base, None)
    return packet is not None and (overload or "default") in packet.overloads()


# ------------------------------------------------------------ torch.compile
# Inductor generates its own reductions (and dynamo traces past the CPU kernels above),
# so a model compiled under the mode would get other bits than the mode's. Compiling
# while this thread is in the mode is refused: dynamo runs its compile-start callbacks,
# and ours raises (it is registered once dynamo is loaded, and is inert outside the mode). Dynamo wraps the error in its own exception; batch_invariant's exit
# re-raises the NotInvariantError itself. A model compiled *before* entering the mode
# keeps its compiled graph: see the README's limits.
_COMPILE_WHY = (
    "inductor generates its own kernels and reductions, which the mode cannot fix; "
    "run the model uncompiled under batch_invariant() (compiled code keeps native bits)"
)


def _refuse_compile(*_args) -> None:
    if is_batch_invariant():
        raise NotInvariantError("torch.compile", hint=_COMPILE_WHY)


_DYNAMO_CALLBACK = "torch._dynamo.callback"


def _register(callback_module) -> None:
    handler = callback_module.callback_handler
    if _refuse_compile not in handler.start_callbacks:
        handler.register_start_callback(_refuse_compile)


class _OnDynamoImport(importlib.abc.MetaPathFinder):
    """Registers the compile hook when dynamo loads (importing it ourselves would
    cost seconds and a burst of garbage collection on the first entry)."""

    def find_spec(self, name, path, target=None):
        if name != _DYNAMO_CALLBACK:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _register(module)

        spec.loader.exec_module = exec_module
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        return spec


_on_dynamo_import = _OnDynamoImport()


def _hook_compile() -> None:
    """Once per process; the callback does nothing outside the mode, so it stays."""
    if _DYNAMO_CALLBACK in sys.modules:
        _register(sys.modules[_DYNAMO_CALLBACK])
    elif _on_dynamo_import not in sys.meta_path:
        sys.meta_path.insert(0, _on_dynamo_import)


def _not_invariant_cause(exc: BaseException | None) -> NotInvariantError | None:
    """The NotInvariantError that dynamo wrapped in its own exception, if any."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, NotInvariantError):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _uninstall_delay() -> float:
    """Seconds the kernels stay registered after the last thread leaves the mode
    (SAMEBITS_UNINSTALL_DELAY_S, default 1; 0 restores torch's kernels at each exit)."""
    raw = os.environ.get("SAMEBITS_UNINSTALL_DELAY_S", "1")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"SAMEBITS_UNINSTALL_DELAY_S={raw!r} is not a number of seconds") from None
    if not value >= 0:
        raise ValueError(f"SAMEBITS_UNINSTALL_DELAY_S={raw!r} must be >= 0")
    return value


_timer: threading.Timer | None = None  # the pending uninstall, if any


def _acquire() -> None:
    global _holders, _lib, _timer
    _uninstall_delay()  # a bad value fails the entry, before any change
    with _lock:
        if _timer is not None:
            _timer.cancel()
            _timer = None
        if _lib is None:
            # an install allocates a few thousand objects at once (the first one also
            # builds every kernel): with the collector on, its collections took over
            # half of an install's time (~10 of 17 ms)
            enabled = gc.isenabled()
            gc.disable()
            try:
                _lib = _install()
            finally:
                if enabled:
                    gc.enable()
            _hook_compile()
        _holders += 1


def _release() -> None:
    """One holder fewer. When none is left, torch's kernels come back after the
    uninstall delay: registering takes ~8 ms, so a loop or a server that enters the
    mode per call would spend more time registering than computing. Meanwhile every
    thread outside the mode runs torch's own kernels (through the wrappers' fallbacks):
    the same bits as native, a few microseconds slower per call."""
    global _holders, _timer
    delay = _uninstall_delay()
    with _lock:
        _holders -= 1
        if _holders or _lib is None:
            return
        if delay == 0:
            _uninstall_locked()
            return
        _timer = threading.Timer(delay, uninstall_if_idle)
        _timer.daemon = True
        _timer.start()


def _uninstall_locked() -> None:
    global _lib
    _lib._destroy()
    _lib = None
    # _fallbacks stays: a thread outside the mode may already have been dispatched to
    # a wrapper, which then calls torch's kernel through it (the next install refills it)


def uninstall_if_idle() -> bool:
    """Restore torch's kernels now if no thread is in the mode; whether they are
    restored. (Leaving the mode does it by itself after the uninstall delay.)"""
    global _timer
    with _lock:
        if _holders == 0 and _lib is not None:
            _uninstall_locked()
        if _holders == 0 and _timer is not None:
            _timer.cancel()
            _timer = None
        return _lib is None


def _after_fork_in_child() -> None:
    """A forked child has no timer thread: restore torch's kernels there if no frame
    of the forking thread holds the mode."""
    global _lock, _timer
    _lock = threading.Lock()
    _timer = None
    if _holders == 0 and _lib is not None:
        _uninstall_locked()


os.register_at_fork(after_in_child=_after_fork_in_child)


def installed() -> bool:
    """Whether samebits' kernels are registered with torch right now (any thread)."""
    return _lib is not None


class batch_invariant(contextlib.ContextDecorator):
    """Run covered CPU ops with invariant kernels in this thread.

    Usable as ``with batch_invariant():`` and as ``@batch_invariant()``. Nestable
    and re-entrant; on exit, by return or by exception, the previous state of the
    thread is restored at once, and the previous torch registrations exactly once no
    thread has been in the mode for the uninstall delay (see ``_release``).

    ``on_unsupported``: "raise" (default) raises NotInvariantError when a
    reduction-bearing op without an invariant kernel runs; "warn" emits a
    NotInvariantWarning and runs the native (variant) kernel.

    ``isa``: the kernel path this thread's ops run on inside the block (default: the
    process's, ``SAMEBITS_ISA`` or the best portable one). ``"amx"`` runs bfloat16
    products on AMX tiles: invariant on that CPU, bits not reproducible on others
    (see ``samebits.native_info``). A path this CPU lacks raises NativeBuildError on
    entry.
    """

    def __init__(
        self, enabled: bool = True, *, on_unsupported: str = "raise", isa: str | None = None
    ) -> None:
        if on_unsupported not in POLICIES:
            raise ValueError(f"on_unsupported={on_unsupported!r}; expected one of {POLICIES}")
        if isa is not None and not isinstance(isa, str):
            raise TypeError(f"isa must be a kernel path name or None, not {type(isa).__name__}")
        self.enabled = bool(enabled)
        self.on_unsupported = on_unsupported
        self.isa = isa

    def __enter__(self) -> batch_invariant:
        token = _NO_ISA
        if self.isa is not None:
            token = _native.push_isa(self.isa)
        try:
            if self.enabled:
                _acquire()
        except BaseException:
            if token is not _NO_ISA:
                _native.pop_isa(token)
            raise
        _tls.stack.append(_Frame(self.enabled, self.on_unsupported, token))
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        frame = _tls.stack.pop()
        if frame.isa_token is not _NO_ISA:
            _native.pop_isa(frame.isa_token)
        if frame.enabled:
            _release()
        cause = _not_invariant_cause(exc)
        if cause is not None and cause is not exc:
            raise cause.with_traceback(None) from exc
