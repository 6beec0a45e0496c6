"""SHA-256 of every exported kernel's outputs over a fixed set of shapes, on every kernel
path this CPU has: the check that a refactor of the C sources changed no bit.

    python tools/kernel_hashes.py --out before.json      # on the old sources
    python tools/kernel_hashes.py --check before.json    # on the new: exit 1 on a change

Inputs are made from integers (numpy's PCG64 and exact conversions), never torch.randn,
whose values depend on torch's dispatch level; they hold tails (sizes that are not a
multiple of any vector width), denormals, signed zeros, and in a second variant NaN and
+-inf. Every case runs under ``samebits.batch_invariant()`` on each path, at 2 threads
with SAMEBITS_MIN_PARALLEL_WORK=0 (so the threaded code runs), and the script checks
that every kernel of ``SIGNATURES`` was called on every path: a kernel the cases miss
is an error, not a silent gap. The paths must also agree with each other.

Run on aarch64 (``make test-aarch64`` does) the same cases give the hashes to compare
with x86's: ``--check`` takes a file written on another machine.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import sys
from collections.abc import Callable

os.environ.setdefault("SAMEBITS_MIN_PARALLEL_WORK", "0")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import samebits  # noqa: E402
from samebits import _keyshim, _native  # noqa: E402

SPECIALS = (np.nan, np.inf, -np.inf)


def _engine_functions() -> list[tuple[str, Callable]]:
    """Every aten op of the pointwise engine (samebits.ops.pointwise.ATEN, those whose
    Spec has no ``fast`` check of torch's own kernel) with one or two tensor operands and
    its other arguments at their defaults, as (name, fn(x, y)): by rule, so a formula
    added to the engine is hashed without a line here."""
    from samebits.ops import pointwise as pw

    fns = []
    for name, spec in sorted(pw.ATEN.items()):
        op = pw._aten(name)
        schema = op._schema
        tensors = [a for a in schema.arguments if str(a.type) == "Tensor"]
        rest = schema.arguments[len(tensors) :]
        if spec.fast is not None or any(not a.has_default_value() for a in rest):
            continue
        if len(tensors) == 1 and spec.operands is pw._self:
            fns.append((name, lambda x, y, op=op: op(x)))
        elif len(tensors) == 2 and spec.operands is pw._two:
            fns.append((name, lambda x, y, op=op: op(x, y)))
    return fns


def values(n: int, seed: int, special: bool = False, scale: float = 1.0) -> np.ndarray:
    """n float32 values in [-scale, scale) from integers, with a zero, a negative zero
    and denormals at fixed places (and NaN, +-inf with ``special``)."""
    u = np.random.Generator(np.random.PCG64(seed)).integers(0, 1 << 24, n, dtype=np.int64)
    x = ((u - (1 << 23)).astype(np.float64) * (scale / (1 << 23))).astype(np.float32)
    x[::29] = 0.0
    x[5::31] = -0.0
    x[7::37] = np.float32(1e-40)
    x[11::41] = np.float32(-3e-39)
    if special:
        for i, v in enumerate(SPECIALS):
            x[13 + i :: 43 + 4 * i] = v
    return x


def t(*shape: int, seed: int, special: bool = False, scale: float = 1.0, dtype=torch.float32):
    n = int(np.prod(shape))
    return torch.from_numpy(values(n, seed, special, scale).reshape(shape)).to(dtype)


def positive(*shape: int, seed: int) -> torch.Tensor:
    return t(*shape, seed=seed).abs() + 0.5


DT = (torch.float32, torch.bfloat16)


def cases() -> dict[str, Callable[[], object]]:
    """name -> a function computing the case's outputs (a tensor or a tuple of them)."""
    out: dict[str, Callable[[], object]] = {}
    # GEMM: DOT (linear), PAIR (bf16 linear), SEQ (x @ W[K, N]), few and many rows,
    # small-M / narrow / packed kernels, batched
    for M, K, N in [
        (1, 13, 7),
        (3, 96, 40),
        (7, 257, 33),
        (17, 1031, 100),
        (64, 200, 70),
        (100, 64, 300),
    ]:
        for dt in DT:
            for sp in (False, True):
                tag = f"{M}x{K}x{N}/{dt}/{'sp' if sp else 'clean'}"
                x = lambda M=M, K=K, dt=dt, sp=sp: t(M, K, seed=M * K, special=sp, dtype=dt)  # noqa: E731
                w = t(N, K, seed=N + K, scale=0.2, dtype=dt)
                b = t(N, seed=N, dtype=dt)
                out[f"linear/{tag}"] = lambda x=x, w=w, b=b: F.linear(x(), w, b)
                out[f"linear_nobias/{tag}"] = lambda x=x, w=w: F.linear(x(), w)
                out[f"mm_kn/{tag}"] = lambda x=x, w=w: x() @ w.t().contiguous()
    for dt in DT:
        a, b = t(3, 9, 37, seed=1, dtype=dt), t(3, 37, 11, seed=2, dtype=dt)
        out[f"bmm/{dt}"] = lambda a=a, b=b: torch.bmm(a, b)
        out[f"bmm_t/{dt}"] = lambda a=a, b=b: torch.bmm(
            a, b.transpose(1, 2).contiguous().transpose(1, 2)
        )
        out[f"matmul_bcast/{dt}"] = lambda a=a, b=b: torch.matmul(a, b[0])
        out[f"mv/{dt}"] = lambda a=a, b=b: torch.mv(a[0], b[0, :, 0].contiguous())
        out[f"addmm/{dt}"] = lambda a=a, b=b, dt=dt: torch.addmm(
            t(11, seed=3, dtype=dt), a[0], b[0], beta=0.5, alpha=2.0
        )
    # softmax / log_softmax: long and short rows, NaN/inf rows, fully -inf rows
    for R in (1, 7, 16, 100, 1031, 5000):
        for dt in DT:
            for sp in (False, True):
                x = t(9, R, seed=R, special=sp, scale=8.0, dtype=dt)
                tag = f"{R}/{dt}/{'sp' if sp else 'clean'}"
                out[f"softmax/{tag}"] = lambda x=x: torch.softmax(x, -1)
                out[f"log_softmax/{tag}"] = lambda x=x: torch.log_softmax(x, -1)
                out[f"softmax_f32out/{tag}"] = lambda x=x: torch.softmax(x, -1, dtype=torch.float32)
    # norms
    for R in (1, 5, 16, 33, 96, 1000):
        for dt in DT:
            for sp in (False, True):
                x = t(37, R, seed=R + 7, special=sp, dtype=dt)
                w, b = t(R, seed=R + 8, dtype=dt), t(R, seed=R + 9, dtype=dt)
                tag = f"{R}/{dt}/{'sp' if sp else 'clean'}"
                out[f"layer_norm/{tag}"] = lambda x=x, w=w, b=b, R=R: F.layer_norm(x, (R,), w, b)
                out[f"layer_norm_noaffine/{tag}"] = lambda x=x, R=R: F.layer_norm(x, (R,))
                out[f"rms_norm/{tag}"] = lambda x=x, w=w, R=R: F.rms_norm(x, (R,), w, eps=1e-6)
    for dt in DT:
        x = t(4, 6, 5, 7, seed=70, special=False, dtype=dt)
        rm, rv = t(6, seed=71), positive(6, seed=72)
        w, b = t(6, seed=73, dtype=dt), t(6, seed=74, dtype=dt)
        out[f"batch_norm/{dt}"] = lambda x=x, rm=rm, rv=rv, w=w, b=b, dt=dt: (
            F.batch_norm(x, rm, rv, w.float(), b.float())
            if dt == torch.float32
            else F.batch_norm(x.float(), rm, rv, w.float(), b.float())
        )
        out[f"batch_norm_cl/{dt}"] = lambda x=x, rm=rm, rv=rv: F.batch_norm(
            x.float().contiguous(memory_format=torch.channels_last), rm, rv
        )
        out[f"group_norm/{dt}"] = lambda x=x, w=w, b=b: F.group_norm(x, 3, w, b)
    # sums and their relatives
    for shape in [(5, 1031), (33, 8), (7, 100, 3), (2, 17, 130), (4097 * 3 + 5,), (70000,)]:
        for dt in DT:
            for sp in (False, True):
                x = t(*shape, seed=sum(shape), special=sp, dtype=dt)
                tag = f"{'x'.join(map(str, shape))}/{dt}/{'sp' if sp else 'clean'}"
                out[f"sum_all/{tag}"] = lambda x=x: x.sum()
                out[f"sum_last/{tag}"] = lambda x=x: x.sum(-1)
                out[f"sum_first/{tag}"] = lambda x=x: x.sum(0)
                out[f"mean/{tag}"] = lambda x=x: x.mean(-1)
                out[f"var/{tag}"] = lambda x=x: x.var(-1)
                out[f"norm/{tag}"] = lambda x=x: torch.linalg.vector_norm(x, dim=-1)
                out[f"exact_sum/{tag}"] = lambda x=x: samebits.exact_sum(x, -1)
                out[f"exact_sum_all/{tag}"] = lambda x=x: samebits.exact_sum(x)
    for dt in DT:
        a, b = t(1031, seed=90, dtype=dt), t(1031, seed=91, dtype=dt)
        out[f"exact_dot/{dt}"] = lambda a=a, b=b: samebits.exact_dot(a, b)
        out[f"exact_norm/{dt}"] = lambda a=a: samebits.exact_norm(a)
    # elementwise: the pointwise engine, tails 1..2*16+3
    for n in (1, 7, 35, 1000):
        for dt in DT:
            x = t(n, seed=n + 100, special=True, scale=12.0, dtype=dt)
            y = t(n, seed=n + 101, special=True, scale=3.0, dtype=dt)
            tag = f"{n}/{dt}"
            for name, fn in _engine_functions():
                out[f"{name}/{tag}"] = lambda x=x, y=y, fn=fn: fn(x, y)
            out[f"gelu_tanh/{tag}"] = lambda x=x: F.gelu(x, approximate="tanh")
            out[f"div/{tag}"] = lambda x=x, y=y: x / y
            out[f"pow/{tag}"] = lambda x=x, y=y: torch.pow(x.abs(), y)
            out[f"add_alpha/{tag}"] = lambda x=x, y=y: torch.add(x, y, alpha=0.3)
            out[f"addcmul/{tag}"] = lambda x=x, y=y: torch.addcmul(x, x, y, value=0.7)
            out[f"lerp/{tag}"] = lambda x=x, y=y: torch.lerp(x, y, 0.25)
    # attention: causal, boolean and float masks, GQA, a fully masked row
    for dt in DT:
        for L, S, D in [(1, 9, 8), (7, 7, 16), (13, 29, 64), (5, 130, 24)]:
            q = t(2, 4, L, D, seed=L * D, dtype=dt)
            k = t(2, 4, S, D, seed=S * D + 1, dtype=dt)
            v = t(2, 4, S, D, seed=S * D + 2, dtype=dt)
            tag = f"{L}x{S}x{D}/{dt}"
            out[f"sdpa/{tag}"] = lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v)
            if L == S:
                out[f"sdpa_causal/{tag}"] = lambda q=q, k=k, v=v: F.scaled_dot_product_attention(
                    q, k, v, is_causal=True
                )
            m = torch.ones(L, S, dtype=torch.bool).tril(S - L)
            m[0] = False if L > 1 else m[0]
            out[f"sdpa_bool/{tag}"] = lambda q=q, k=k, v=v, m=m: F.scaled_dot_product_attention(
                q, k, v, attn_mask=m
            )
            fm = t(L, S, seed=L + S, dtype=dt)
            out[f"sdpa_float/{tag}"] = lambda q=q, k=k, v=v, fm=fm: F.scaled_dot_product_attention(
                q, k, v, attn_mask=fm
            )
            out[f"sdpa_gqa/{tag}"] = lambda q=q, k=k, v=v: F.scaled_dot_product_attention(
                q, k[:, :2], v[:, :2], enable_gqa=True
            )
    # convolutions: GEMM (im2col, implicit, 1x1), depthwise (NHWC and NCHW), padded
    # channels-last, 1-D and 3-D
    for dt in DT:
        for name, xs, ws, kw in [
            ("3x3", (2, 5, 11, 9), (7, 5, 3, 3), dict(padding=1)),
            ("3x3_s2", (2, 8, 13, 13), (16, 8, 3, 3), dict(stride=2, padding=1)),
            ("5x5_dil", (1, 3, 17, 15), (4, 3, 5, 5), dict(dilation=2, padding=3)),
            ("1x1", (2, 24, 7, 6), (40, 24, 1, 1), {}),
            ("dw3x3", (2, 12, 15, 14), (12, 1, 3, 3), dict(padding=1, groups=12)),
            ("dw5x5_s2", (1, 16, 19, 19), (16, 1, 5, 5), dict(stride=2, padding=2, groups=16)),
            ("dw3x3_wide", (1, 8, 21, 40), (8, 1, 3, 3), dict(padding=1, groups=8)),
            ("groups", (2, 8, 9, 9), (8, 4, 3, 3), dict(padding=1, groups=2)),
            ("big", (1, 64, 28, 28), (64, 64, 3, 3), dict(padding=1)),
        ]:
            x = t(*xs, seed=sum(xs), dtype=dt)
            w = t(*ws, seed=sum(ws), scale=0.3, dtype=dt)
            b = t(ws[0], seed=ws[0], dtype=dt)
            out[f"conv2d/{name}/{dt}"] = lambda x=x, w=w, b=b, kw=kw: F.conv2d(x, w, b, **kw)
            out[f"conv2d_cl/{name}/{dt}"] = lambda x=x, w=w, b=b, kw=kw: F.conv2d(
                x.contiguous(memory_format=torch.channels_last), w, b, **kw
            )
        x1, w1 = t(2, 6, 31, seed=5, dtype=dt), t(5, 6, 4, seed=6, dtype=dt)
        out[f"conv1d/{dt}"] = lambda x1=x1, w1=w1: F.conv1d(x1, w1, padding=2)
        x3, w3 = t(1, 3, 6, 7, 5, seed=7, dtype=dt), t(4, 3, 3, 3, 3, seed=8, dtype=dt)
        out[f"conv3d/{dt}"] = lambda x3=x3, w3=w3: F.conv3d(x3, w3, padding=1)
    return out


