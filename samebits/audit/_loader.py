"""``samebits.audit_loader``: run a data pipeline twice and under several worker
counts, compare its batches bit for bit, and establish by experiment why they differ."""

from __future__ import annotations

import copy
import random
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from samebits.audit import _causes as C
from samebits.audit._batches import (
    BatchPrint,
    Difference,
    fingerprint_batch,
    first_difference,
    item_stream,
    max_repeats,
    same_items,
)
from samebits.audit._progress import Progress
from samebits.audit._report import AuditReport, Finding
from samebits.errors import AuditError

LOADER_CHECKS = ("loader_repeat", "loader_workers")


@dataclass
class Pass:
    workers: int
    prints: list[BatchPrint]
    first: Any = None  # the first batch itself, for a model audit


def _seed_globals(seed: int) -> None:
    random.seed(seed)
    try:
        import numpy as np
    except ImportError:
        return
    np.random.seed(seed % 2**32)


SNAPSHOT_LIMIT = 256 * 2**20  # bytes of arrays a dataset may hold and still be copied


def _nbytes(x: Any, depth: int = 2) -> int:
    if isinstance(x, torch.Tensor):
        return x.numel() * x.element_size()
    if hasattr(x, "nbytes") and hasattr(x, "dtype"):
        return int(x.nbytes)
    if depth and isinstance(x, dict):
        return sum(_nbytes(v, depth - 1) for v in x.values())
    if depth and isinstance(x, (list, tuple)):
        return sum(_nbytes(v, depth - 1) for v in x[:1000])
    if depth and hasattr(x, "__dict__"):
        return _nbytes(vars(x), depth - 1)
    return 0


def _snapshot(dataset: Any) -> dict | None:
    """A deep copy of the dataset's attributes, for the state experiments; None when
    it cannot be copied, or holds too many arrays to copy cheaply."""
    try:
        if _nbytes(vars(dataset)) > SNAPSHOT_LIMIT:
            return None
        return copy.deepcopy(vars(dataset))
    except Exception:  # noqa: BLE001 - no snapshot, no state experiment
        return None


class _Runner:
    def __init__(self, make_loader, seed: int, max_batches: int | None, progress: Progress):
        self.make_loader, self.seed, self.max_batches = make_loader, seed, max_batches
        self.progress = progress

    def loader(self, workers: int) -> Iterable:
        try:
            loader = self.make_loader(workers)
        except Exception as e:  # noqa: BLE001 - reported as the audit's own error
            raise AuditError(f"make_loader({workers}) raised {type(e).__name__}: {e}") from e
        if not isinstance(loader, Iterable):
            raise AuditError(
                f"make_loader({workers}) returned {type(loader).__name__}, not a DataLoader "
                "(or another iterable of batches)"
            )
        got = getattr(loader, "num_workers", workers)
        if got != workers:
            raise AuditError(
                f"make_loader({workers}) returned a DataLoader with num_workers={got}: "
                "pass the factory's argument on as DataLoader(..., num_workers=num_workers)"
            )
        return loader

    def run(
        self,
        workers: int,
        *,
        seed: int | None = None,
        seed_globals: bool = False,
        restore: dict | None = None,
        keep_first: bool = False,
    ) -> tuple[Pass, Any]:
        """One pass: torch.manual_seed(seed) and nothing else (unless an experiment
        asks), a fresh loader, fingerprints of up to max_batches batches. Returns the
        pass and the loader's dataset (for state experiments)."""
        seed = self.seed if seed is None else seed
        torch.manual_seed(seed)
        if seed_globals:
            _seed_globals(seed)
        loader = self.loader(workers)
        dataset = getattr(loader, "dataset", None)
        if restore is not None and dataset is not None:
            vars(dataset).clear()
            vars(dataset).update(copy.deepcopy(restore))
        prints, first = [], None
        it = iter(loader)
        try:
            while self.max_batches is None or len(prints) < self.max_batches:
                try:
                    batch = next(it)
                except StopIteration:
                    break
                if keep_first and first is None:
                    first = batch
                prints.append(fingerprint_batch(batch))
                self.progress.step()
        except AuditError:
            raise
        except Exception as e:  # noqa: BLE001
            raise AuditError(
                f"iterating make_loader({workers}) raised {type(e).__name__} at batch "
                f"{len(prints)}: {e}"
            ) from e
        finally:
            del it  # shuts worker processes down when we stop before the end
        if not prints:
            raise AuditError(f"make_loader({workers}) yielded no batches: nothing to compare")
        return Pass(workers, prints, first), dataset


