"""The op policy: what the mode does with every op of every namespace the dispatcher
knows, and the rules that decide it. samebits._mode turns the decisions into
registrations; nothing here touches torch.library.

Under the mode an op is one of:

* **covered**: a samebits kernel runs (``_COVERED``; the pointwise engine's ops come
  from ``samebits.ops.pointwise.ATEN``);
* **guarded**: torch's kernel runs unless a predicate on the arguments says its result
  would vary, which raises (``_GUARDED``: ``index_put(accumulate=True)``, ``add`` with
  ``alpha != 1`` is covered instead, ...);
* **native**: torch's kernel runs, because each output element is, by construction,
  data movement, a comparison, an integer result, or one correctly rounded IEEE-754
  operation (``NATIVE_OK`` in ``_native_ok.py``, and the rules below);
* **denied**: it raises ``NotInvariantError`` with a reason (``_DENIED`` and the
  namespace rules);
* **refused**: anything else, including every op a new torch version or a library adds,
  raises ``NotInvariantError`` until someone classifies it. Integer and bool inputs
  are exempt at run time (their arithmetic is exact), unless the op returns floats.

An op's functional, in-place and ``out=`` forms share one classification
(``family``): a rule or a table names the functional overload.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from samebits._native_ok import NATIVE_OK, NATIVE_POINTWISE
from samebits.errors import NotInvariantError
from samebits.ops import (
    attention,
    backward,
    channel_norms,
    conv,
    conv_backward,
    distances,
    divmode,
    embedding_bag,
    fold,
    fused_attention,
    grid_sample,
    grouped_mm,
    histogram,
    losses,
    matmul,
    norms,
    pointwise,
    pointwise_losses,
    pooling,
    recurrent,
    reductions,
    resample,
    sampling,
    softmax,
)

# ------------------------------------------------------------------ op table
# Each entry: aten overload name -> function taking the overload's arguments.
# A function may return NotImplemented: "native is already invariant here"
# (integer and bool dtypes, whose sums are exact in any order).


def _addmm_activation(bias, a, b, *, beta=1, alpha=1, use_gelu=False):
    """torch's fused linear + activation (the encoder fast path): a linear layer, so
    linear's DOT order over the weight's input features."""
    if beta == 1 and alpha == 1 and bias.dim() == 1:
        out = matmul.linear(a, b.t(), bias)
    else:
        out = matmul.addmm(bias, a, b, beta=beta, alpha=alpha)
    if out is NotImplemented:
        return out
    return pointwise.gelu(out, approximate="tanh") if use_gelu else torch.relu(out)


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
    return a * pointwise.sigmoid(b)


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
    """``torch.norm``'s overloads: a vector norm (p None is 2)."""
    return reductions.vector_norm(x, 2 if p is None else p, dim, keepdim, dtype=dtype)


