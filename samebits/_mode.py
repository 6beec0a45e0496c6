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
installs, the last to leave removes the library, which restores exactly the
kernels registered before (ours are dropped, nothing else is touched).

Thread semantics (documented and tested): the mode is per thread. A thread that
did not enter it is unaffected, apart from one Python call per covered op while
another thread holds the mode. Threads started inside a block do not inherit it.
``batch_invariant(False)`` inside an enabled block turns it off for that block.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from samebits.errors import NotInvariantError
from samebits.ops import (
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


def _convolution_full(x, w, b, stride, padding, dilation, transposed, output_padding, groups,
                      *_flags):
    """``aten::_convolution``: ``convolution`` plus backend flags that change nothing here."""
    return conv.convolution(x, w, b, stride, padding, dilation, transposed, output_padding, groups)


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
    "rsqrt": _rsqrt,
    "convolution": conv.convolution,
    "_convolution": _convolution_full,
    "native_batch_norm": channel_norms.native_batch_norm,
    "_native_batch_norm_legit_no_training": lambda x, w, b, rm, rv, momentum, eps: (
        channel_norms.native_batch_norm(x, w, b, rm, rv, False, momentum, eps)
    ),
    "native_group_norm": channel_norms.native_group_norm,
    "_weight_norm_interface": channel_norms.weight_norm_interface,
    "avg_pool2d": pooling.avg_pool2d,
    "avg_pool3d": pooling.avg_pool3d,
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
    "_fft_r2c": "no invariant FFT",
    "_fft_c2r": "no invariant FFT",
    "_fft_c2c": "no invariant FFT",
}


def covered_ops() -> dict[str, str]:
    """Aten ops the mode handles, and how: "invariant kernel", "denied: why", or
    "native (invariant by construction): why"."""
    table = {f"aten::{n}": "invariant kernel" for n in _COVERED}
    table.update({f"aten::{n}": f"denied: {why}" for n, why in _DENIED.items()})
    table.update(
        {
            f"aten::{n}": f"native (invariant by construction): {why}"
            for n, why in _NATIVE_OK.items()
        }
    )
    return dict(sorted(table.items()))


# Ops left native on purpose because torch's own kernel already has a fixed order.
_NATIVE_OK: dict[str, str] = {
    "cumsum": "CPU cumsum is a sequential scan per row (double accumulator)",
    "amax": "max is exact in any order",
    "amin": "min is exact in any order",
    "max": "max is exact in any order",
    "min": "min is exact in any order",
    "argmax": "exact; ties resolve to the first index",
    "argmin": "exact; ties resolve to the first index",
    "embedding": "a gather, no arithmetic",
    "upsample_nearest1d": "a gather, no arithmetic",
    "upsample_nearest2d": "a gather, no arithmetic",
    "upsample_nearest3d": "a gather, no arithmetic",
    "_upsample_nearest_exact1d": "a gather, no arithmetic",
    "_upsample_nearest_exact2d": "a gather, no arithmetic",
    "_upsample_nearest_exact3d": "a gather, no arithmetic",
    "max_pool2d_with_indices": "max is exact in any order",
    "max_pool3d_with_indices": "max is exact in any order",
}


# ------------------------------------------------------------- thread state
@dataclass(frozen=True)
class _Frame:
    enabled: bool
    on_unsupported: str


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
            same_args = [a.name for a in schema.arguments if not a.kwarg_only]
            func_schema = getattr(packet, overload or "default")._schema
            if same_args == [a.name for a in func_schema.arguments if not a.kwarg_only]:
                outs.append(f"{base}.{ov}")
    inplace_packet = getattr(torch.ops.aten, base + "_", None)
    if inplace_packet is not None and not base.startswith("_"):
        ov = overload or "default"
        if ov in inplace_packet.overloads():
            inplace.append(f"{base}_" + (f".{overload}" if overload else ""))
    return outs, inplace


def _make_kernel(name: str, fn: Callable, variant: str, key: str = "CPU") -> Callable:
    fallback = _fallbacks[name if key == "CPU" else f"{name}@{key}"]

    def native(keyset, args, kwargs):
        return fallback.call_boxed(keyset, *args, **kwargs)

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


def _deny_kernel(name: str, why: str) -> Callable:
    def fn(*args, **kwargs):
        dtype, shape = _describe(args)
        if dtype is not None and not dtype.is_floating_point:
            return NotImplemented
        raise NotInvariantError(f"aten::{name}", dtype, shape, why)

    return fn


def _install() -> torch.library.Library:
    lib = torch.library.Library("aten", "IMPL")
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
    with warnings.catch_warnings():
        # torch warns when a CPU kernel is overridden; that is the point here
        warnings.simplefilter("ignore")
        for name, fn, variant in plan:
            if not _op_exists(name):
                continue
            _fallbacks[name] = torch.library.get_kernel(f"aten::{name}", "CPU")
            lib.impl(name, _make_kernel(name, fn, variant), "CPU", with_keyset=True)
        for name, fn in _COVERED_NESTED.items():
            if _op_exists(name):
                _fallbacks[f"{name}@NestedTensorCPU"] = torch.library.get_kernel(
                    f"aten::{name}", "NestedTensorCPU"
                )
                kernel = _make_kernel(name, fn, "functional", "NestedTensorCPU")
                lib.impl(name, kernel, "NestedTensorCPU", with_keyset=True)
    return lib


def _op_exists(name: str) -> bool:
    base, _, overload = name.partition(".")
    packet = getattr(torch.ops.aten, base, None)
    return packet is not None and (overload or "default") in packet.overloads()


def _acquire() -> None:
    global _holders, _lib
    with _lock:
        if _holders == 0:
            _lib = _install()
        _holders += 1


def _release() -> None:
    global _holders, _lib
    with _lock:
        _holders -= 1
        if _holders == 0 and _lib is not None:
            _lib._destroy()
            _lib = None
            _fallbacks.clear()


def installed() -> bool:
    """Whether samebits' kernels are registered with torch right now (any thread)."""
    return _lib is not None


class batch_invariant(contextlib.ContextDecorator):
    """Run covered CPU ops with invariant kernels in this thread.

    Usable as ``with batch_invariant():`` and as ``@batch_invariant()``. Nestable
    and re-entrant; on exit, by return or by exception, the previous state of the
    thread and the previous torch registrations are restored exactly.

    ``on_unsupported``: "raise" (default) raises NotInvariantError when a
    reduction-bearing op without an invariant kernel runs; "warn" emits a
    NotInvariantWarning and runs the native (variant) kernel.
    """

    def __init__(self, enabled: bool = True, *, on_unsupported: str = "raise") -> None:
        if on_unsupported not in POLICIES:
            raise ValueError(f"on_unsupported={on_unsupported!r}; expected one of {POLICIES}")
        self.enabled = bool(enabled)
        self.on_unsupported = on_unsupported

    def __enter__(self) -> batch_invariant:
        if self.enabled:
            _acquire()
        _tls.stack.append(_Frame(self.enabled, self.on_unsupported))
        return self

    def __exit__(self, *exc) -> None:
        frame = _tls.stack.pop()
        if frame.enabled:
            _release()
