"""The batch-invariant mode: the only module that touches ``torch.library``.

How it works
------------
The mode is a dispatch key (``KEY_NAME``) that a thread adds to its own dispatch set on
entering ``batch_invariant()`` and removes on leaving. Every op called in that thread,
from any namespace, passes through the key on its way to torch's CPU kernel, below
autograd. On the key, registered once per process from the op policy
(``samebits/_policy.py``):

* covered ops: samebits' kernel;
* guarded ops: a check of the arguments, then torch's kernel or a refusal;
* native ops: a fallthrough (torch's kernel, at no cost);
* denied ops, and every other op (the key's fallback): ``NotInvariantError`` naming the
  op, or a warning and torch's kernel with ``on_unsupported="warn"``. Integer and bool
  arithmetic passes (it is exact in any order) unless it returns floats.

A thread outside the mode never reaches the key, so it runs torch's kernels untouched
and pays nothing. The autograd engine carries the key into a backward pass started in
the mode, so backward ops go through the policy too.

The covered ops that torch differentiates by decomposition (linear, matmul, sdpa...)
also need an AutogradCPU kernel, which is process-wide: that small layer is installed
while some thread holds the mode and removed, restoring exactly what was registered
before, when none has for ``SAMEBITS_UNINSTALL_DELAY_S`` seconds (default 1).

Thread semantics (documented and tested): the mode is per thread. Threads started
inside a block do not inherit it. ``batch_invariant(False)`` inside an enabled block
turns it off for that block.
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

from samebits import _keyshim, _native, _policy
from samebits.errors import NotInvariantError
from samebits.ops import _autograd

POLICIES = ("raise", "warn")


class NotInvariantWarning(UserWarning):
    """Raised as a warning instead of NotInvariantError under on_unsupported="warn"."""


# ------------------------------------------------------------- thread state
_NO_ISA = object()  # a frame that did not choose a kernel path


@dataclass(frozen=True)
class _Frame:
    enabled: bool
    on_unsupported: str
    isa_token: object = _NO_ISA
    key_was: bool = False  # whether the mode key was in this thread's set before the frame


class _Local(threading.local):
    def __init__(self) -> None:
        self.stack: list[_Frame] = []


_tls = _Local()
_lock = threading.Lock()
_holders = 0  # threads (counted per enabled frame) that need the autograd layer installed
_lib: torch.library.Library | None = None
_fallbacks: dict[str, object] = {}


def is_batch_invariant() -> bool:
    """Whether the calling thread is inside an enabled ``batch_invariant()`` block."""
    return bool(_tls.stack) and _tls.stack[-1].enabled


def _policy_name() -> str:
    return _tls.stack[-1].on_unsupported if _tls.stack else "raise"


# --------------------------------------------------------------- the mode key
# The mode is a dispatch key that only threads in the mode have in their dispatch set
# (thread-local "included" keys, which torch also carries into the autograd engine's
# backward pass). Every op of every namespace passes through it there, below autograd and
# above the backends (CPU, QuantizedCPU): samebits' kernels, guards and refusals are
# registered on it once per process, torch's kernels stay where they are, and a thread
# outside the mode never reaches any of it. CustomRNGKeyId is the key: torch keeps it
# for out-of-tree kernels and registers nothing on it.
KEY_NAME = "CustomRNGKeyId"
_KEY = torch._C._parse_dispatch_key(KEY_NAME)
_BELOW = torch._C._dispatch_keyset_full_after(_KEY)  # the keys a redispatch may reach
_CPU_KEYS = (torch._C.DispatchKey.CPU, torch._C.DispatchKey.QuantizedCPU)


def _on_cpu(keyset, _keys=_CPU_KEYS) -> bool:
    """Whether torch would run a CPU kernel for this call: its highest backend is CPU
    (a Python number is a CPU tensor, so a meta or CUDA call with one has CPU in its set)."""
    return (keyset & _BELOW).highestPriorityTypeId() in _keys


def _in_mode_key() -> bool:
    return torch._C._dispatch_tls_is_dispatch_key_included(_KEY)


def _set_mode_key(on: bool) -> None:
    torch._C._dispatch_tls_set_dispatch_key_included(_KEY, on)


@contextlib.contextmanager
def _mode_off():
    """Run torch's own kernels below, inner ops included (the warn policy's native call)."""
    was = _in_mode_key()
    _tls.stack.append(_Frame(False, "warn"))
    _set_mode_key(False)
    try:
        yield
    finally:
        _tls.stack.pop()
        _set_mode_key(was)


def _floating(x) -> bool:
    if isinstance(x, torch.Tensor):
        return x.dtype.is_floating_point or x.dtype.is_complex or x.is_quantized
    if isinstance(x, (list, tuple)):
        return any(_floating(v) for v in x)
    return False


def _has_float(args, kwargs) -> bool:
    return any(_floating(a) for a in args) or any(_floating(v) for v in kwargs.values())


def _refuse(op, qualname: str, why: str, keyset, args, kwargs):
    """Raise NotInvariantError for ``qualname``; under on_unsupported="warn", warn and
    run torch's kernel with the mode off instead."""
    err = _policy.refusal(qualname, args, why)
    if _policy_name() != "warn":
        raise err
    warnings.warn(str(err), NotInvariantWarning, stacklevel=4)
    with _mode_off():
        return _torch_kernel(op, keyset, args, kwargs)