def _renorm(x, p, dim, maxnorm):
    """Each slice along ``dim`` scaled by ``maxnorm / (norm + 1e-7)`` where its p-norm
    (float32, samebits' vector_norm over the other dims) exceeds ``maxnorm``, as torch."""
    if not x.dtype.is_floating_point:
        return NotImplemented
    dims = [d for d in range(x.dim()) if d != dim % x.dim()]
    n = reductions.vector_norm(x, p, dims, True, dtype=torch.float32)
    factor = torch.where(n > maxnorm, float(maxnorm) / (n + 1e-7), 1.0)
    return (x.float() * factor).to(x.dtype)


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
    "_grouped_mm": grouped_mm.grouped_mm,
    "histc": histogram.histc,
    "cross_entropy_loss": losses.cross_entropy_loss,
    "nll_loss_forward": losses.nll_loss_forward,
    "nll_loss2d_forward": losses.nll_loss2d_forward,
    "nll_loss_backward": losses.nll_loss_backward,
    "nll_loss2d_backward": losses.nll_loss_backward,
    **{
        name: getattr(pointwise_losses, name)
        for name in (
            "mse_loss",
            "huber_loss",
            "smooth_l1_loss",
            "binary_cross_entropy",
            "binary_cross_entropy_with_logits",
            "soft_margin_loss",
            "mse_loss_backward",
            "huber_loss_backward",
            "smooth_l1_loss_backward",
            "binary_cross_entropy_backward",
            "soft_margin_loss_backward",
        )  # fmt: skip
    },
    "_softmax": softmax.softmax,
    "_log_softmax": softmax.log_softmax,
    "native_layer_norm": norms.native_layer_norm,
    "rms_norm": norms.rms_norm,
    "sum.dim_IntList": reductions.sum,
    "sum": _sum_default,
    "mean.dim": reductions.mean,
    "mean": _mean_default,
    "nansum": reductions.nansum,
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
    "linalg_vector_norm": reductions.vector_norm,
    "linalg__powsum": reductions.powsum,
    "norm.ScalarOpt_dim": _norm_p,
    "norm.Scalar": _norm_p,
    "norm.ScalarOpt_dtype": _norm_p,
    "norm.ScalarOpt_dim_dtype": _norm_p,
    "dist": lambda a, b, p=2: reductions.vector_norm(a - b, p),
    "renorm": _renorm,
    "logsumexp": reductions.logsumexp,
    "cdist": distances.cdist,
    "_cdist_forward": distances.cdist,
    "_cdist_backward": distances.cdist_backward,
    "_euclidean_dist": distances.euclidean_dist,
    "_embedding_bag": embedding_bag.embedding_bag,
    "_embedding_bag_forward_only": embedding_bag.embedding_bag,
    "_embedding_bag_backward": embedding_bag.embedding_bag_backward,
    "grid_sampler_2d": grid_sample.grid_sampler,
    "grid_sampler_3d": grid_sample.grid_sampler,
    "affine_grid_generator": grid_sample.affine_grid_generator,
    "_embedding_bag_per_sample_weights_backward": embedding_bag.per_sample_weights_backward,
    "scaled_dot_product_attention": attention.scaled_dot_product_attention,
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
    "_softmax_backward_data": backward.softmax_backward_data,
    "_log_softmax_backward_data": backward.log_softmax_backward_data,
    "native_layer_norm_backward": backward.native_layer_norm_backward,
    "embedding_dense_backward": backward.embedding_dense_backward,
    "convolution_backward": conv_backward.convolution_backward,
    # randn and randn_like are composites: torch.empty(...).normal_()
    "normal_": pointwise.normal_,
    "uniform_": pointwise.uniform_,
    "multinomial": sampling.multinomial,
    "div.Tensor_mode": divmode.div_mode,
    "div.Scalar_mode": divmode.div_mode,
    "floor_divide": divmode.floor_divide,
    "floor_divide.Scalar": divmode.floor_divide,
    "col2im": fold.col2im,
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
    "_upsample_bilinear2d_aa": resample.upsample_bilinear2d_aa,
    "_upsample_bicubic2d_aa": resample.upsample_bicubic2d_aa,
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
_RANDOM_WHY = (
    "torch draws it through transcendental functions (log, cos, sin, tan, exp) that it "
    "vectorizes with SLEEF by dispatch level: torch.randn differs between "
    "ATEN_CPU_CAPABILITY=default and avx2 (measured); draw it outside the mode, or draw "
    "torch.rand and transform it with covered ops (e.g. Box-Muller with torch.log, "
    "torch.cos, torch.sin, which the mode runs in its pointwise engine)"
)
_QUANT_WHY = (
    "dynamic quantization takes its scale from the min/max of the whole tensor, so a "
    "row's result depends on the other rows; quantize per row or per token instead "
    "(scale = x.abs().amax(-1, keepdim=True) / 127), which the mode runs invariantly"
)

_STATS_WHY = "batch statistics depend on the whole batch by definition: call model.eval()"
_DTYPE_MM_WHY = (
    "a product with a different output dtype (out_dtype) has no invariant kernel: compute "
    "in the input dtype and cast the result"
)

