"""Assertions for tests: ``assert_batch_invariant`` and ``assert_reproducible``.

The pytest plugin (``samebits.testing._plugin``, loaded through the ``pytest11``
entry point) offers them as the ``samebits_check`` fixture, plus ``samebits_golden``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from samebits.audit import AuditReport, audit

BATCH_CHECKS = ("batch_size", "batch_position", "padding")
REPRO_CHECKS = ("repeat", "threads", "stochastic")


def _assert(report: AuditReport, what: str) -> AuditReport:
    if not report.ok:
        lines = [f"{what} failed:"] + [f"  {f.check}: {f.detail}" for f in report.failed()]
        raise AssertionError("\n".join(lines))
    return report


def assert_batch_invariant(
    model: Callable,
    inputs: Any,
    *,
    batch_sizes: Sequence[int] | None = None,
    collate: Callable | None = None,
    max_items: int = 4,
) -> AuditReport:
    """Each item's output has the same bits alone, inside batches of several sizes, at
    several positions, and (for HF-style dict inputs) left/right padded."""
    report = audit(
        model,
        inputs,
        checks=BATCH_CHECKS,
        batch_sizes=batch_sizes,
        collate=collate,
        max_items=max_items,
    )
    return _assert(report, "assert_batch_invariant")


def assert_reproducible(
    model: Callable,
    inputs: Any,
    *,
    repeats: int = 3,
    threads: Sequence[int] | None = None,
    collate: Callable | None = None,
) -> AuditReport:
    """Repeated runs and different thread counts give the same bits, and no random op runs."""
    report = audit(
        model, inputs, checks=REPRO_CHECKS, repeats=repeats, threads=threads, collate=collate
    )
    return _assert(report, "assert_reproducible")


__all__ = ["assert_batch_invariant", "assert_reproducible"]