@functools.cache
def _tensor_args(op) -> tuple[tuple[int, str], ...]:
    """(position, name) of the Tensor arguments of an op's schema."""
    return tuple((i, a.name) for i, a in enumerate(op._schema.arguments) if str(a.type) == "Tensor")


def _torch_kernel(op, keyset, args, kwargs):
    """torch's own kernel below the mode key. A Python number given for a Tensor
    argument (torch hands a Python kernel its wrapped numbers as numbers, and
    redispatch cannot take them back) goes through a fresh call with the mode key
    excluded, which wraps it again."""
    for i, name in _tensor_args(op):
        v = args[i] if i < len(args) else kwargs.get(name)
        if isinstance(v, (int, float, complex, bool)):
            with torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(_KEY)):
                return op(*args, **kwargs)
    return op.redispatch(keyset & _BELOW, *args, **kwargs)


@functools.cache
def _overload(qualname: str):
    ns, _, rest = qualname.partition("::")
    base, _, ov = rest.partition(".")
    return getattr(getattr(getattr(torch.ops, ns), base), ov or "default")


@functools.cache
def _written(qualname: str) -> tuple[str, ...]:
    """The names of an out= overload's written arguments (``out``; ``output`` and
    ``total_weight`` for nll_loss_forward.output; ``out0``..``out3`` ...)."""
    schema = _overload(qualname)._schema
    return tuple(
        a.name for a in schema.arguments if a.alias_info is not None and a.alias_info.is_write
    )


def _covered_kernel(qualname: str, variant: str) -> Callable:
    name = qualname.partition("::")[2]

    out = variant == "out"

    def kernel(keyset, *args, **kwargs):
        op = _overload(qualname)
        fn = _covered_fn(name)  # looked up per call: the table is the one source
        if not _on_cpu(keyset):
            return _torch_kernel(op, keyset, args, kwargs)
        if out:
            call_kwargs = dict(kwargs)
            outs = [call_kwargs.pop(n) for n in _written(qualname)]  # out=, output=, ...
        else:
            call_kwargs, outs = kwargs, []
        try:
            res = fn(*args, **call_kwargs)
        except NotInvariantError as err:
            if _policy_name() != "warn":
                raise
            warnings.warn(str(err), NotInvariantWarning, stacklevel=3)
            with _mode_off():
                return _torch_kernel(op, keyset, args, kwargs)
        if res is NotImplemented:
            return _torch_kernel(op, keyset, args, kwargs)
        if variant == "out":
            results = res if isinstance(res, tuple) else (res,)
            flat = outs[0] if len(outs) == 1 and isinstance(outs[0], (tuple, list)) else outs
            for o, r in zip(flat, results, strict=True):
                if o.shape != r.shape:
                    o.resize_(r.shape)
                o.copy_(r)
            return outs[0] if len(outs) == 1 else tuple(outs)
        if variant == "inplace":
            args[0].copy_(res)
            return args[0]
        return res

    kernel.__name__ = f"samebits_{qualname.replace('::', '_').replace('.', '_')}"
    return kernel


def _deny_kernel(qualname: str, why: str) -> Callable:
    def kernel(keyset, *args, **kwargs):
        op = _overload(qualname)  # made on the first call: most denied ops never run
        if not _on_cpu(keyset) or not _has_float(args, kwargs):
            return _torch_kernel(op, keyset, args, kwargs)
        return _refuse(op, qualname, why, keyset, args, kwargs)

    return kernel