_DENIED: dict[str, str] = {
    **dict.fromkeys(
        (
            "_batch_norm_with_update",
            "batch_norm_elemt",
            "batch_norm_gather_stats",
            "batch_norm_gather_stats_with_counts",
            "batch_norm_stats",
        ),  # fmt: skip
        _STATS_WHY,
    ),
    **dict.fromkeys(("mm.dtype", "bmm.dtype", "addmm.dtype", "baddbmm.dtype"), _DTYPE_MM_WHY),
    "_masked_scale": "dropout in training mode (a random mask): call model.eval()",
    "rrelu_with_noise_": "rrelu in training mode draws random slopes: call model.eval()",
    "rrelu_with_noise.out": "rrelu in training mode draws random slopes: call model.eval()",
    "_batch_norm_with_update.out": _STATS_WHY,
    "_histogramdd_bin_edges": "its bin edges are computed in torch's vector loop; no invariant kernel",
    "_nested_tensor_softmax_with_shape": "softmax over a nested tensor: no invariant kernel; pad it",
    "_scaled_grouped_mm": "no invariant float8 grouped matmul",
    "_scaled_grouped_mm_v2": "no invariant float8 grouped matmul",
    "linspace.out": (
        "linspace computes start + i * step (or end - (n - 1 - i) * step) in torch's vector "
        "and scalar loops, which round differently; build it from an integer arange"
    ),
    "logspace.out": "logspace raises a base to linspace's values in torch's loops; no invariant kernel",
    "native_norm": "use torch.linalg.vector_norm, which the mode covers",
    "native_norm.ScalarOpt_dim_dtype": "use torch.linalg.vector_norm, which the mode covers",
    "linalg_eigvals.out": "LAPACK-style factorizations block and thread their reductions; no invariant kernel",
    "linalg_matrix_sqrth": "LAPACK-style factorizations block and thread their reductions; no invariant kernel",
    "linalg_polar": "LAPACK-style factorizations block and thread their reductions; no invariant kernel",
    "adaptive_avg_pool2d.out": "call adaptive_avg_pool2d without out=, which the mode covers",
    "adaptive_avg_pool3d.out": "call adaptive_avg_pool3d without out=, which the mode covers",
    **dict.fromkeys(
        (
            "normal.Tensor_Tensor",
            "normal.Tensor_float",
            "normal.float_Tensor",
            "normal.float_float",
            "normal_functional",
            "exponential",
            "cauchy",
            "log_normal",
            "geometric",
            "poisson",
            "binomial",
            "_standard_gamma",
            "_sample_dirichlet",
            "rrelu_with_noise",
            "rrelu_with_noise_functional",
            "_philox_normal",
            "exponential_",
            "cauchy_",
            "log_normal_",
            "geometric_",
        ),  # fmt: skip
        _RANDOM_WHY,
    ),
    "quantize_per_tensor_dynamic": _QUANT_WHY,
    "_choose_qparams_per_tensor": _QUANT_WHY,
    "choose_qparams_optimized": _QUANT_WHY,
    "fbgemm_linear_int8_weight_fp32_activation": _QUANT_WHY,
    "fbgemm_linear_quantize_weight": _QUANT_WHY,
    "prod": "a product's rounding depends on its order",
    "prod.dim_int": "a product's rounding depends on its order",
    "logcumsumexp": "no invariant kernel",
    "trace": "use x.diagonal().sum()",
    "addbmm": "use baddbmm(...).sum(0) or bmm",
    "_pdist_forward": "write the distance with matmul and sum",
    "_scaled_dot_product_flash_attention_for_cpu": "call scaled_dot_product_attention instead",
    "_masked_softmax": "reached inside torch's fused attention, which the mode replaces; "
    "use softmax with a -inf mask",
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
    "multi_margin_loss": "loss reductions sum over the batch by definition",
    "multilabel_margin_loss_forward": "loss reductions sum over the batch by definition",
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
    "index_reduce": "accumulates floats into shared outputs in an order that depends on threads and indices",
    "scatter.reduce": "accumulates floats into shared outputs in an order that depends on threads and indices",
    "scatter.value_reduce": "accumulates floats into shared outputs in an order that depends on threads and indices",
    "scatter_reduce.two": "accumulates floats into shared outputs in an order that depends on threads and indices",
    "_unsafe_masked_index_put_accumulate": "accumulates floats into shared outputs in an order that depends on threads and indices",
    "segment_reduce": "accumulates floats into shared outputs in an order that depends on threads and indices",
    "embedding_renorm": "accumulates floats into shared outputs in an order that depends on threads and indices",
    "_logcumsumexp": "no invariant kernel",
    "_compute_linear_combination": "no invariant kernel",
    "_grid_sampler_2d_cpu_fallback": "not checked for invariance; no invariant kernel",
    "_upsample_lanczos2d_aa": "no invariant antialiased resampling; use antialias=False",
    "_transform_bias_rescale_qkv": "reached inside torch's fused attention, which the mode replaces",
    "_safe_softmax": "no invariant kernel: use softmax with a -inf mask",
    "_weight_int8pack_mm": "a quantized matmul with float activations; no invariant kernel",
    "_weight_int4pack_mm_for_cpu": "a quantized matmul with float activations; no invariant kernel",
    "_dyn_quant_matmul_4bit": "a quantized matmul with float activations; no invariant kernel",
    "_scaled_mm": "no invariant float8 matmul",
    "_scaled_mm_v2": "no invariant float8 matmul",
    "_scaled_addmm": "no invariant float8 matmul",
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
    **dict.fromkeys(
        ("_fft_r2c", "_fft_c2r", "_fft_c2c"),
        "no invariant FFT (pocketfft/MKL pick their radices and vector paths by size and "
        "CPU), and complex results are outside the mode: compute a spectrogram outside "
        "the mode, or as frames @ a real DFT matrix (cos and sin columns) with covered ops",
    ),
}