def direct_outputs(k) -> dict[str, object]:
    """Kernels no op of the mode reaches, called directly: sb_pw_ops (read once per
    process, cached)."""
    buf = ctypes.create_string_buffer(k.sb_pw_ops(None, 0) + 1)
    k.sb_pw_ops(buf, len(buf))
    return {"pw_ops": buf.value}


def canonical(x: torch.Tensor) -> torch.Tensor:
    """x with every NaN as the canonical quiet NaN (its sign and payload cleared): the
    hashes of sources from before NaNs were canonical in outputs, to compare with."""
    if x.is_floating_point():
        return torch.where(x.isnan(), torch.tensor(float("nan"), dtype=x.dtype).abs(), x)
    return x


def digest(v, canon: bool = False) -> str:
    h = hashlib.sha256()
    for item in v if isinstance(v, tuple | list) else (v,):
        if isinstance(item, bytes):
            h.update(item)
        else:
            item = canonical(item) if canon else item
            h.update(item.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class Counter:
    """Wraps a path's ctypes functions to record which were called."""

    def __init__(self, k) -> None:
        self.called: set[str] = set()
        self.calls = 0  # every call, so a case can tell whether it reached a kernel
        for name in _native.SIGNATURES:
            fn = getattr(k, name)
            setattr(k, name, self._wrap(name, fn))

    def _wrap(self, name, fn):
        def call(*args):
            self.called.add(name)
            self.calls += 1
            return fn(*args)

        return call


def run_path(
    isa: str, names: list[str] | None
) -> tuple[dict[str, str], dict[str, str], set[str], set[str]]:
    """(raw hashes, hashes with NaNs canonical, the kernels called, the cases that
    reached no samebits kernel: torch's own ops, left to it by the mode) of one path."""
    k = _native._kernels_for(isa)
    counter = Counter(k)
    hashes, canon, torch_only = {}, {}, set()

    def reached() -> int:  # kernel calls through the bindings and from the C++ kernels
        return counter.calls + sum(_keyshim.entry_calls().values())

    cpp_before = _keyshim.entry_calls()
    with _native.use_isa(isa), torch.inference_mode(), samebits.batch_invariant():
        for name, fn in cases().items():
            if names and not any(name.startswith(n) for n in names):
                continue
            before = reached()
            try:
                res = fn()
                hashes[name], canon[name] = digest(res), digest(res, canon=True)
            except samebits.SamebitsError as err:  # refused by the mode: its class is the result
                hashes[name] = canon[name] = f"refused: {type(err).__name__}"
            if reached() == before:
                torch_only.add(name)
        for name, b in direct_outputs(k).items():
            hashes[name], canon[name] = digest(b), digest(b, canon=True)
    for entry, n in _keyshim.entry_calls().items():  # what the C++ kernels called
        if n > cpp_before.get(entry, 0):
            counter.called.add(entry)
    for name in _native.SIGNATURES:  # unwrap
        fn = getattr(k, name)
        setattr(k, name, fn.__closure__[0].cell_contents if fn.__closure__ else fn)
    return hashes, canon, counter.called, torch_only


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write {path: {case: sha256}} here")
    ap.add_argument("--check", help="compare with a file --out wrote (any machine)")
    ap.add_argument("--paths", help="comma-separated kernel paths (default: all this CPU has)")
    ap.add_argument("--only", help="comma-separated case name prefixes")
    args = ap.parse_args()
    torch.set_num_threads(2)
    info = _native.native_info()
    paths = args.paths.split(",") if args.paths else list(info["available"])
    for extra in ("amx_sim",):
        if extra not in paths and not args.paths:
            try:
                _native._check_path(extra, _native._state["features"])
                paths.append(extra)
            except Exception:
                pass
    names = args.only.split(",") if args.only else None
    result: dict[str, dict[str, str]] = {}
    canon: dict[str, dict[str, str]] = {}
    torch_only: dict[str, set[str]] = {}
    bad = 0
    for isa in paths:
        hashes, canon[isa], called, torch_only[isa] = run_path(isa, names)
        result[isa] = hashes
        missed = sorted(set(_native.SIGNATURES) - called)
        print(f"{isa}: {len(hashes)} cases, kernels called {len(called)}/{len(_native.SIGNATURES)}")
        if missed and not names:
            print(f"  kernels no case reached on {isa}: {', '.join(missed)}")
            bad = 1
    first = paths[0]
    for isa in paths[1:]:
        differ = sorted(c for c in result[first] if result[isa].get(c) != result[first][c])
        if differ:
            bad = 1
            print(f"{isa} differs from {first} on {len(differ)} cases: {differ[:20]}")
    combined = hashlib.sha256(json.dumps(result[first], sort_keys=True).encode()).hexdigest()
    print(f"combined hash ({first}): {combined}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"cpu": _cpu(), "paths": result, "canon": canon}, f, indent=1, sort_keys=True)
    if args.check:
        bad |= check(args.check, paths, result, canon, torch_only, bool(names))
    return bad


def check(
    path: str, paths: list[str], result: dict, canon: dict, torch_only: dict, partial: bool
) -> int:
    """Compare with a file --out wrote: 1 when a case's bits differ. One difference is
    listed apart and does not fail: a case that reached no samebits kernel (an op the
    mode leaves to torch: add, sub, mul, div are one IEEE operation each) whose bits
    are equal once every NaN is made canonical. The NaN such an op creates from non-NaN
    operands (0/0, inf - inf) is the CPU's default NaN: negative on x86, positive on
    ARM. A NaN-only difference in a case that reached a samebits kernel fails: every
    value a kernel writes is canonical."""
    with open(path) as f:
        ref = json.load(f)
    want, want_c = next(iter(ref["paths"].values())), next(iter(ref["canon"].values()))
    bad = 0
    for isa in paths:
        differ = sorted(c for c in want if c in result[isa] and result[isa][c] != want[c])
        nan_only = [c for c in differ if canon[isa][c] == want_c[c] and c in torch_only[isa]]
        real = [c for c in differ if c not in nan_only]
        missing = [c for c in want if c not in result[isa]]
        status = f"{len(real)} DIFFER" if real else "same bits"
        if nan_only:
            status += f" ({len(nan_only)} differ only in NaNs that torch's own ops create)"
        print(
            f"check {isa} vs {path} ({ref.get('cpu')}): {len(want) - len(missing)} cases, {status}"
        )
        for c in real[:40]:
            print(f"  differs: {c}")
        for c in nan_only[:40]:
            print(f"  differs only in the sign of NaNs torch's own op created: {c}")
        bad |= bool(real) or (bool(missing) and not partial)
    return bad


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.machine()


if __name__ == "__main__":
    sys.exit(main())