def _guard_kernel(qualname: str, when: Callable[..., bool], why: str) -> Callable:
    def kernel(keyset, *args, **kwargs):
        op = _overload(qualname)
        if _on_cpu(keyset) and when(*args, **kwargs):
            return _refuse(op, qualname, why, keyset, args, kwargs)
        return _torch_kernel(op, keyset, args, kwargs)

    return kernel


def _native_kernel(qualname: str) -> Callable:
    def kernel(keyset, *args, **kwargs):
        return _torch_kernel(_overload(qualname), keyset, args, kwargs)

    return kernel


def _fallback(keyset, op, *args, **kwargs):
    """Every op without a registration on the mode key: refused unless its inputs and
    outputs hold no floating-point tensor (integer and bool arithmetic is exact)."""
    if not _on_cpu(keyset):
        return _torch_kernel(op, keyset, args, kwargs)
    qualname = op.name()
    if "::" not in qualname:
        qualname = f"aten::{qualname}"
    kind, why = _policy.classify(qualname)
    if kind == "native":  # classified after the registrations were made
        return _torch_kernel(op, keyset, args, kwargs)
    if not _has_float(args, kwargs):
        out = _torch_kernel(op, keyset, args, kwargs)
        if not _floating(out if isinstance(out, (list, tuple)) else (out,)):
            return out
        why = f"it returns floating-point values computed from integers; {why}"
    return _refuse(op, qualname, why, keyset, args, kwargs)


_registered = _policy.registered


_COVERED_TABLES = (_policy._COVERED, _policy.pointwise.KERNELS)


def _variant(name: str) -> str:
    """functional, out or inplace: how ``name`` relates to the table entry of its family."""
    if _policy.table_name(name, *_COVERED_TABLES) == name:
        return "functional"
    schema = _policy.schema_of(f"aten::{name}")
    return "inplace" if schema.name.endswith("_") else "out"


def _covered_fn(name: str) -> Callable:
    """The table's function for ``name`` or its family (looked up per call, cheaply: the
    tables are the one source, and tests replace entries)."""
    covered, kernels = _COVERED_TABLES
    fn = covered.get(name) or kernels.get(name)
    if fn is None:
        family = _policy._families().get(name, name)
        fn = covered.get(family) or kernels[family]
    return fn


def _plan_spec() -> list[tuple]:
    """The mode key's registrations as data: (op, tag, detail) with tag covered (detail:
    the variant), fallthrough, native (a kernel that calls torch's), guarded (detail:
    the guard table's key) or denied (detail: the reason). A pure function of the
    policy's sources and torch's registry (see _plan_cache_key)."""
    spec = []
    backends = _registered("CPU", "QuantizedCPU")
    selects = _registered("BackendSelect")
    explicits = _registered("CompositeExplicitAutograd", "CompositeExplicitAutogradNonFunctional")
    for qualname in _policy.all_ops():
        kind, why = _policy.classify(qualname)
        backend, explicit = qualname in backends, qualname in explicits
        ns, _, name = qualname.partition("::")
        if kind == "covered":
            spec.append((qualname, "covered", _variant(name)))
        elif not (backend or explicit):
            continue  # a composite: it decomposes into ops classified on their own
        elif kind == "native":
            if qualname not in selects:
                spec.append((qualname, "fallthrough", ""))  # torch's kernel at no cost
            elif not explicit:
                # an op with a BackendSelect kernel redispatches with every key this
                # thread includes, past any fallthrough, so it gets a kernel that calls
                # torch's (with a composite kernel it needs none: that kernel runs here)
                spec.append((qualname, "native", ""))
        elif kind == "guarded":
            spec.append((qualname, "guarded", _policy.table_name(name, _policy._GUARDED)))
        elif kind == "denied" and explicit:
            spec.append((qualname, "denied", why))
        # composites run their composite kernel on the key (the key counts as a backend),
        # so a denied op with a composite kernel needs a kernel that refuses it; refused
        # ops and denied ones with only a backend kernel reach the fallback, which
        # refuses them with the reason classify gives (no registration each: the first
        # entry registers ~460 fewer kernels)
    return spec