def _accumulates(x, indices, values, accumulate=False, *_rest, **kw) -> bool:
    """index_put(accumulate=True) sums floats only where two indexed positions coincide
    (without that, each position gets x + one value: one rounding)."""
    if not (bool(kw.get("accumulate", accumulate)) and x.dtype.is_floating_point):
        return False
    if isinstance(indices, torch.Tensor):  # put(): flat indices
        return indices.numel() != indices.unique().numel()
    idx = [i for i in indices if i is not None]
    if not idx or any(i.dtype == torch.bool for i in idx):
        return any(i.dtype != torch.bool for i in idx)  # masks pick each position once
    if len([i for i in indices]) != len(idx):
        return True  # sliced dims between indexed ones: do not reason about overlap
    flat = torch.stack([i.reshape(-1) for i in torch.broadcast_tensors(*idx)])  # (k, n)
    return flat.size(1) != torch.unique(flat, dim=1).size(1)


# Ops that are a copy (invariant) in their common use and a float accumulation (order-
# dependent for repeated indices) otherwise: native, or denied when the predicate holds.
_ACCUMULATE_WHY = (
    "accumulate=True with repeated indices sums floats in an order that depends on threads; "
    "accumulate into a dense tensor with a covered op (e.g. one_hot @ values)"
)


def _floating_input(x, *_rest, **_kw) -> bool:
    return isinstance(x, torch.Tensor) and x.dtype.is_floating_point


def _fractional_range(*args, **kwargs) -> bool:
    """arange/range with a non-integral start, end or step (the values are then rounded
    sums, which torch's vector and scalar loops compute differently)."""
    dtype = kwargs.get("dtype")
    if isinstance(kwargs.get("out"), torch.Tensor):  # the out= forms: the output's dtype
        dtype = kwargs["out"].dtype
    vals = [a for a in args if isinstance(a, (int, float))]
    vals += [kwargs[k] for k in ("start", "end", "step") if isinstance(kwargs.get(k), (int, float))]
    floating = dtype is not None and dtype.is_floating_point
    return any(isinstance(v, float) and not v.is_integer() for v in vals) and (
        floating or dtype is None
    )


_RANGE_WHY = (
    "arange/range with a fractional start or step rounds start + i * step, which torch's "
    "vector and scalar loops compute differently; build it from an integer arange "
    "(torch.arange(n) * step + start) with covered ops"
)


def _scatter_collides(x, dim, index, src, *_a, **_k) -> bool:
    """Whether two source elements land on one output element (along ``dim``, within a
    slice): only then does scatter_add sum floats, in an order torch's threads pick.
    Without collisions each output is x + one source value: one rounding."""
    if not (isinstance(x, torch.Tensor) and x.dtype.is_floating_point) or index.numel() == 0:
        return False
    if index.size(dim) == 1:
        return False
    s = index.sort(dim).values
    return bool(s.diff(dim=dim).eq(0).any())


def _index_add_collides(x, dim, index, source, *_a, alpha=1, **_k) -> bool:
    """index_add sums floats where an index repeats (and scales by alpha)."""
    if not (isinstance(x, torch.Tensor) and x.dtype.is_floating_point):
        return False
    return alpha != 1 or index.numel() != index.unique().numel()


_COLLIDE_WHY = (
    "its indices repeat, so it sums floats into one output in an order that depends on "
    "threads and indices; accumulate into a dense tensor with a covered op "
    "(e.g. one_hot(index).T @ values)"
)


def _add_relu_scaled(x, other, alpha=1, *_a, **_k) -> bool:
    return alpha != 1 and isinstance(x, torch.Tensor) and x.dtype.is_floating_point


