"""What happens inside a forward pass: per-module outputs (forward hooks), aten ops
inside one module, and random-number-consuming ops (a dispatch-mode trace)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from samebits.audit._inputs import leaves

# aten ops that draw random numbers. The dropout family counts when train=True.
RNG_OPS = {
    "bernoulli",
    "bernoulli_",
    "native_dropout",
    "_fused_dropout",
    "rand",
    "rand_like",
    "randn",
    "randn_like",
    "randint",
    "randint_like",
    "randperm",
    "multinomial",
    "normal",
    "normal_",
    "uniform_",
    "exponential_",
    "geometric_",
    "cauchy_",
    "log_normal_",
    "random_",
    "poisson",
    "rrelu_with_noise",
    "rrelu_with_noise_",
}
DROPOUTS = {
    "dropout",
    "dropout_",
    "feature_dropout",
    "feature_dropout_",
    "alpha_dropout",
    "alpha_dropout_",
    "feature_alpha_dropout",
    "feature_alpha_dropout_",
}


def _module_stack_hooks(model: torch.nn.Module, stack: list[str]):
    handles = []
    for name, mod in model.named_modules():

        def pre(_m, _a, name=name):
            stack.append(name or "<root>")

        def post(_m, _a, _o):
            if stack:
                stack.pop()

        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post))
    return handles


@dataclass
class RngUse:
    op: str
    module: str
    detail: str


class _RngMode(TorchDispatchMode):
    def __init__(self, stack: list[str]) -> None:
        super().__init__()
        self.stack, self.found = stack, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.__name__.split(".")[0] if hasattr(func, "__name__") else str(func)
        base = func._schema.name.split("::")[-1] if hasattr(func, "_schema") else name
        if base in RNG_OPS:
            self.found.append(
                RngUse(
                    f"aten::{base}",
                    self.stack[-1] if self.stack else "<root>",
                    "draws random numbers",
                )
            )
        elif base in DROPOUTS:
            train = args[2] if len(args) > 2 else kwargs.get("train", False)
            p = args[1] if len(args) > 1 else kwargs.get("p", 0.0)
            if train and p > 0:
                self.found.append(
                    RngUse(
                        f"aten::{base}",
                        self.stack[-1] if self.stack else "<root>",
                        f"train=True, p={p}",
                    )
                )
        return func(*args, **kwargs)


def find_rng(model: torch.nn.Module, run) -> list[RngUse]:
    """RNG-consuming ops seen while ``run()`` executes the model once."""
    stack: list[str] = []
    handles = _module_stack_hooks(model, stack) if isinstance(model, torch.nn.Module) else []
    mode = _RngMode(stack)
    try:
        with mode:
            run()
    finally:
        for h in handles:
            h.remove()
    return mode.found


@dataclass
class ModuleCall:
    name: str
    outputs: list[torch.Tensor] = field(default_factory=list)


@contextmanager
def record_modules(model: torch.nn.Module):
    """Collect every module call's output tensors, in the order calls finish."""
    calls: list[ModuleCall] = []
    handles = []
    for name, mod in model.named_modules():

        def hook(_m, _a, out, name=name):
            calls.append(ModuleCall(name or "<root>", [t.detach().clone() for _, t in leaves(out)]))

        handles.append(mod.register_forward_hook(hook))
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


# ops that move, view or copy numbers but compute none: never "the op that diverged"
MOVES = {
    "view",
    "_unsafe_view",
    "reshape",
    "_reshape_alias",
    "transpose",
    "t",
    "permute",
    "expand",
    "contiguous",
    "clone",
    "copy",
    "copy_",
    "_to_copy",
    "to",
    "detach",
    "alias",
    "lift_fresh",
    "slice",
    "select",
    "unsqueeze",
    "squeeze",
    "flatten",
    "unflatten",
    "split",
    "split_with_sizes",
    "chunk",
    "unbind",
    "narrow",
    "as_strided",
}


def computes(op: str) -> bool:
    """Whether an aten op (``aten::name`` or ``aten::name.overload``) computes values."""
    return op.split("::")[-1].split(".")[0] not in MOVES


def _key(t: torch.Tensor):
    try:
        return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride())
    except (RuntimeError, NotImplementedError):
        return None


@dataclass
class OpCall:
    op: str
    inputs: list[torch.Tensor]
    outputs: list[torch.Tensor]
    module: str = ""  # the innermost module running when the op ran
    producers: list[str] = field(default_factory=list)  # per input: "op in 'module'" or ""


class _OpMode(TorchDispatchMode):
    """Records aten ops while the flag ``active[0]`` is set (inside one module), and
    for every op which op and module produced each tensor (so an input that already
    differs can be traced to where it came from)."""

    def __init__(self, active: list[bool], stack: list[str]) -> None:
        super().__init__()
        self.active, self.stack, self.calls = active, stack, []
        self.made: dict = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func._schema.name if hasattr(func, "_schema") else str(func)
        where = self.stack[-1] if self.stack else "<root>"
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if self.active[0]:
            ins = [a.detach().clone() for a in tensors]
            outs = [t.detach().clone() for _, t in leaves(out)]
            made = [self.made.get(_key(a), "") for a in tensors]
            self.calls.append(OpCall(name, ins, outs, where, made))
        for _, t in leaves(out):
            k = _key(t)
            if k is not None:
                self.made[k] = f"{name} in {where!r}"
        return out


def trace_ops(model: torch.nn.Module, module_name: str, run) -> list[OpCall]:
    """aten ops executed inside the first call of ``module_name`` during ``run()``."""
    target = dict(model.named_modules()).get("" if module_name == "<root>" else module_name)
    if target is None:
        return []
    active, seen = [False], [False]

    def pre(_m, _a):
        if not seen[0]:
            active[0] = True

    def post(_m, _a, _o):
        if active[0]:
            active[0], seen[0] = False, True

    stack: list[str] = []
    handles = _module_stack_hooks(model, stack)
    h1, h2 = target.register_forward_pre_hook(pre), target.register_forward_hook(post)
    mode = _OpMode(active, stack)
    try:
        with mode:
            run()
    finally:
        h1.remove()
        h2.remove()
        for h in handles:
            h.remove()
    return mode.calls