def _plan_cache_key() -> str:
    """A hash of everything the plan is computed from: samebits' Python sources (the
    policy, its tables: each file's path, size and mtime), the kernel library's build
    (the engine's op list), torch's version and build, and torch's registry as it is now
    (every op name, and which ops have kernels for the dispatch keys the rules read), so
    a library that registers ops, or any edit, gives a new key."""
    import hashlib
    from pathlib import Path

    h = hashlib.sha256()
    h.update(f"{torch.__version__} {torch.version.git_version}".encode())
    h.update(_native.build_id().encode())  # the engine's op list is the library's
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):  # an edit changes the size or the mtime
        st = path.stat()
        h.update(f"{path.relative_to(root)} {st.st_size} {st.st_mtime_ns}\n".encode())
    h.update("\n".join(_policy.all_ops()).encode())
    for key in _PLAN_KEYS:
        h.update(key.encode() + "\n".join(sorted(_registered(key))).encode())
    return h.hexdigest()[:32]


# the dispatch keys whose registrations the plan and the policy's rules read
_PLAN_KEYS = (
    "CPU", "QuantizedCPU", "BackendSelect", "CompositeImplicitAutograd",
    "CompositeExplicitAutograd", "CompositeExplicitAutogradNonFunctional",
)  # fmt: skip


def _cached_plan() -> tuple[list[tuple], list[tuple]]:
    """(_plan_spec(), _shim_entries() of it), read from ``$SAMEBITS_CACHE/plan-<key>.json``
    when a process with the same sources and registry wrote it (classifying every op
    costs ~0.15 s, once per process), else computed and written there.
    SAMEBITS_PLAN_CACHE=0 turns it off."""
    import json

    if os.environ.get("SAMEBITS_PLAN_CACHE", "1") == "0":
        spec = _plan_spec()
        return spec, _shim_entries(spec)
    path = _native._cache_dir() / f"plan-{_plan_cache_key()}.json"
    try:
        data = json.loads(path.read_text())
        families = data["families"]
        _policy.preload_families(families)
        return [tuple(e) for e in data["spec"]], [tuple(e) for e in data["shim"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    spec = _plan_spec()
    shim = _shim_entries(spec)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"spec": spec, "shim": shim, "families": _policy._families()}))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache: computed again by the next process
    return spec, shim


def _key_plan(spec: list[tuple]) -> tuple[tuple[str, object], ...]:
    """(op, kernel or None for a fallthrough) for every registration on the mode key,
    from the policy's classification of every op the dispatcher knows (``spec``)."""
    plan = []
    for qualname, tag, detail in spec:
        if tag == "covered":
            plan.append((qualname, _covered_kernel(qualname, detail)))
        elif tag == "fallthrough":
            plan.append((qualname, None))
        elif tag == "native":
            plan.append((qualname, _native_kernel(qualname)))
        elif tag == "guarded":
            when, why = _policy._GUARDED[detail]
            plan.append((qualname, _guard_kernel(qualname, when, why)))
        else:
            plan.append((qualname, _deny_kernel(qualname, detail)))
    return tuple(plan)


_key_libs: list[torch.library.Library] = []  # the registrations on the mode key, kept


def _install_key_layer() -> None:
    """Once per process: every registration on the mode key, and its fallback."""
    libs: dict[str, torch.library.Library] = {}
    spec, shim = _cached_plan()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns when a kernel is overridden
        fb = torch.library.Library("_", "IMPL")
        fb.fallback(_fallback, KEY_NAME, with_keyset=True)
        libs["_"] = fb
        plan = _key_plan(spec)
        # the fallthroughs in one C++ call where the C++ kernels are on
        passed = _keyshim.fallthroughs([q for q, kernel in plan if kernel is None])
        for qualname, kernel in plan:
            if kernel is None and passed:
                continue
            ns, _, name = qualname.partition("::")
            lib = libs.get(ns) or libs.setdefault(ns, torch.library.Library(ns, "IMPL"))
            if kernel is None:
                lib.impl(name, torch.library.fallthrough_kernel, KEY_NAME)
            else:
                lib.impl(name, kernel, KEY_NAME, with_keyset=True)
    _key_libs.extend(libs.values())
    _keyshim.install(
        [(q, kind, _engine_code(code), arity, params) for q, kind, code, arity, params in shim]
    )


def _engine_code(code: int | str) -> int:
    """An entry's code: a number, or an engine op's name (its code in this library)."""
    return _policy.pointwise.engine_code(code) if isinstance(code, str) else code