_GUARDED: dict[str, tuple[Callable[..., bool], str]] = {
    "index_put": (_accumulates, _ACCUMULATE_WHY),
    "_index_put_impl": (_accumulates, _ACCUMULATE_WHY),
    "_unsafe_index_put": (_accumulates, _ACCUMULATE_WHY),
    "put": (_accumulates, _ACCUMULATE_WHY),
    "scatter_add": (_scatter_collides, _COLLIDE_WHY),
    "index_add": (_index_add_collides, _COLLIDE_WHY),
    **dict.fromkeys(
        (
            "arange",
            "arange.start",
            "arange.start_step",
            "arange.start_out",
            "arange.out",
            "range",
            "range.step",
            "range.out",
        ),
        (_fractional_range, _RANGE_WHY),
    ),
    "_add_relu.Tensor": (_add_relu_scaled, "add with alpha != 1 runs in the pointwise engine"),
    "_add_relu.Scalar": (_add_relu_scaled, "add with alpha != 1 runs in the pointwise engine"),
}


# --------------------------------------------------------------- namespaces
# Ops outside aten, by namespace: denied with the reason, or native. Any namespace not
# named here (a library's own ops: torchvision::, torchaudio::, ...) is refused op by
# op until someone classifies it.
_NAMESPACES: dict[str, tuple[str, str]] = {
    **dict.fromkeys(
        ("quantized", "_quantized", "quantization", "quantized_decomposed"),
        (
            "denied",
            "quantized kernels: dynamic quantization takes its scale from the whole batch "
            "(its min/max), and the int8 kernels requantize in vendor code whose order is not "
            "fixed; quantize per row or per token with aten ops instead (torchao's int8 "
            "dynamic layout: scale = amax(|x|, dim=-1) / 127, round, torch._int_mm, rescale), "
            "which the mode runs invariantly",
        ),
    ),
    **dict.fromkeys(
        ("mkldnn", "mkldnn_prepacked", "onednn", "mkl"),
        ("denied", "vendor (oneDNN/MKL) kernels pick their blocking and order by shape and CPU"),
    ),
    **dict.fromkeys(
        ("prims", "rngprims", "debugprims", "inductor_prims", "inductor", "static_runtime"),
        ("denied", "compiler-internal ops: run the model eagerly under the mode"),
    ),
    **dict.fromkeys(
        (
            "c10d",
            "_c10d_functional",
            "_c10d_functional_autograd",
            "c10d_functional",
            "symm_mem",
            "_dtensor",
            "fsdp",
            "bucketing",
            "cplib",
        ),  # fmt: skip
        (
            "denied",
            "collectives reduce across processes in an order the backend picks: use "
            "samebits.distributed.all_reduce_exact",
        ),
    ),
    **dict.fromkeys(
        ("onnx", "onnx_symbolic"),
        ("denied", "ONNX export's symbolic ops: run the model eagerly under the mode"),
    ),
    "torch_attn": (
        "denied",
        "variable-length attention (flash kernels over packed sequences): call "
        "scaled_dot_product_attention with a padding mask, which the mode covers",
    ),
    "torch_nn": (
        "denied",
        "linear + cross-entropy fused in chunks of the batch, whose size sets the order of "
        "the loss's sum: call F.linear then F.cross_entropy, which the mode covers",
    ),
    "ao": ("native", "activation offloading: copies a tensor to another device and back"),
    "flex_lib": ("denied", "flex attention internals: call scaled_dot_product_attention"),
    "flex_gemm": ("denied", "compiled (flex) GEMM internals: run the model eagerly under the mode"),
    "_inductor_test": ("denied", "torch's own test ops"),
    "transformers": (
        "denied",
        "transformers' MoE fallback (grouped_mm_fallback: a loop of torch.mm, SEQ order, "
        "where aten::_grouped_mm takes linear's order, so a token's bits would depend on "
        "the path): transformers takes it only where torch._grouped_mm is unusable (torch "
        "<= 2.10 with unaligned weights, or while compiling with non-bfloat16 weights); "
        "with torch 2.13+ run eagerly, as the mode runs compiled models, it calls "
        "aten::_grouped_mm, which the mode covers",
    ),
    "profiler": ("native", "records profiling events; no arithmetic"),
    "export": ("native", "torch.export's tensor-subclass plumbing; no arithmetic"),
    "sparse": ("denied", "quantized sparse kernels (qlinear): no invariant kernel"),
    "_test": ("denied", "torch's own test ops"),
    "_native": ("denied", "torch-internal native ops, reached only from compiled code"),
}

