"""The pointwise engine: every floating elementwise op that is not one correctly rounded
IEEE-754 operation, in samebits' own formula (samebits/_native/pointwise.c).

One definition per op: ``ATEN`` maps each functional aten overload to a kernel built
from a ``Spec`` (the engine op, which arguments are its operands, which are its scalar
parameters). The mode derives the in-place and ``out=`` forms from the functional one,
so the three forms compute the same formula.

Semantics, the same for every op:

* dtypes follow torch's type promotion; integer and bool inputs of an op that keeps
  them (``add``) run torch's exact kernel, and ops that turn them into floats
  (``exp(int)``) compute in the default float dtype, as torch does;
* tensor operands are cast to the result dtype first (as torch's TensorIterator does);
  Python scalars and the scalar parameters are rounded to float32 once;
* float32 and bfloat16 are computed in float32 (bfloat16 widened exactly, the result
  rounded once); float16 is widened to float32 exactly and the float32 result rounded
  once to float16; float64 and complex numbers have no invariant formula and raise;
* a NaN result is the canonical quiet NaN (bits 0x7fc00000, or its bfloat16/float16
  rounding).

Each kernel compares with ``reference`` (the op in float64) in tests.
"""

from __future__ import annotations

import ctypes
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from samebits import _native
from samebits.errors import NotInvariantError, UnsupportedInputError
from samebits.ops._common import ieee_sqrt


@functools.cache
def _codes() -> dict[str, tuple[int, int, int]]:
    """Engine op name -> (code, operands, parameters), from the library's own list."""
    lib = _native.lib()
    buf = ctypes.create_string_buffer(lib.sb_pw_ops(None, 0) + 1)
    lib.sb_pw_ops(buf, len(buf))
    out = {}
    for i, entry in enumerate(buf.value.decode().strip(";").split(";")):
        name, n, k = entry.split(":")
        out[name] = (i, int(n), int(k))
    return out


def _is_dense(t: torch.Tensor) -> bool:
    """Whether t's elements fill its storage span exactly once, in some order of its
    dimensions (contiguous, channels-last, transposed...)."""
    if t.is_contiguous():
        return True
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride(), strict=True), key=lambda p: p[1]):
        if size == 1:
            continue
        if stride != expected:
            return False
        expected *= size
    return True


def _scalar_dtype(v) -> torch.dtype:
    if isinstance(v, bool):
        return torch.bool
    if isinstance(v, int):
        return torch.int64
    if isinstance(v, complex):
        return torch.complex64 if torch.get_default_dtype() == torch.float32 else torch.complex128
    return torch.get_default_dtype()


def _promote_group(dtypes: list[torch.dtype]) -> torch.dtype | None:
    out = None
    for d in dtypes:
        out = d if out is None else torch.promote_types(out, d)
    return out


def _combine(higher: torch.dtype | None, lower: torch.dtype | None) -> torch.dtype | None:
    """c10's combine_categories: a lower-priority group changes the result only when it
    is of a higher category (bool < integer < floating < complex)."""
    if higher is None:
        return lower
    if lower is None or higher.is_complex:
        return higher
    if lower.is_complex:
        return higher.to_complex() if higher.is_floating_point else lower
    if higher.is_floating_point:
        return higher
    if higher == torch.bool or lower.is_floating_point:
        return torch.promote_types(higher, lower)
    return higher


def promote(operands: tuple) -> torch.dtype:
    """torch's elementwise type promotion: tensors with dimensions, then 0-dim tensors,
    then Python scalars, each group changing the result only across categories."""
    dims = [o.dtype for o in operands if isinstance(o, torch.Tensor) and o.dim() > 0]
    zero = [o.dtype for o in operands if isinstance(o, torch.Tensor) and o.dim() == 0]
    wrapped = [_scalar_dtype(o) for o in operands if not isinstance(o, torch.Tensor)]
    return _combine(_promote_group(dims), _combine(_promote_group(zero), _promote_group(wrapped)))


