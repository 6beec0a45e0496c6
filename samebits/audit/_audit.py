"""``samebits.audit``: run a model under perturbations and say which invariance
fails, where it first diverges, by how much, and whether the mode cures it."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from samebits._mode import batch_invariant, is_batch_invariant
from samebits.audit._align import Size, differ, scale
from samebits.audit._inputs import Items, accepts, call, item_part, make_items
from samebits.audit._progress import Progress as _Progress
from samebits.audit._report import CHECKS, AuditReport, Finding
from samebits.audit._trace import computes, find_rng, record_modules, trace_ops
from samebits.errors import AuditError
from samebits.record.compare import compare


@dataclass
class Probe:
    """One forward pass and the item to read from it (``pos`` None: the whole output)."""

    batch: Any
    n: int
    pos: int | None
    where: torch.Tensor | None = None
    threads: int | None = None
    label: str = ""


@dataclass
class Pair:
    ref: Probe
    test: Probe
    what: str


def _parts(leaves: list[tuple[str, torch.Tensor]], p: Probe) -> list[tuple[str, torch.Tensor]]:
    if p.pos is None:
        return leaves
    return [(name, item_part(t, p.pos, p.n, p.where)) for name, t in leaves]


def _diff(a: list[tuple[str, torch.Tensor]], b: list[tuple[str, torch.Tensor]]):
    """(comparable, max_abs, max_ulp, first differing leaf) over matching leaves."""
    comparable, max_abs, max_ulp, first = 0, 0.0, 0, None
    for (na, ta), (_nb, tb) in zip(a, b, strict=False):
        if ta.shape != tb.shape or ta.dtype != tb.dtype:
            continue
        comparable += 1
        d = compare(ta, tb)
        if not d.equal_bits:
            first = first or na
            max_abs, max_ulp = max(max_abs, d.max_abs), max(max_ulp, d.max_ulp)
    return comparable, max_abs, max_ulp, first


class _Auditor:
    def __init__(
        self, model, items: Items, repeats: int, batch_sizes, threads, max_items: int
    ) -> None:
        self.model, self.items = model, items
        self.repeats = max(2, repeats)
        n = items.n
        self.ids = list(range(min(n, max_items)))
        self.batch_sizes = sorted({b for b in (batch_sizes or (2, 3, 5, max(n, 2))) if b >= 2})
        cores = os.cpu_count() or 2
        self.threads = list(dict.fromkeys(threads or (1, 2, cores + 1)))

    # -- running -----------------------------------------------------------
    def run(self, p: Probe) -> list[tuple[str, torch.Tensor]]:
        before = torch.get_num_threads()
        if p.threads:
            torch.set_num_threads(p.threads)
        try:
            return call(self.model, p.batch)
        finally:
            torch.set_num_threads(before)

    def around(self, i: int, size: int, pos: int) -> list[int]:
        """A batch of ``size`` with item i at ``pos``, the other slots cycling the other items."""
        others = [j for j in range(self.items.n) if j != i] or [i]
        idx, k = [], 0
        for slot in range(size):
            if slot == pos:
                idx.append(i)
            else:
                idx.append(others[k % len(others)])
                k += 1
        return idx

    # -- the checks as pairs of probes --------------------------------------
    def pairs(self, check: str) -> list[Pair]:
        it, all_idx = self.items, list(range(self.items.n))
        if check == "repeat":
            full = Probe(it.batch(all_idx), it.n, None, label="full batch")
            return [
                Pair(full, full, f"repeat {r + 1} of the full batch")
                for r in range(self.repeats - 1)
            ]
        if check == "threads":
            t0 = self.threads[0]
            return [
                Pair(
                    Probe(it.batch(all_idx), it.n, None, threads=t0, label=f"{t0} threads"),
                    Probe(it.batch(all_idx), it.n, None, threads=t, label=f"{t} threads"),
                    f"the full batch at {t0} vs {t} threads",
                )
                for t in self.threads[1:]
            ]
        out = []
        if check == "batch_size":
            for i in self.ids:
                alone = Probe(it.batch([i]), 1, 0, label=f"item {i} alone")
                for bs in self.batch_sizes:
                    out.append(
                        Pair(
                            alone,
                            Probe(it.batch(self.around(i, bs, 0)), bs, 0),
                            f"item {i} alone vs first in a batch of {bs}",
                        )
                    )
        elif check == "batch_position":
            bs = max(self.batch_sizes)
            for i in self.ids:
                first = Probe(it.batch(self.around(i, bs, 0)), bs, 0)
                for pos in sorted({bs // 2, bs - 1} - {0}):
                    out.append(
                        Pair(
                            first,
                            Probe(it.batch(self.around(i, bs, pos)), bs, pos),
                            f"item {i} at position 0 vs {pos} of a batch of {bs}",
                        )
                    )
        elif check == "padding":
            sides = ["right"] + (["left"] if accepts(self.model, "position_ids") else [])
            longest = max(range(it.n), key=lambda j: len(it.real_positions(j)))
            for i in self.ids:
                alone = Probe(it.stripped(i), 1, 0, label=f"item {i} unpadded")
                for side in sides:
                    idx = [i, longest] if longest != i else [i]
                    batch, where = it.padded(idx, side, extra=3)
                    out.append(
                        Pair(
                            alone,
                            Probe(batch, len(idx), 0, where=where[0]),
                            f"item {i} unpadded vs {side}-padded in a batch",
                        )
                    )
        return out

    def evaluate(self, pairs: list[Pair], progress: _Progress):
        """First failing pair and the size of the worst difference over all pairs."""
        cache: dict[int, list] = {}
        size, first_fail, comparable = Size(), None, 0
        for pair in pairs:
            if id(pair.ref) not in cache or pair.ref is pair.test:
                cache[id(pair.ref)] = self.run(pair.ref)
                progress.step()
            ref = cache[id(pair.ref)]
            test = self.run(pair.test)
            progress.step()
            pa, pb = _parts(ref, pair.ref), _parts(test, pair.test)
            c, a, u, leaf = _diff(pa, pb)
            comparable += c
            if leaf is not None:
                size.add(a, u, *scale(pa, pb))
                first_fail = first_fail or (pair, leaf)
        return first_fail, size, comparable

    # -- localization ---------------------------------------------------------
    def _module_parts(self, p: Probe):
        before = torch.get_num_threads()
        if p.threads:
            torch.set_num_threads(p.threads)
        try:
            with record_modules(self.model) as calls:
                call(self.model, p.batch)
        finally:
            torch.set_num_threads(before)
        return [(c.name, _parts([(c.name, t) for t in c.outputs], p)) for c in calls]

    def locate(self, pair: Pair):
        """(first diverging module, the op found in it or None, per-module divergence)."""
        if not isinstance(self.model, torch.nn.Module):
            return None, None, []
        ref, test = self._module_parts(pair.ref), self._module_parts(pair.test)
        divergence, first, seen = [], None, set()
        for (name_a, pa), (name_b, pb) in zip(ref, test, strict=False):
            if name_a != name_b:
                break
            c, a, u, _ = _diff(pa, pb)
            if c == 0:
                continue
            if name_a not in seen:
                seen.add(name_a)
                divergence.append({"module": name_a, "max_ulp": u, "max_abs": a})
            if u and first is None:
                first = name_a
        op = self.locate_op(pair, first) if first else None
        return first, op, divergence

    def locate_op(self, pair: Pair, module: str) -> OpFound | None:
        """The first op inside ``module`` that computes (views, reshapes and copies
        do not) whose output differs while its inputs match. Failing that, the first
        computing op whose output differs, with the input that already differed."""

        def ops(p: Probe):
            before = torch.get_num_threads()
            if p.threads:
                torch.set_num_threads(p.threads)
            try:
                return trace_ops(self.model, module, lambda: call(self.model, p.batch))
            finally:
                torch.set_num_threads(before)

        try:
            ra, rb = ops(pair.ref), ops(pair.test)
        except Exception:  # noqa: BLE001 - op tracing is best effort
            return None
        fallback = None
        for a, b in zip(ra, rb, strict=False):
            if a.op != b.op:
                break
            if not computes(a.op) or not differ(a.outputs, b.outputs, pair):
                continue
            bad = [
                i
                for i, (x, y) in enumerate(zip(a.inputs, b.inputs, strict=False))
                if differ([x], [y], pair)
            ]
            if not bad:
                return OpFound(a.op, b.module)
            if fallback is None:
                i = bad[0]
                made = b.producers[i] if i < len(b.producers) else ""
                fallback = OpFound(
                    a.op,
                    b.module,
                    f"its input {i} already differs"
                    + (f", made by {made}" if made else f", from outside {module!r}"),
                )
        return fallback


@dataclass
class OpFound:
    op: str
    module: str
    note: str = ""  # set when the op's inputs already differed


def _describe(
    pair: Pair,
    size: Size,
    module: str | None,
    found: OpFound | None,
    cured: bool | None,
    rng: list,
) -> str:
    s = f"{pair.what}: {size.headline()}"
    if module and not (found and found.module == module):
        s += f"; first diverging module {module!r}"
    if found:
        s += f"; first op to compute a different value: {found.module} ({found.op})"
        if found.note:
            s += f", though {found.note}"
    s += f"; per element up to {size.max_ulp} ulp"
    if cured is True:
        s += ". Cured by samebits.batch_invariant()."
    elif cured is False and rng:
        s += (
            f". Not cured by samebits.batch_invariant(): {rng[0].op} draws random numbers in "
            f"{rng[0].module!r} (see the stochastic finding); call model.eval()."
        )
    elif cured is False:
        s += ". Not cured by samebits.batch_invariant(): an op outside the mode's coverage varies."
    return s


def audit(
    model: Callable,
    inputs: Any,
    *,
    checks: Sequence[str] | None = None,
    repeats: int = 3,
    batch_sizes: Sequence[int] | None = None,
    threads: Sequence[int] | None = None,
    localize: bool = True,
    collate: Callable[[list], Any] | None = None,
    max_items: int = 4,
    quiet: bool = True,
) -> AuditReport:
    """Audit ``model`` on ``inputs`` for run-to-run, batch-size, position, padding
    and thread-count invariance, stochastic ops and environment risks.

    ``inputs``: a batched tensor, a dict of batched tensors (HF ``input_ids`` +
    ``attention_mask`` enable the padding check), or a list of items with ``collate``.
    Each item among the first ``max_items`` is checked alone against inside batches.
    """
    checks = list(checks or CHECKS)
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise AuditError(f"unknown checks {unknown}; choose from {list(CHECKS)}")
    items = make_items(inputs, collate)
    if "padding" in checks and not items.can_pad:
        checks.remove("padding")
    aud = _Auditor(model, items, repeats, batch_sizes, threads, max_items)
    in_mode = is_batch_invariant()
    call(model, items.batch([0]))  # fail early, clearly, if the model cannot run
    findings: list[Finding] = []
    plan = {c: aud.pairs(c) for c in checks if c not in ("stochastic", "environment")}
    progress = _Progress(sum(2 * len(p) for p in plan.values()) + 1, quiet)
    rng = find_rng(model, lambda: call(model, items.batch(list(range(items.n)))))
    progress.step()
    try:
        for check in checks:
            if check == "stochastic":
                findings.append(_stochastic(model, rng))
                continue
            if check == "environment":
                findings.extend(_environment(model, rng))
                continue
            pairs = plan[check]
            fail, size, _ = aud.evaluate(pairs, progress)
            if fail is None:
                findings.append(
                    Finding(check, True, detail=f"{len(pairs)} comparisons, all bit-identical")
                )
                continue
            pair, _leaf = fail
            module, found, div = aud.locate(pair) if localize else (None, None, [])
            cured = None
            if not in_mode:
                with batch_invariant(on_unsupported="warn"):
                    cured = aud.evaluate(pairs, _Progress(0, True))[0] is None
            elif rng:
                cured = False
            findings.append(
                Finding(
                    check,
                    False,
                    found.module if found else module,
                    found.op if found else None,
                    size.max_abs,
                    size.max_ulp,
                    _describe(pair, size, module, found, cured, rng),
                    cured,
                    div,
                    max_rel=size.max_rel,
                    ulp_at_max=size.ulp_at_max,
                )
            )
    finally:
        progress.close()
    name = type(model).__name__
    from samebits.record.fingerprint import fingerprint_id

    return AuditReport(findings, name, items.n, in_mode, fingerprint_id())


def _stochastic(model, rng) -> Finding:
    # modules whose train mode changes their output: dropout draws, batch norm uses batch stats
    train_sensitive = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._BatchNorm)
    training = []
    if isinstance(model, torch.nn.Module):
        training = [
            n or "<root>"
            for n, m in model.named_modules()
            if m.training and isinstance(m, train_sensitive)
        ]
    if not rng and not training:
        return Finding(
            "stochastic",
            True,
            detail="no random-number ops ran and no dropout or batch-norm module is in training mode",
        )
    if rng:
        use = rng[0]
        detail = (
            f"{use.op} ran in module {use.module!r} ({use.detail}): it draws random numbers at "
            "inference. Call model.eval(), or remove training=True from F.dropout / pass p=0."
        )
        if training:
            detail += f" Modules in training mode: {', '.join(training[:5])}{'...' if len(training) > 5 else ''}."
        return Finding(
            "stochastic", False, use.module, use.op, detail=detail, cured_by_batch_invariant=False
        )
    return Finding(
        "stochastic",
        False,
        training[0],
        None,
        detail=f"modules left in training mode: {', '.join(training[:5])}: batch-dependent layers "
        "(dropout, batch norm) behave differently there. Call model.eval().",
        cured_by_batch_invariant=False,
    )


def _device(model) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


def _environment(model, rng) -> list[Finding]:
    out = []
    dev = _device(model)
    if dev.type == "cuda":
        flags = {
            "TF32 matmul is on (torch.backends.cuda.matmul.allow_tf32)": torch.backends.cuda.matmul.allow_tf32,
            "cudnn.benchmark is on: it picks kernels by timing": torch.backends.cudnn.benchmark,
            "deterministic algorithms are off (torch.use_deterministic_algorithms)": not torch.are_deterministic_algorithms_enabled(),
        }
        for detail, bad in flags.items():
            if bad:
                out.append(
                    Finding(
                        "environment",
                        False,
                        detail=detail + ". samebits.deterministic() fixes it.",
                        cured_by_batch_invariant=False,
                    )
                )
    if rng and torch.initial_seed() >= 2**32:
        out.append(
            Finding(
                "environment",
                False,
                detail=f"random ops run but the torch RNG looks unseeded (initial_seed={torch.initial_seed()}); "
                "call torch.manual_seed or samebits.deterministic().",
                cured_by_batch_invariant=False,
            )
        )
    if not out:
        out.append(
            Finding("environment", True, detail=f"no determinism risks for a model on {dev.type}")
        )
    return out