# Factories: ops with no tensor argument that fill a new tensor with a constant, leave
# it uninitialized, or read it from a file (exact); arange and range compute start +
# i * step, which is exact for integral start and step (guarded below).
_FACTORIES = (
    "empty", "empty.memory_format", "empty.names", "empty_strided", "empty_permuted",
    "zeros", "zeros.names", "ones", "ones.names", "full", "full.names", "scalar_tensor",
    "eye", "eye.m", "_efficientzerotensor", "_empty_affine_quantized",
    "_empty_per_channel_affine_quantized", "empty_quantized", "from_file", "tril_indices",
    "triu_indices", "_make_dep_token",
)  # fmt: skip

_REFUSED_WHY = (
    "samebits has not classified this op, so it refuses it rather than risk a result that "
    "depends on the batch, the threads or the CPU (an op a new torch or a library adds is "
    "refused until it is classified)"
)


# --------------------------------------------------------------------- rules
def schema_of(qualname: str):
    """The FunctionSchema of ``ns::name.overload``, or None if no such op."""
    ns, _, rest = qualname.partition("::")
    base, _, ov = rest.partition(".")
    try:
        return torch._C._get_schema(f"{ns}::{base}", ov)
    except RuntimeError:
        return None


def _is_tensor_type(t) -> bool:
    return "Tensor" in str(t)


def _tags(qualname: str) -> list:
    ns, _, rest = qualname.partition("::")
    base, _, ov = rest.partition(".")
    return torch._C._get_operation_overload(f"{ns}::{base}", ov)[2]


def _schema_rule(qualname: str, schema) -> tuple[str, str] | None:
    """Native by the op's schema: views (every output aliases an input, nothing is
    written), in-place changes of view metadata (``t_``, ``squeeze_``: tagged
    inplace_view), and ops that return no tensor (sizes, scalars read out, assertions)."""
    writes = any(a.alias_info is not None and a.alias_info.is_write for a in schema.arguments)
    if writes and schema.name.endswith("_") and torch.Tag.inplace_view in _tags(qualname):
        return "native", "changes a tensor's view metadata in place; no arithmetic"
    if schema.name.endswith("_copy") and torch.Tag.view_copy in _tags(qualname):
        return "native", "the copy of a view: data movement, no arithmetic"
    if schema.returns and not writes and all(r.alias_info is not None for r in schema.returns):
        return "native", "a view of its input (every output aliases an input); no arithmetic"
    if not writes and not any(_is_tensor_type(r.type) for r in schema.returns):
        return "native", "returns no tensor (a size, a flag or a scalar read out exactly)"
    return None


_FAMILIES: dict[str, str] = {}


def preload_families(families: dict[str, str]) -> None:
    """_families()'s result read from the mode's plan cache (keyed by torch's build and
    registry, so it is the mapping _families would compute)."""
    if not _FAMILIES:
        _FAMILIES.update(families)


def _families() -> dict[str, str]:
    """See _compute_families; computed once per process, or read from the plan cache."""
    if not _FAMILIES:
        _FAMILIES.update(_compute_families())
    return _FAMILIES


def _compute_families() -> dict[str, str]:
    """Every in-place and out= aten overload, mapped to the functional overload that
    names its family (``add_.Tensor`` -> ``add.Tensor``, ``exp.out`` -> ``exp``): an
    in-place op is its functional's name with ``_``; an out= op is the overload of the
    same name whose positional arguments are its own (names and types), without the
    written ones."""
    by_base: dict[str, list[tuple[str, tuple, tuple, bool]]] = {}
    for full in torch._C._dispatch_get_all_op_names():
        ns, _, rest = full.partition("::")
        if ns != "aten":
            continue
        base, _, ov = rest.partition(".")
        schema = schema_of(full)
        if schema is None:
            continue
        args = schema.arguments
        written = [a.alias_info is not None and a.alias_info.is_write for a in args]
        every = tuple((a.name, str(a.type)) for a in args)  # alias annotations dropped
        unwritten = tuple(sig for sig, w in zip(every, written, strict=True) if not w)
        by_base.setdefault(base, []).append((ov, every, unwritten, any(written)))
    fam: dict[str, str] = {}
    for base, overloads in by_base.items():
        # an out= form's arguments, less the written ones, are its functional's
        functional = {every: ov for ov, every, _, writes in overloads if not writes}
        for ov, every, unwritten, writes in overloads:
            if not writes:
                continue
            name = f"{base}.{ov}" if ov else base
            if base.endswith("_") and not base.endswith("__"):
                # an in-place form: the functional of the same name without "_" and the
                # same arguments (its own self is written)
                parent = base[:-1]
                match = [o for o, e, _, w in by_base.get(parent, ()) if not w and e == every]
                if match:
                    fam[name] = f"{parent}.{match[0]}" if match[0] else parent
            elif unwritten in functional:
                f = functional[unwritten]
                fam[name] = f"{base}.{f}" if f else base
    return fam