def _shim_entries(spec: list[tuple]) -> list[tuple[str, str, int | str, int, str]]:
    """The ops whose Python kernel on the mode key gets a C++ kernel over it for the
    common case (samebits/_keyshim.py), as (op, kind, code, arity, parameters: an engine
    op's ``pointwise.param_codes``, else ""): the kernels that
    only call torch's, the guards and covered ops _keyshim names, and the pointwise
    engine's ops where ``pointwise.fast_kind`` gives a check (code: the engine op's
    name, resolved against the loaded library at install)."""
    covered, kernels = _COVERED_TABLES
    entries = []
    for qualname, tag, detail in spec:
        if tag == "native":
            entries.append((qualname, "pass", 0, 0, ""))
        elif tag == "guarded":
            kind = _keyshim.GUARDS.get(_policy._GUARDED[detail][0].__name__)
            if kind is not None:
                entries.append((qualname, kind, 0, 0, ""))
        elif tag == "covered" and qualname.startswith("aten::"):
            name = qualname.partition("::")[2]
            if name in _keyshim.COVERED and detail == "functional":
                entries.append((qualname, *_keyshim.COVERED[name], 0, ""))
                continue
            family = _policy.table_name(name, covered, kernels)  # the entry _covered_fn runs
            if family in covered or family not in kernels:
                continue
            fast = _policy.pointwise.fast_kind(family, detail)
            if fast is not None:
                entries.append((qualname, *fast))
    return entries


# ------------------------------------------------------- the autograd layer
# The covered ops torch differentiates by decomposition (linear, matmul, einsum,
# rms_norm, sdpa, the recurrent layers) decompose at the autograd key, above the mode
# key, so their samebits kernel would never be reached. An AutogradCPU kernel (and a
# NestedTensorCPU one for the fused encoder layer on nested tensors) sends them there
# in the mode. These few registrations are process-wide, so they are installed while
# some thread holds the mode and removed after the uninstall delay, restoring exactly
# what was registered before.
@functools.cache
def _decomposed_covered() -> tuple[str, ...]:
    """Covered ops that torch differentiates by decomposition (CompositeImplicitAutograd)."""
    return tuple(
        n
        for n in _policy._COVERED
        if _policy.op_exists(n)
        and torch._C._dispatch_has_kernel_for_dispatch_key(
            f"aten::{n}", "CompositeImplicitAutograd"
        )
    )


def _fallback_key(name: str, key: str) -> str:
    """Where torch's own kernel for (op, dispatch key) sits in ``_fallbacks``."""
    return f"{name}@{key}"


def _autograd_kernel(name: str) -> Callable:
    """The AutogradCPU kernel of an op torch differentiates by decomposition (see
    ops/_autograd.py). Outside the mode: torch's own (the decomposition, with its
    gradients). In the mode with gradients wanted: the samebits forward with the
    reference's gradients. Else: on below autograd, to the mode key's kernel."""
    fkey = _fallback_key(name, "AutogradCPU")  # torch's kernel as it was at this install
    op = _overload(f"aten::{name}")
    reference = _autograd.REFERENCES.get(name)

    def below(*args, **kwargs):  # the mode's kernel on the mode key
        with torch._C._AutoDispatchBelowAutograd():
            return op(*args, **kwargs)

    def kernel(keyset, *args, **kwargs):
        if not _in_mode_key():
            return _fallbacks[fkey].call_boxed(keyset, *args, **kwargs)
        if _autograd.needs_grad(args, kwargs):
            # gradients from ops/_autograd.py's reference, or else torch's own
            # decomposition (its ops have derivative formulas and run in the mode)
            ref = reference or functools.partial(_fallbacks[fkey].call_boxed, keyset)
            return _autograd.with_grad(ref, below, args, kwargs)
        with torch._C._AutoDispatchBelowAutograd():
            return op(*args, **kwargs)

    return kernel


def _nested_kernel(name: str, fn: Callable) -> Callable:
    fkey = _fallback_key(name, "NestedTensorCPU")

    def kernel(keyset, *args, **kwargs):
        if not _in_mode_key():
            return _fallbacks[fkey].call_boxed(keyset, *args, **kwargs)
        return fn(*args, **kwargs)

    return kernel


@functools.cache
def _registrations() -> tuple[tuple[str, str, Callable], ...]:
    """(op, dispatch key, kernel) for the autograd layer, built once per process."""
    regs = [(n, "AutogradCPU", _autograd_kernel(n)) for n in _decomposed_covered()]
    for name, fn in _policy._COVERED_NESTED.items():
        if _policy.op_exists(name):
            regs.append((name, "NestedTensorCPU", _nested_kernel(name, fn)))
    return tuple(regs)