def _result_dtype(op: str, operands: tuple, int_to_float: bool) -> torch.dtype | None:
    """The dtype the op returns (torch's promotion); None for integer and bool results
    that keep their type (torch's kernel is exact there)."""
    tensors = [o for o in operands if isinstance(o, torch.Tensor)]
    d = tensors[0].dtype
    if d.is_floating_point and all(
        (o.dtype == d) if isinstance(o, torch.Tensor) else isinstance(o, (int, float))
        for o in operands
    ):
        res = d  # the common case: one floating dtype, real Python scalars
    else:
        res = promote(operands)
    if res.is_complex:
        raise NotInvariantError(
            f"aten::{op}", res, tensors[0].shape, "complex numbers have no invariant formula"
        )
    if not res.is_floating_point:
        if not int_to_float:
            return None
        res = torch.get_default_dtype()
    if res == torch.float64:
        raise NotInvariantError(
            f"aten::{op}",
            res,
            tensors[0].shape,
            "float64 has no invariant formula: compute in float32 or bfloat16",
        )
    return res


_ENGINE_DTYPES = (torch.float32, torch.bfloat16)  # the dtypes the engine reads and writes
_I3 = ctypes.c_int * 3


def _run_same(engine_op: str, operands: tuple, params: tuple, name: str):
    """run()'s common case with less Python: every tensor operand on the CPU with one
    dtype (float32 or bfloat16), one shape, one contiguous layout and at least one
    element, the other operands Python floats or ints (each rounded once to float32 and
    broadcast, as run() does). The C call and the output are run()'s own for these
    operands; None for any other case, which run() then takes."""
    x = None
    for o in operands:
        if type(o) is torch.Tensor:
            x = o
            break
    if x is None:
        return None
    dt = x.dtype
    if dt not in _ENGINE_DTYPES or x.device.type != "cpu" or not x.is_contiguous():
        return None
    if x.numel() < 1:
        return None
    code_dt = _native.dtype_code(dt)
    shape, stride = x.shape, x.stride()
    ptrs, dts, strides, keep = [], [], [], []
    for o in operands:
        if type(o) is torch.Tensor:
            if o.dtype is not dt or o.device.type != "cpu":
                return None
            if o is not x and (o.shape != shape or o.stride() != stride):
                return None
            ptrs.append(o.data_ptr())
            dts.append(code_dt)
            strides.append(1)
        elif type(o) is float or type(o) is int:
            v = ctypes.c_float(float(o))  # _scalar_operand's value, without a tensor
            keep.append(v)
            ptrs.append(ctypes.addressof(v))
            dts.append(_native.F32)
            strides.append(0)
        else:
            return None
    code, arity, nparams = _lookup(engine_op, name)
    if len(operands) != arity:
        return None
    y = torch.empty_like(x)
    _call(engine_op, code, arity, nparams, x.numel(), ptrs, dts, strides, y, code_dt, params)
    return y


def _scalar_operand(v) -> torch.Tensor:
    """A Python number as an operand: one float32 value, rounded once, broadcast."""
    return torch.tensor([float(v)], dtype=torch.float32)


def _call(engine_op, code, arity, nparams, n, ptrs, dts, strides, y, odt, params) -> None:
    """The engine's C call: y[i] = op(operands[i]; params) for i < n."""
    pad = [0] * (3 - arity)
    pv = (ctypes.c_double * max(1, nparams))(*[float(p) for p in params])
    status = _native.lib().sb_pointwise(
        code, n, ptrs[0], ptrs[1] if arity > 1 else None, ptrs[2] if arity > 2 else None,
        _I3(*(dts + pad)), _I3(*(strides + pad)), y.data_ptr(), odt, pv, nparams,
        _native.nthreads(),
    )  # fmt: skip
    if status != 0:
        raise AssertionError(f"sb_pointwise({engine_op}) returned {status}")