def _state_explains(run: _Runner, snap: dict | None, dataset: Any, wa: int, wb: int) -> bool:
    """The dataset's attributes changed since the audit began, and restoring them
    before each of two passes (workers ``wa`` and ``wb``) makes those passes agree."""
    if snap is None or dataset is None or not _changed(dataset, snap):
        return False
    p1, _ = run.run(wa, restore=snap)
    p2, _ = run.run(wb, restore=snap)
    return first_difference(p1.prints, p2.prints) is None


def _repeat_cause(run: _Runner, workers: int, a: Pass, b: Pass, snap, dataset) -> C.Cause:
    """Why two passes with the same seed differ: order, state, global RNGs, or none of these."""
    if same_items(a.prints, b.prints):
        return C.ORDER
    if _state_explains(run, snap, dataset, workers, workers):
        return C.STATE
    p1, _ = run.run(workers, seed_globals=True)
    p2, _ = run.run(workers, seed_globals=True)
    if first_difference(p1.prints, p2.prints) is None:
        return C.GLOBAL_RNG
    return C.UNEXPLAINED


def _changed(dataset: Any, snap: dict) -> bool:
    try:
        now = copy.deepcopy(vars(dataset))
    except Exception:  # noqa: BLE001
        return False
    return not _equal(now, snap)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and torch.equal(a, b)
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - numpy arrays and the like
        try:
            import numpy as np

            return bool(np.array_equal(a, b))
        except Exception:  # noqa: BLE001
            return False


def _workers_cause(run: _Runner, ref: Pass, test: Pass, snap, dataset) -> C.Cause:
    """Why another worker count gives different batches."""
    if max_repeats(test.prints) > max_repeats(ref.prints):
        return C.DUPLICATES
    if same_items(ref.prints, test.prints):
        return C.ORDER
    if _state_explains(run, snap, dataset, ref.workers, test.workers):
        return C.STATE
    # both from the dataset's initial state, so that state carried over cannot pass for randomness
    here, _ = run.run(test.workers, restore=snap)
    other, _ = run.run(test.workers, seed=run.seed + 1, restore=snap)
    if first_difference(here.prints, other.prints) is not None:
        return C.WORKER_RNG
    return C.WORKER_STATE


def _finding(check: str, what: str, d: Difference, cause: C.Cause) -> Finding:
    detail = f"{what}: first difference at {d.what}. Likely cause: {cause.text} ({cause.evidence})."
    return Finding(check, False, detail=detail, cause=cause.text, fix=cause.fix)


def _name(make_loader: Callable) -> str:
    return getattr(make_loader, "__qualname__", None) or type(make_loader).__name__


