"""The pointwise sweep's probe: every elementwise aten op (tag ``pointwise``, or an op
of the pointwise engine) with float32, bfloat16 and float16 tensors and a set of scalar
arguments, in its functional, in-place and out= forms, under the mode, on every
samebits kernel path this CPU has. For each case it records one outcome: the SHA-256 of
the result's bits, "raises" (NotInvariantError), or "n/a" (the op does not take these
arguments).

Run as ``python -m tests.pointwise_probe`` it prints the outcomes as JSON, so the test
can compare processes started with every ATEN_CPU_CAPABILITY level. In-process it
also checks, for each case, that every form, every path, and every row computed alone
gives the same bits; a difference is reported as "varies: ..." in the outcome."""

from __future__ import annotations

import hashlib
import json
import sys
import warnings

import torch

import samebits
from samebits import _native, _policy

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
SCALARS = (0.3, 2.5, -1.5, 1e-3, 2, 0.5, -1, 3)
ROWS, COLS = 5, 37  # 37: every row ends in a vector tail


def inputs(dtype: torch.dtype) -> list[torch.Tensor]:
    """Three operands over wide ranges with the special values in them."""
    g = torch.Generator().manual_seed(11)  # uniform draws: the same at every dispatch level
    special = torch.tensor(
        [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            2.0,
            float("inf"),
            -float("inf"),
            float("nan"),
            1e-30,
            88.0,
            -90.0,
            3.0,
            -2.5,
            1e-3,
            0.999,
            -0.999,
            1e4,
        ]  # fmt: skip
    )
    out = []
    for k, scale in enumerate((3.0, 1.5, 0.7)):
        x = (torch.rand(ROWS, COLS, generator=g) * 2 - 1) * (2 * scale)
        if k == 1:
            x = x.abs() + 0.05  # a positive operand (logs, divisors, exponents' bases)
        x.view(-1)[k : k + special.numel()] = special
        x = x.to(dtype)
        # one NaN pattern: torch's float32 -> bfloat16 conversion writes a NaN's sign and
        # payload differently at each dispatch level, and copysign would read it
        out.append(torch.where(x.isnan(), torch.full_like(x, float("nan")), x))
    return out


def functional_overloads() -> list[str]:
    """Functional elementwise overloads: tagged pointwise in torch, or engine ops."""
    names = set()
    for full in _policy.all_ops():
        ns, _, name = full.partition("::")
        if ns != "aten" or name in _policy._families():
            continue  # the in-place and out= forms are swept with their functional
        base = name.partition(".")[0]
        if base.endswith("_") or base.startswith("_foreach") or "backward" in base:
            continue
        if name in _policy.pointwise.ATEN or torch.Tag.pointwise in _policy._tags(full):
            names.add(name)
    return sorted(names)


def _op(name: str):
    base, _, ov = name.partition(".")
    return getattr(getattr(torch.ops.aten, base), ov or "default")


def arguments(name: str, xs: list[torch.Tensor], scalar) -> tuple[list, dict] | None:
    """Positional arguments for ``name`` from its schema: tensors in turn, the scalar for
    Scalar arguments, defaults elsewhere; None if some required argument has no value."""
    args, kwargs, t = [], {}, 0
    for a in _op(name)._schema.arguments:
        ty = str(a.type)
        if ty in ("Tensor", "Tensor?") and not (a.has_default_value() and ty == "Tensor?"):
            if t >= len(xs):
                return None
            v = xs[t]
            t += 1
        elif ty in ("Scalar", "float", "number") and not a.has_default_value():
            v = scalar
        elif ty in ("Scalar", "float") and a.name in ("alpha", "value", "beta", "weight"):
            v = scalar
        elif a.has_default_value():
            continue
        elif ty == "int":
            v = 2
        else:
            return None
        if a.kwarg_only:
            kwargs[a.name] = v
        else:
            args.append(v)
    return args, kwargs


def _bits(t) -> str:
    """The result's bits, NaNs as one pattern: torch's own kernels (the native ops) write
    NaN with a sign and payload that differ between dispatch levels (its vectorized
    float32 -> bfloat16 conversion writes 0xffff at avx2, 0x7fc0 at default); samebits'
    kernels write the canonical NaN. Which elements are NaN is compared exactly."""
    if isinstance(t, (tuple, list)):
        return "|".join(_bits(u) for u in t)
    if not isinstance(t, torch.Tensor):
        return repr(t)
    t = t.detach().contiguous()
    if t.dtype.is_floating_point:
        t = torch.where(t.isnan(), torch.full_like(t, float("nan")), t)
        t = t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()[:16]


def _row(a, i: int, shape):
    return a[i : i + 1] if isinstance(a, torch.Tensor) and a.shape == shape else a


def _forms(name: str) -> list[tuple[str, str]]:
    outs, inplace = _policy.out_and_inplace(name)
    return [("out", o) for o in outs[:1]] + [("inplace", i) for i in inplace[:1]]


def run_case(name: str, dtype: torch.dtype, scalar, full: bool = True) -> str:
    """The case's outcome; ``full=False`` computes the functional form only (the other
    dispatch levels' processes: their forms, paths and rows are this process's code)."""
    xs = inputs(dtype)
    built = arguments(name, xs, scalar)
    if built is None:
        return "n/a"
    args, kwargs = built
    op = _op(name)
    try:
        with samebits.batch_invariant(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = op(*args, **kwargs)
            if not full:
                return _bits(ref)
            seen = {}
            for path in _native.native_info()["available"]:
                with _native.use_isa(path):
                    seen[f"path {path}"] = _bits(op(*args, **kwargs))
            if isinstance(ref, torch.Tensor) and ref.shape == xs[0].shape:
                for i in range(ROWS):  # each row alone, every operand sliced alike
                    row = [_row(a, i, ref.shape) for a in args]
                    if _bits(op(*row, **kwargs)) != _bits(ref[i : i + 1]):
                        seen[f"row {i}"] = "differs"
            for form, other in _forms(name) if isinstance(ref, torch.Tensor) else ():
                o = _op(other)
                if form == "out":
                    out = torch.empty_like(ref)
                    o(*args, **kwargs, out=out)
                    seen[form] = _bits(out)
                elif isinstance(args[0], torch.Tensor) and args[0].dtype == ref.dtype:
                    target = args[0].clone()
                    o(target, *args[1:], **kwargs)
                    seen[form] = _bits(target)
    except samebits.NotInvariantError:
        return "raises"
    except (RuntimeError, TypeError, ValueError, NotImplementedError, IndexError):
        return "n/a"
    want = _bits(ref)
    differing = sorted(k for k, v in seen.items() if v != want)
    return f"varies: {', '.join(differing)}" if differing else want


def uses_scalar(name: str) -> bool:
    built = arguments(name, [torch.zeros(1)] * 3, _MARK)
    return built is not None and any(v is _MARK for v in [*built[0], *built[1].values()])


_MARK = object()


def sweep(full: bool = True) -> dict[str, str]:
    out = {}
    for name in functional_overloads():
        scalars = SCALARS if uses_scalar(name) else SCALARS[:1]
        for dtype in DTYPES:
            for scalar in scalars:
                out[f"{name} {str(dtype)[6:]} {scalar}"] = run_case(name, dtype, scalar, full)
    return out


if __name__ == "__main__":
    json.dump(sweep(full="--full" in sys.argv), sys.stdout)