def run(
    engine_op: str,
    operands: tuple,
    params: tuple = (),
    *,
    aten: str | None = None,
    int_to_float: bool = True,
) -> torch.Tensor:
    """engine_op over broadcast ``operands`` (tensors or Python numbers) with scalar
    ``params``; NotImplemented where torch's own kernel is exact (integer results)."""
    name = aten or engine_op
    fast = _run_same(engine_op, operands, params, name)
    if fast is not None:
        return fast
    for o in operands:
        if isinstance(o, torch.Tensor) and o.device.type != "cpu":
            return NotImplemented  # the mode is CPU-only: other devices keep torch's kernels
    res = _result_dtype(name, operands, int_to_float)
    if res is None:
        return NotImplemented
    code, arity, nparams = _lookup(engine_op, name)
    cd = torch.float32 if res == torch.float16 else res  # the dtype the engine writes
    shape: tuple[int, ...] = ()
    tensors = [o for o in operands if isinstance(o, torch.Tensor)]
    if len(tensors) == 1:
        shape = tuple(tensors[0].shape)
    else:
        shape = tuple(torch.broadcast_shapes(*(t.shape for t in tensors)))
    # the layout of the output: the full-shape operands' own when they share a dense one
    # (channels-last stays channels-last), else contiguous
    full = [t for t in tensors if tuple(t.shape) == shape and t.numel() > 1]
    like = full[0] if full and _is_dense(full[0]) else None
    if like is not None and any(t.stride() != like.stride() for t in full):
        like = None
    keep = []  # tensors the C call reads, kept alive
    ptrs, dts, strides = [], [], []
    for o in operands:
        if isinstance(o, torch.Tensor):
            t = o if o.dtype == cd or o.dtype == res else o.to(res)
            if t.dtype == torch.float16:
                t = t.float()
            if t.numel() == 1:
                t = t.reshape(1).contiguous()
                strides.append(0)
            else:
                if tuple(t.shape) != shape or like is None or t.stride() != like.stride():
                    t = t.expand(shape).contiguous()
                strides.append(1)
        else:
            t = _scalar_operand(o)
            strides.append(0)
        keep.append(t)
        ptrs.append(t.data_ptr())
        dts.append(_native.dtype_code(t.dtype))
    if len(keep) != arity:
        raise AssertionError(f"{engine_op} takes {arity} operands, got {len(keep)}")
    if like is not None and all(
        s == 0 or k.stride() == like.stride() for k, s in zip(keep, strides, strict=True)
    ):
        y = torch.empty_like(like, dtype=cd)
    else:
        y = torch.empty(shape, dtype=cd)
        if like is not None:  # an operand was made contiguous: every operand must be
            keep = [
                k if s == 0 or k.is_contiguous() else k.contiguous()
                for k, s in zip(keep, strides, strict=True)
            ]
            ptrs = [k.data_ptr() for k in keep]
    if y.numel():
        _call(engine_op, code, arity, nparams, y.numel(), ptrs, dts, strides, y,
              _native.dtype_code(cd), params)  # fmt: skip
    return y if res == cd else y.to(res)


def _lookup(engine_op: str, aten: str) -> tuple[int, int, int]:
    try:
        return _codes()[engine_op]
    except KeyError:
        raise NotInvariantError(
            f"aten::{aten}", hint=f"this build of samebits' kernels has no {engine_op!r} formula"
        ) from None


def _c(v) -> float:
    """A scalar parameter as the float32 value the formulas use: float(v) rounded once to
    float32 by C's conversion, as torch's double-to-float is (inf past float32's range)."""
    return ctypes.c_float(float(v)).value


# ------------------------------------------------------------------ the ops
def _no_params(*_a, **_k) -> tuple:
    return ()


def _aten(name: str):
    base, _, ov = name.partition(".")
    return getattr(getattr(torch.ops.aten, base), ov or "default")


@dataclass(frozen=True)
class Param:
    """One engine parameter, read from the call's arguments: ``scale * float(arg)``
    (times ``float(times)`` where named), rounded once to float32 when ``f32``; the
    constant ``value`` where ``arg`` is None, or where the argument is None and
    ``none_ok``; below ``minimum`` the call is refused (UnsupportedInputError). One
    description serves the Python kernel (``param_reader``) and the mode key's C++ kernel
    (``param_codes``), so both read the same floats."""

    arg: str | None = None
    value: float = 0.0
    scale: float = 1.0
    times: str | None = None
    f32: bool = True
    minimum: float | None = None
    none_ok: bool = False