def _install() -> torch.library.Library:
    regs = _registrations()
    for name, key, _ in regs:  # taken before any kernel changes
        _fallbacks[_fallback_key(name, key)] = torch.library.get_kernel(f"aten::{name}", key)
    lib = torch.library.Library("aten", "IMPL")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overriding a kernel is the point here
        for name, key, kernel in regs:
            lib.impl(name, kernel, key, with_keyset=True)
    return lib


def covered_ops() -> dict[str, str]:
    """Every op the dispatcher knows (every namespace) and what the mode does with it:
    "invariant kernel", "native, denied when ...", "native (invariant by
    construction): why", "denied: why" or "refused: why"."""
    return _policy.covered_ops()


# ------------------------------------------------------------ torch.compile
# Inductor generates its own kernels and reductions, so a compiled graph computes other
# bits than the mode's. In a thread in the mode, compiled functions and modules run
# eagerly instead, through the mode's kernels: dynamo asks _callback_from_stance which
# frame callback to install for each call of a compiled function, and ours answers
# "none" (the "force_eager" stance) when the calling thread holds the mode key, so
# another thread's compiled calls are untouched. A model compiled before entering the
# mode therefore gets the eager mode's bits inside it. Should a compile start in the
# mode anyway (a torch whose dynamo lacks that function), it is refused.
_COMPILE_WHY = (
    "inductor generates its own kernels and reductions, which the mode cannot fix; "
    "run the model uncompiled under batch_invariant() (compiled code keeps native bits)"
)


def _refuse_compile(*_args) -> None:
    if _in_mode_key():
        raise NotInvariantError("torch.compile", hint=_COMPILE_WHY)


def _register_callback(callback_module) -> None:
    handler = callback_module.callback_handler
    if _refuse_compile not in handler.start_callbacks:
        handler.register_start_callback(_refuse_compile)


def _register_eval_frame(eval_frame) -> None:
    original = getattr(eval_frame, "_callback_from_stance", None)
    if original is None or getattr(original, "_samebits", False):
        return

    def callback_from_stance(callback):
        return None if _in_mode_key() else original(callback)

    callback_from_stance._samebits = True
    eval_frame._callback_from_stance = callback_from_stance


_DYNAMO_HOOKS: dict[str, Callable] = {
    "torch._dynamo.callback": _register_callback,
    "torch._dynamo.eval_frame": _register_eval_frame,
}


class _OnDynamoImport(importlib.abc.MetaPathFinder):
    """Installs the hooks when dynamo's modules load (importing them ourselves would
    cost seconds and a burst of garbage collection on the first entry)."""

    def find_spec(self, name, path, target=None):
        hook = _DYNAMO_HOOKS.get(name)
        if hook is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            hook(module)

        spec.loader.exec_module = exec_module
        if all(n in sys.modules or n == name for n in _DYNAMO_HOOKS) and self in sys.meta_path:
            sys.meta_path.remove(self)
        return spec


_on_dynamo_import = _OnDynamoImport()


def _hook_compile() -> None:
    """Once per process; the hooks do nothing outside the mode, so they stay."""
    pending = False
    for name, hook in _DYNAMO_HOOKS.items():
        if name in sys.modules:
            hook(sys.modules[name])
        else:
            pending = True
    if pending and _on_dynamo_import not in sys.meta_path:
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
            # the first install allocates a few thousand objects at once (the mode key's
            # kernels): with the collector on, its collections took over half of the time
            enabled = gc.isenabled()
            gc.disable()
            try:
                if not _key_libs:
                    _install_key_layer()
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
    """Whether the autograd layer is registered with torch right now (any thread; the
    mode key's registrations stay once made, unreachable outside the mode)."""
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
        _tls.stack.append(_Frame(self.enabled, self.on_unsupported, token, _in_mode_key()))
        _set_mode_key(self.enabled)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        frame = _tls.stack.pop()
        _set_mode_key(frame.key_was)
        if frame.isa_token is not _NO_ISA:
            _native.pop_isa(frame.isa_token)
        if frame.enabled:
            _release()
        cause = _not_invariant_cause(exc)
        if cause is not None and cause is not exc:
            raise cause.with_traceback(None) from exc