def audit_loader(
    make_loader: Callable[[int], Iterable],
    *,
    workers: Sequence[int] = (0, 2),
    repeats: int = 2,
    max_batches: int | None = None,
    seed: int = 0,
    model: Callable | None = None,
    quiet: bool = True,
) -> AuditReport:
    """Audit a data pipeline: ``make_loader(num_workers)`` returns a fresh DataLoader.

    Before each pass only ``torch.manual_seed(seed)`` is called, as a user's script
    does, so whatever torch's seed does not reach shows up. Checks ``loader_repeat``
    (``repeats`` passes per worker count) and ``loader_workers`` (each count against
    the first); each failure names the first differing batch, key and item, the cause
    found by experiment, and the fix. ``model``: also audit it on the first batch.
    """
    if not callable(make_loader):
        raise AuditError(
            f"make_loader must be a callable taking num_workers, got {type(make_loader).__name__}"
        )
    workers = list(dict.fromkeys(workers))
    if not workers or any(not isinstance(w, int) or isinstance(w, bool) or w < 0 for w in workers):
        raise AuditError(f"workers must be worker counts >= 0, got {workers!r}")
    if repeats < 2:
        raise AuditError(f"repeats must be >= 2 to compare passes, got {repeats}")
    if max_batches is not None and max_batches < 1:
        raise AuditError(f"max_batches must be >= 1 or None, got {max_batches}")
    progress = Progress(
        len(workers) * repeats * max_batches if max_batches else 0,
        quiet,
        "samebits audit_loader",
        "batch",
    )
    run = _Runner(make_loader, seed, max_batches, progress)
    findings: list[Finding] = []
    snap = dataset = None
    with warnings.catch_warnings():
        # the audit picks the worker counts; torch's advice on them is noise here
        warnings.filterwarnings("ignore", message="This DataLoader will create")
        try:
            # the dataset as it was before any pass, for the state experiments
            probe = run.loader(workers[0])
            dataset = getattr(probe, "dataset", None)
            snap = _snapshot(dataset) if dataset is not None else None
            del probe
            passes: dict[int, list[Pass]] = {}
            for w in workers:
                keep = w == workers[0]
                passes[w] = [run.run(w, keep_first=keep and r == 0)[0] for r in range(repeats)]
            repeat_fail = None
            for w in workers:
                ref = passes[w][0]
                for r, p in enumerate(passes[w][1:], start=2):
                    d = first_difference(ref.prints, p.prints)
                    if d is not None:
                        if repeat_fail is None:
                            cause = _repeat_cause(run, w, ref, p, snap, dataset)
                            what = f"num_workers={w}, pass 1 vs pass {r} with the same seed"
                            repeat_fail = _finding("loader_repeat", what, d, cause)
                        break
            ref0 = passes[workers[0]][0]
            n_batches, n_items = len(ref0.prints), len(item_stream(ref0.prints))
            scope = (
                f"{n_batches} batches, {n_items} items per pass; num_workers "
                f"{', '.join(map(str, workers))}; {repeats} passes each"
            )
            findings.append(
                repeat_fail
                or Finding(
                    "loader_repeat",
                    True,
                    detail=f"{scope}: every pass bit-identical to the first with the same seed",
                )
            )
            workers_fail = None
            for w in workers[1:]:
                test = passes[w][0]
                d = first_difference(ref0.prints, test.prints)
                if d is not None:
                    cause = _workers_cause(run, ref0, test, snap, dataset)
                    what = f"num_workers={w} vs num_workers={workers[0]}, same seed"
                    workers_fail = _finding("loader_workers", what, d, cause)
                    break
            if len(workers) > 1:
                findings.append(
                    workers_fail
                    or Finding(
                        "loader_workers",
                        True,
                        detail=f"{scope}: every worker count gives the batches of num_workers={workers[0]}",
                    )
                )
        finally:
            progress.close()
            if snap is not None and _changed(dataset, snap):  # leave the dataset as we found it
                vars(dataset).clear()
                vars(dataset).update(snap)
    compared = {
        "batches": n_batches,
        "items": n_items,
        "workers": workers,
        "repeats": repeats,
        "seed": seed,
        "max_batches": max_batches,
    }
    from samebits.record.fingerprint import fingerprint_id

    report = AuditReport(findings, _name(make_loader), n_items, False, fingerprint_id(), compared)
    if model is not None:
        from samebits.audit._audit import audit

        inner = audit(model, ref0.first, quiet=quiet)
        report.findings.extend(inner.findings)
        report.model = f"{report.model} -> {type(model).__name__}"
    return report