def param_reader(aten_name: str, params: tuple[Param, ...]) -> Callable[..., tuple]:
    """The Python function of ``params`` for ``aten_name``'s arguments (positional or by
    name, schema defaults where absent)."""
    schema = _aten(aten_name)._schema
    index = {a.name: i for i, a in enumerate(schema.arguments)}
    default = {a.name: a.default_value for a in schema.arguments if a.has_default_value()}

    def arg(name, args, kwargs):
        i = index[name]
        if i < len(args):
            return args[i]
        return kwargs[name] if name in kwargs else default[name]

    def read(*args, **kwargs) -> tuple:
        out = []
        for p in params:
            v = None if p.arg is None else arg(p.arg, args, kwargs)
            if v is None:
                if p.arg is not None and not p.none_ok:
                    raise UnsupportedInputError(f"aten::{aten_name}: {p.arg} must be a number")
                out.append(p.value)
                continue
            f = float(v) * p.scale
            if p.times is not None:
                f = f * float(arg(p.times, args, kwargs))
            if p.minimum is not None and f < p.minimum:
                raise UnsupportedInputError(
                    f"aten::{aten_name}: {p.arg} must be >= {p.minimum:g}, got {v}"
                )
            out.append(_c(f) if p.f32 else f)
        return tuple(out)

    return read


def param_codes(aten_name: str, params: tuple[Param, ...]) -> str:
    """``params`` for the C++ kernel, one ';'-separated field per parameter:
    arg index (-1: the constant), value, scale, times index (-1: none), f32, has minimum,
    minimum, none_ok (floats as exact hex)."""
    index = {a.name: i for i, a in enumerate(_aten(aten_name)._schema.arguments)}
    fields = []
    for p in params:
        fields.append(
            ",".join(
                [
                    str(-1 if p.arg is None else index[p.arg]),
                    float(p.value).hex(),
                    float(p.scale).hex(),
                    str(-1 if p.times is None else index[p.times]),
                    str(int(p.f32)),
                    str(int(p.minimum is not None)),
                    float(p.minimum or 0.0).hex(),
                    str(int(p.none_ok)),
                ]
            )
        )
    return ";".join(fields)


@dataclass(frozen=True)
class Spec:
    """How an aten overload maps onto an engine op: ``operands`` picks the tensor (or
    Python number) operands from the call's arguments, ``params`` the scalar
    parameters (floats: a tuple of Param, or a function of the arguments where no
    Param describes them), ``engine`` the engine op (or a function of the arguments)."""

    engine: str | Callable[..., str]
    operands: Callable[..., tuple]
    params: Callable[..., tuple] | tuple[Param, ...] = _no_params
    int_to_float: bool = True
    reference: Callable | None = None
    # the mode key's C++ check (samebits/_keyshim.py) for an op whose engine is
    # chosen per call: "alpha_one" (torch's kernel when alpha == 1), "not_reduced"
    # (torch's kernel unless the first tensor is bfloat16/float16 or one is complex)
    fast: str | None = None
    # for an engine chosen by arguments past the operands: the engine op when they are
    # at their schema defaults (the C++ kernel checks that they are)
    default_engine: str | None = None


def _kernel(aten_name: str, spec: Spec) -> Callable:
    read = spec.params
    if isinstance(read, tuple):
        read = param_reader(aten_name, read)

    def kernel(*args, **kwargs):
        engine = spec.engine(*args, **kwargs) if callable(spec.engine) else spec.engine
        if engine is None:
            return NotImplemented
        return run(
            engine,
            spec.operands(*args, **kwargs),
            read(*args, **kwargs),
            aten=aten_name,
            int_to_float=spec.int_to_float,
        )

    kernel.__name__ = f"pointwise_{aten_name.replace('.', '_')}"
    return kernel


def _self(x, *a, **k):
    return (x,)


def _two(x, y, *a, **k):
    return (x, y)


def _three(x, y, z, *a, **k):
    return (x, y, z)


def _unary(name: str, ref: Callable | None = None) -> Spec:
    return Spec(name, _self, reference=ref)


def _alpha_op(sign: float) -> Spec:
    """add/sub: torch's own kernel where it is one IEEE operation (alpha == 1, or
    integers), else fma(b, +-alpha, a)."""

    def engine(x, y, alpha=1):
        return None if alpha == 1 else "add"

    return Spec(
        engine, _two, (Param("alpha", scale=sign, f32=False),), int_to_float=False, fast="alpha_one"
    )