def table_name(name: str, *tables) -> str:
    """The key under which ``name`` (an aten overload) is found in ``tables``: its own,
    else its family's (see _families)."""
    if any(name in t for t in tables):
        return name
    return _families().get(name, name)


def _pointwise_base(name: str) -> str:
    """``add_.Tensor`` -> ``add``: the base name NATIVE_POINTWISE lists."""
    base = name.partition(".")[0]
    return base[:-1] if base.endswith("_") and not base.endswith("__") else base


@functools.cache
def classify(qualname: str) -> tuple[str, str]:
    """(kind, reason) for ``ns::name.overload``; kind is covered, guarded, native,
    denied, composite (an unclassified op whose composite kernel calls other ops) or
    refused."""
    ns, _, name = qualname.partition("::")
    if ns != "aten":
        kind, why = _NAMESPACES.get(ns, ("refused", _REFUSED_WHY))
        schema = schema_of(qualname)
        if kind == "refused" and schema is not None:
            kind, why = _schema_rule(qualname, schema) or (kind, why)
        return kind, why
    own, name = name, _families().get(name, name)
    for n in dict.fromkeys((own, name)):  # the overload's own entry, then its family's
        if n in _COVERED or n in pointwise.ATEN:
            return "covered", "invariant kernel"
        if n in _GUARDED:
            return "guarded", _GUARDED[n][1]
        if n in _DENIED:
            return "denied", _DENIED[n]
        if n in NATIVE_OK:
            return "native", NATIVE_OK[n]
        if n in _FACTORIES:
            return "native", "a factory: a constant fill, uninitialized memory or a file's bytes"
    base = _pointwise_base(name)
    if base in NATIVE_POINTWISE:
        return "native", NATIVE_POINTWISE[base]
    schema = schema_of(qualname)
    if schema is not None:
        rule = _schema_rule(qualname, schema)
        if rule is not None:
            return rule
    bare = name.partition(".")[0]
    for matches, why in _NAME_RULES:
        if matches(bare):
            return "denied", why
    if qualname in registered(
        "CompositeImplicitAutograd",
        "CompositeExplicitAutograd",
        "CompositeExplicitAutogradNonFunctional",
    ):
        return "composite", _COMPOSITE_WHY
    if torch.Tag.pointwise in _tags(qualname) or torch.Tag.pointwise in _tags(f"aten::{name}"):
        return "denied", _FORMULA_WHY
    return "refused", _REFUSED_WHY


# Name rules, for whole classes of ops: (predicate on the base name, reason), denied.
_BACKEND_PREFIXES = (
    "cudnn_", "_cudnn", "miopen_", "mps_", "_mps", "mkldnn_", "_mkldnn", "_triton",
    "_efficient_attention", "_flash_attention", "_scaled_dot_product_", "_cslt",
    "_sparse_semi_structured", "_to_sparse_semi_structured", "_fill_mem_eff",
    "lstm_mps", "_lstm_mps", "_thnn_fused", "_conv_depthwise2d", "conv_depthwise3d",
    "_nnpack", "thnn_conv", "slow_conv",
)  # fmt: skip
_NAME_RULES: tuple[tuple[Callable[[str], bool], str], ...] = (
    (
        lambda b: b.startswith(_BACKEND_PREFIXES),
        "a backend's own kernel (cuDNN, MIOpen, MPS, oneDNN, Triton, fused attention or "
        "convolution backends): the mode covers the op that dispatches to it "
        "(scaled_dot_product_attention, convolution, linear, lstm)",
    ),
    (
        lambda b: "sparse" in b or b in ("_coalesce", "hspmm", "sspaddmm", "_to_dense", "_spsolve"),
        "sparse tensors have no invariant kernel: convert with .to_dense()",
    ),
    (
        lambda b: "_backward" in b,
        "a backward kernel without an invariant formula yet: its gradient sums over "
        "positions, windows or rows in an order torch picks by shape and threads",
    ),
    (
        lambda b: b.startswith(("_fused_adam", "_fused_sgd", "_fused_adagrad")),
        "a fused optimizer step: use the optimizer with fused=False and foreach=False, whose "
        "ops the mode runs",
    ),
    (
        lambda b: (
            b.startswith(("quantized_", "_weight_int4pack", "_mixed_dtypes_linear"))
            or "fake_quant" in b
            or "_fq_helper" in b
        ),
        "a quantized kernel whose requantization order is not fixed: quantize per row with "
        "aten ops (see samebits.covered_ops()['quantized::linear_dynamic'])",
    ),
)
_FORMULA_WHY = (
    "a floating elementwise function without a samebits formula yet (torch computes it "
    "with a libm or SLEEF routine whose bits depend on the CPU and on the element's "
    "position in the vector loop)"
)

