"""pytest plugin (entry point ``pytest11: samebits``): the ``samebits_golden``
fixture and the ``--samebits-update`` flag."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("samebits")
    group.addoption(
        "--samebits-update",
        action="store_true",
        default=False,
        help="rewrite samebits golden records instead of checking against them",
    )


class Golden:
    """Stores outputs as a golden record on first use (or with --samebits-update)
    and afterwards checks outputs against it, bitwise by default."""

    def __init__(self, directory: Path, stem: str, update: bool) -> None:
        self.directory, self.stem, self.update = directory, stem, update

    def path(self, name: str | None = None) -> Path:
        return self.directory / (self.stem if name is None else f"{self.stem}-{_safe(name)}")

    def check(self, outputs: Any, name: str | None = None, *, tolerance: str | None = None) -> None:
        from samebits.record.store import record, verify

        path = self.path(name)
        if self.update or not (path / "manifest.json").exists():
            record(outputs, path, tolerance=tolerance)
            if not self.update:
                pytest.fail(
                    f"golden record {path} did not exist: created it; run again to check against it"
                )
            return
        v = verify(path, outputs)
        if not v.ok:
            lines = [
                f"outputs differ from golden record {path} ({v.mode}): "
                f"{v.mismatched}/{v.total} outputs differ, first {v.first}, "
                f"max abs {v.max_abs:.3g}, max {v.max_ulp} ulp",
                *v.problems,
                *(
                    f"environment: {d['field']}: {d['a']!r} -> {d['b']!r}"
                    for d in v.fingerprint_diff
                ),
                "rerun with --samebits-update to accept the new outputs",
            ]
            pytest.fail("\n".join(lines))


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_") or "x"


@pytest.fixture
def samebits_golden(request: pytest.FixtureRequest) -> Golden:
    """``samebits_golden.check(outputs[, name])``: golden outputs under
    ``<test dir>/golden/<module>/<test>``."""
    test_file = Path(request.node.path)
    directory = test_file.parent / "golden" / test_file.stem
    return Golden(directory, _safe(request.node.name), request.config.getoption("samebits_update"))


class Check:
    """The ``samebits_check`` fixture: ``.batch_invariant(model, inputs, ...)`` and
    ``.reproducible(model, inputs, ...)``, each returning the audit report or failing."""

    def batch_invariant(self, model, inputs, **kw):
        from samebits.testing import assert_batch_invariant

        return assert_batch_invariant(model, inputs, **kw)

    def reproducible(self, model, inputs, **kw):
        from samebits.testing import assert_reproducible

        return assert_reproducible(model, inputs, **kw)


@pytest.fixture
def samebits_check() -> Check:
    """Assert batch invariance and reproducibility of a model in a test."""
    return Check()