def _scaled_reduced(x, y, *_a, **_k) -> bool:
    """A bfloat16 or float16 product or quotient with a Python scalar (or a 0-dim tensor
    of another dtype): torch's functional and in-place forms round the scalar
    differently, so the engine computes it (the scalar rounded to float32)."""
    if type(x) is torch.Tensor and type(y) is torch.Tensor and x.dtype is y.dtype:
        if x.dtype in _PLAIN:  # the common case, decided without building lists
            return False
    tensors = [t for t in (x, y) if isinstance(t, torch.Tensor)]
    if any(t.dtype.is_complex for t in tensors):
        raise NotInvariantError("aten::mul/div", tensors[0].dtype, tensors[0].shape, _COMPLEX_WHY)
    reduced = tensors[0].dtype in (torch.bfloat16, torch.float16)
    return reduced and (
        len(tensors) < 2
        or tensors[0].dtype != tensors[1].dtype
        or (tensors[1].dim() == 0 and tensors[0].dim() > 0)
    )


_PLAIN = frozenset({torch.float32, torch.float64})  # one dtype: torch's kernel, one rounding

_COMPLEX_WHY = (
    "a complex product or quotient is several rounded operations, which torch fuses "
    "differently at each dispatch level (measured: complex64 a * b and a / b differ "
    "between ATEN_CPU_CAPABILITY=default and avx2); multiply the real and imaginary "
    "parts as real tensors"
)


def _muldiv(name: str) -> Spec:
    return Spec(
        lambda x, y, *a, **k: name if _scaled_reduced(x, y) else None,
        _two,
        int_to_float=False,
        fast="not_reduced",
    )


def _rsub_engine(x, y, alpha=1):
    return None if alpha == 1 else "rsub"


# elu's engine parameters: scale, input_scale, negcoef = alpha * scale (each float32)
_ELU = (Param("scale"), Param("input_scale"), Param("alpha", times="scale"))


def _celu_params(x, alpha=1.0):
    if float(alpha) == 0:
        raise UnsupportedInputError("aten::celu: alpha must not be 0 (it divides the input)")
    return (_c(1.0), _c(1.0 / float(alpha)), _c(float(alpha)))


SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946