_COMPOSITE_WHY = (
    "a composite: torch's backend-independent kernel runs as the ops it calls, each of "
    "which the mode classifies on its own"
)


@functools.cache
def registered(*keys: str) -> frozenset[str]:
    """The ops (``ns::name.overload``; the default overload without a suffix) with a
    kernel for any of the dispatch keys ``keys`` (in this torch, at first call)."""
    out: set[str] = set()
    for key in keys:
        out.update(torch._C._dispatch_get_registrations_for_dispatch_key(key))
    return frozenset(out)


@functools.cache  # a pure function of torch's op registry
def out_and_inplace(name: str) -> tuple[list[str], list[str]]:
    """Existing ``.out`` and in-place overloads of a functional aten op name."""
    base, _, overload = name.partition(".")
    packet = getattr(torch.ops.aten, base, None)
    outs, inplace = [], []
    if packet is not None and (overload or "default") in packet.overloads():
        func_schema = getattr(packet, overload or "default")._schema
        func_args = [(a.name, str(a.type)) for a in func_schema.arguments if not a.kwarg_only]
        for ov in packet.overloads():
            schema = getattr(packet, ov)._schema
            returns_alias = any(
                a.alias_info is not None and a.alias_info.is_write for a in schema.arguments
            )
            if not returns_alias or ov == (overload or "default"):
                continue
            # the same positional arguments, names and types (pow.Scalar_out has pow's
            # names but a Scalar base: it is not an out= form of pow.Tensor_Tensor)
            if [(a.name, str(a.type)) for a in schema.arguments if not a.kwarg_only] == func_args:
                outs.append(f"{base}.{ov}")
    inplace_packet = getattr(torch.ops.aten, base + "_", None)
    if inplace_packet is not None and not base.startswith("_"):
        ov = overload or "default"
        if ov in inplace_packet.overloads():
            inplace.append(f"{base}_" + (f".{overload}" if overload else ""))
    return outs, inplace


def op_exists(name: str) -> bool:
    """Whether ``name`` (an aten overload, ``base.overload``) is in this torch."""
    return schema_of(f"aten::{name}") is not None


def all_ops() -> list[str]:
    """Every op the dispatcher knows now, in every namespace (``ns::name.overload``)."""
    return sorted(torch._C._dispatch_get_all_op_names())


def covered_ops() -> dict[str, str]:
    """Every op the dispatcher knows, in every namespace, and what the mode does with it:
    "invariant kernel", "native, denied when: why", "native (invariant by
    construction): why", "denied: why" or "refused: why"."""
    words = {
        "covered": lambda why: why,
        "guarded": lambda why: f"native, denied when {why}",
        "native": lambda why: f"native (invariant by construction): {why}",
        "denied": lambda why: f"denied: {why}",
        "composite": lambda why: f"composite: {why}",
        "refused": lambda why: f"refused: {why}",
    }
    table = {}
    for full in all_ops():  # default overloads are named without a suffix (aten::mm)
        kind, why = classify(full)
        table[full] = words[kind](why)
    return dict(sorted(table.items()))


def refusal(qualname: str, args, hint: str | None = None) -> NotInvariantError:
    """The NotInvariantError for ``qualname`` called with ``args``, naming the first
    tensor's dtype and shape."""
    dtype, shape = describe(args)
    if hint is None:
        kind, hint = classify(qualname)
    return NotInvariantError(qualname, dtype, shape, hint)


def describe(args) -> tuple[object, object]:
    """The dtype and shape of the first tensor in ``args`` (lists searched too)."""
    for a in args:
        if isinstance(a, torch.Tensor):
            return a.dtype, a.shape
        if isinstance(a, (list, tuple)):
            for b in a:
                if isinstance(b, torch.Tensor):
                    return b.dtype, b.shape
    return None, None