def _gelu_engine(x, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise UnsupportedInputError(
            f"aten::gelu: approximate={approximate!r}, expected 'none' or 'tanh'"
        )
    return "gelu" if approximate == "none" else "gelu_tanh"


def _gelu_backward_engine(g, x, approximate="none"):
    return "gelu_backward" if _gelu_engine(x, approximate) == "gelu" else "gelu_tanh_backward"


# logit's eps: None (no clamping) is -1 to the formula
_EPS = (Param("eps", value=-1.0, none_ok=True),)


F = torch.nn.functional
ATEN: dict[str, Spec] = {
    **{
        n: _unary(n)
        for n in (
            "exp",
            "exp2",
            "expm1",
            "log",
            "log2",
            "log10",
            "log1p",
            "sin",
            "cos",
            "tan",
            "asin",
            "acos",
            "atan",
            "sinh",
            "cosh",
            "tanh",
            "asinh",
            "acosh",
            "atanh",
            "erf",
            "erfc",
            "erfinv",
            "lgamma",
            "digamma",
            "sigmoid",
            "silu",
            "mish",
            "rsqrt",
            "hardswish",
            "hardsigmoid",
            "sinc",
            "sqrt",
        )
    },
    "log_sigmoid_forward": Spec("logsigmoid", _self),  # (see KERNELS below: a pair)
    "logit": Spec("logit", _self, _EPS),
    "gelu": Spec(_gelu_engine, _self, default_engine="gelu"),
    "elu": Spec("elu", _self, _ELU),
    "celu": Spec("elu", _self, _celu_params),
    "selu": Spec(
        "elu",
        _self,
        (Param(value=_c(SELU_SCALE)), Param(value=1.0), Param(value=_c(SELU_ALPHA * SELU_SCALE))),
    ),
    "softplus": Spec("softplus", _self, (Param("beta"), Param("threshold"))),
    "softshrink": Spec("softshrink", _self, (Param("lambd", minimum=0.0),)),
    "pow.Tensor_Tensor": Spec("pow", _two),
    "pow.Tensor_Scalar": Spec("pow", _two),
    "pow.Scalar": Spec("pow", _two),
    "float_power.Tensor_Tensor": None,
    "atan2": Spec("atan2", _two),
    "fmax": Spec("fmax", _two, int_to_float=False),
    "fmin": Spec("fmin", _two, int_to_float=False),
    "logaddexp": Spec("logaddexp", _two),
    "logaddexp2": Spec("logaddexp2", _two),
    "hypot": Spec("hypot", _two),
    "xlogy.Tensor": Spec("xlogy", _two),
    "xlogy.Scalar_Self": Spec("xlogy", _two),
    "xlogy.Scalar_Other": Spec("xlogy", _two),
    "special_xlog1py": Spec("xlog1py", _two),
    "special_xlog1py.self_scalar": Spec("xlog1py", _two),
    "special_xlog1py.other_scalar": Spec("xlog1py", _two),
    "add.Tensor": _alpha_op(1.0),
    "add.Scalar": _alpha_op(1.0),
    "sub.Tensor": _alpha_op(-1.0),
    "sub.Scalar": _alpha_op(-1.0),
    "rsub.Tensor": Spec(
        _rsub_engine, _two, (Param("alpha", f32=False),), int_to_float=False, fast="alpha_one"
    ),
    "rsub.Scalar": Spec(
        _rsub_engine, _two, (Param("alpha", f32=False),), int_to_float=False, fast="alpha_one"
    ),
    "mul.Tensor": _muldiv("mul"),
    "mul.Scalar": _muldiv("mul"),
    "div.Tensor": _muldiv("div"),
    "div.Scalar": _muldiv("div"),
    "addcmul": Spec(
        "addcmul", _three, lambda x, a, b, value=1: (float(value),), int_to_float=False
    ),
    "addcdiv": Spec(
        "addcdiv", _three, lambda x, a, b, value=1: (float(value),), int_to_float=False
    ),
    "lerp.Scalar": Spec("lerp", _three, int_to_float=False),
    "lerp.Tensor": Spec("lerp", _three, int_to_float=False),
    # backward ops: operand a is the incoming gradient
    "silu_backward": Spec("silu_backward", _two),
    "gelu_backward": Spec(_gelu_backward_engine, _two, default_engine="gelu_backward"),
    "sigmoid_backward": Spec("sigmoid_backward", _two),
    "tanh_backward": Spec("tanh_backward", _two),
    "softplus_backward": Spec("softplus_backward", _two, (Param("beta"), Param("threshold"))),
    "elu_backward": Spec(
        "elu_backward",
        lambda g, alpha, scale, input_scale, is_result, v: (g, v),
        lambda g, alpha, scale, input_scale, is_result, v: (
            _c(alpha),
            _c(scale),
            _c(input_scale),
            1.0 if is_result else 0.0,
        ),
    ),
    "log_sigmoid_backward": Spec("logsigmoid_backward", lambda g, x, buffer: (g, x)),
    "hardswish_backward": Spec("hardswish_backward", _two),
    "hardsigmoid_backward": Spec("hardsigmoid_backward", _two),
    "mish_backward": Spec("mish_backward", _two),
    "logit_backward": Spec("logit_backward", _two, _EPS),
}
del ATEN["float_power.Tensor_Tensor"]
KERNELS: dict[str, Callable] = {name: _kernel(name, spec) for name, spec in ATEN.items()}
_SPEC_KERNELS = dict(KERNELS)  # before the hand-written kernels below replace some


def engine_code(engine_op: str) -> int:
    """An engine op's code in the loaded library."""
    return _codes()[engine_op][0]


def fast_kind(name: str, variant: str) -> tuple[str, str | int, int, str] | None:
    """The mode key's C++ kernel for the ``variant`` form (functional, inplace, out) of
    ``ATEN[name]``, as (kind, engine op or -1, arity, parameters), or None (the Python
    kernel alone):

    * the Spec's ``fast`` check, for every form (each form's Python kernel makes the
      same choice between torch's kernel and the engine); a functional mul/div also
      gets its engine op, for a bfloat16 tensor with a Python number, and a functional
      add/sub/rsub its engine op and alpha's Param, for alpha != 1;
    * "engine" for a functional form built from its Spec, whose aten arguments are
      its engine operands, in order, and then the arguments its Params read (their
      ``param_codes``) or, with ``default_engine``, arguments that the C++ kernel
      requires at their defaults; it returns one tensor. The C++ kernel makes
      _run_same's call.
    """
    spec = ATEN.get(name)
    kernel = KERNELS.get(name)
    if spec is None or (
        kernel is not _SPEC_KERNELS.get(name)
        and not getattr(kernel, "spec_for_engine_dtypes", False)
    ):
        return None  # a hand-written kernel (log_sigmoid_forward's pair)
    if spec.fast == "not_reduced" and variant == "functional":
        engine = name.partition(".")[0]  # mul, div: the scaled case
        return spec.fast, engine, _codes()[engine][1], ""
    if spec.fast == "alpha_one" and variant == "functional":
        engine = spec.engine(None, None, alpha=2)  # the engine op wherever alpha != 1
        return spec.fast, engine, _codes()[engine][1], param_codes(name, spec.params)
    if spec.fast is not None:
        return spec.fast, -1, 0, ""
    engine = spec.engine if isinstance(spec.engine, str) else spec.default_engine
    if variant != "functional" or engine is None:
        return None
    params = () if spec.params is _no_params else spec.params
    if not isinstance(params, tuple) or spec.operands not in (_self, _two, _three):
        return None  # parameters computed by a function: the Python kernel
    code, arity, nparams = _codes().get(engine, (None, 0, 0))
    schema = _aten(name)._schema
    extra = schema.arguments[arity:]
    if code is None or nparams != len(params) or len(schema.returns) != 1:
        return None
    if len(schema.arguments) < arity or {_self: 1, _two: 2, _three: 3}[spec.operands] != arity:
        return None
    read = {n for p in params for n in (p.arg, p.times) if n is not None}
    if params and (engine is not spec.engine or {a.name for a in extra} != read):
        return None  # every argument past the operands is a parameter's
    if (
        not params
        and extra
        and (engine is spec.engine or any(not a.has_default_value() for a in extra))
    ):
        return None  # only a default_engine's op may have arguments past the operands
    return "engine", engine, arity, param_codes(name, params)


def _log_sigmoid_forward(x: torch.Tensor):
    """(logsigmoid(x), buffer): torch's CPU kernel returns a buffer its own backward reads
    (exp(-|x|)); samebits' backward computes from x alone, so the buffer is the
    engine's exp(-|x|) for torch's backward outside the mode. Where x does not require
    grad no backward reads it, and the buffer is empty (as torch's CUDA kernel's is)."""
    out = run("logsigmoid", (x,), (), aten="log_sigmoid_forward")
    if out is NotImplemented or not x.requires_grad:
        return out if out is NotImplemented else (out, x.new_empty((0,)))
    return out, run("exp", (-x.abs(),), (), aten="log_sigmoid_forward")


KERNELS["log_sigmoid_forward"] = _log_sigmoid_forward


def _sqrt(x: torch.Tensor) -> torch.Tensor:
    """sqrt: the engine's (correctly rounded) for float32/bfloat16/float16; float64, which
    the engine does not take, is IEEE-754's sqrt too (numpy's): one correctly rounded
    operation either way, unlike torch's own."""
    if x.dtype == torch.float64 and x.device.type == "cpu":
        return ieee_sqrt(x)
    return run("sqrt", (x,), (), aten="sqrt")


# For float32 and bfloat16 tensors _sqrt is the Spec's kernel, and those are the only
# dtypes the mode key's C++ engine call takes (any other goes to this Python kernel), so
# the functional form may have the C++ kernel (fast_kind).
_sqrt.spec_for_engine_dtypes = True
KERNELS["sqrt"] = _sqrt


# ------------------------------------------------------------- normal draws
def normal_(x: torch.Tensor, mean=0.0, std=1.0, *, generator=None) -> torch.Tensor:
    """``x.normal_(mean, std)``: samebits' normal sampler, the same draws on every CPU.

    Each element takes two uniform draws from the generator (torch's uniform_, exact:
    its bits scaled by a power of two) and the engine's Box-Muller formula:
    ``fma(sqrt(-2 log(1 - u1)) * cospi(2 u2), std, mean)``. The values differ from
    torch's own normal_ (which transforms its draws with SLEEF, differently at each
    dispatch level); they follow the generator's state like torch's do."""
    if not x.dtype.is_floating_point:
        return NotImplemented
    params = (_c(mean), _c(std))
    if not x.is_contiguous():  # every draw at once: (2, *x.shape), two draws each
        u = _draws((2, *x.shape), generator)
        return x.copy_(run("normal", (u[0], u[1]), params, aten="normal_"))
    # the same draws and pairs, with less memory: the first draws of every element, then
    # the second ones a chunk at a time
    u1 = _draws((x.numel(),), generator)
    return _fill_in_chunks(
        x, generator, lambda a, b, u2: run("normal", (u1[a:b], u2), params, aten="normal_")
    )


DRAW_CHUNK = 1 << 16  # the draws per step of the samplers (normal_'s second ones)


def _draws(shape, generator) -> torch.Tensor:
    """torch's uniform draws on [0, 1) in float32 (its bits scaled by a power of two)."""
    return torch.empty(shape, dtype=torch.float32).uniform_(0.0, 1.0, generator=generator)


def _fill_in_chunks(x: torch.Tensor, generator, formula: Callable) -> torch.Tensor:
    """Contiguous ``x`` a chunk of DRAW_CHUNK elements at a time: elements [a, b) are
    ``formula(a, b, u)``, u their next draws. torch's CPU uniform_ takes the generator's
    numbers one element after another, so the chunks continue one sequence: the values
    of drawing every element at once, with one chunk of draws in memory."""
    flat = x.view(-1)
    for a in range(0, x.numel(), DRAW_CHUNK):
        b = min(x.numel(), a + DRAW_CHUNK)
        flat[a:b].copy_(formula(a, b, _draws((b - a,), generator)))
    return x


def uniform_(x: torch.Tensor, low=0.0, high=1.0, *, generator=None, **kw) -> torch.Tensor:
    """``x.uniform_(low, high)``: torch's draw on [0, 1) (its bits scaled by a power of
    two, the same at every dispatch level), then ``fma(u, high - low, low)`` in float32
    (torch's own kernel computes u * (high - low) + low, fused into one FMA at some
    dispatch levels and not at others). [0, 1) itself is torch's draw unchanged."""
    low, high = kw.get("from", low), kw.get("to", high)
    if not x.dtype.is_floating_point or (float(low), float(high)) == (0.0, 1.0):
        return NotImplemented
    params = (_c(float(high) - float(low)),)

    def scaled(a, b, u):
        return run("add", (_c(low), u), params, aten="uniform_")

    if not x.is_contiguous():
        return x.copy_(scaled(0, x.numel(), _draws(x.shape, generator)))
    return _fill_in_chunks(x, generator, scaled)


# --------------------------------------------------- helpers for other kernels
def _one(name: str, x: torch.Tensor, *params) -> torch.Tensor:
    return run(name, (x,), params)


def gelu(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    return run(_gelu_engine(x, approximate), (x,), aten="gelu")


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    return _one("sigmoid", x)


def tanh(x: torch.Tensor) -> torch.Tensor:
    return _one("tanh", x)


def silu(x: torch.Tensor) -> torch.Tensor:
    return _one("silu", x)


def exp(x: torch.Tensor) -> torch.Tensor:
    return _one("exp", x)


def log(x: torch.Tensor) -> torch.Tensor:
    return _one("log", x)


# -------------------------------------------------------------- references
def reference(aten_name: str, *args, **kwargs) -> torch.Tensor:
    """The op in float64 (torch's own kernel), rounded to the result dtype: what the
    engine's formula approximates."""
    op = _aten(aten_name)

    def up(a):
        return a.double() if isinstance(a, torch.Tensor) and a.dtype.is_floating_point else a

    out = op(*[up(a) for a in args], **{k: up(v) for k, v in kwargs.items()})
    first = next(a for a in args if isinstance(a, torch.Tensor))
    if isinstance(out, tuple):
        out = out[0]
    dtype = first.dtype if first.dtype.is_floating_point else torch.get_default_dtype()
    return out.to(dtype)


_ = math  # (math used by callers' constants)
