"""samebits: the same input gives the same output bits.

    with samebits.batch_invariant():
        out = model(batch)   # each item's bits are what it gets alone

See README.md for the guarantee table and docs/design.md for the reduction orders.
"""

from samebits._mode import NotInvariantWarning, batch_invariant, covered_ops, is_batch_invariant
from samebits._native import native_info
from samebits.audit import AuditReport, Finding, audit, audit_loader
from samebits.errors import (
    AuditError,
    NativeBuildError,
    NotInvariantError,
    RecordError,
    SamebitsError,
    TamperError,
    UnsupportedInputError,
)
from samebits.exact import exact_dot, exact_mean, exact_norm, exact_sum
from samebits.record.determinism import deterministic
from samebits.record.fingerprint import diff as fingerprint_diff
from samebits.record.fingerprint import fingerprint, fingerprint_id
from samebits.record.store import Verification, record, verify

__version__ = "0.1.0"

# Submodules the README spells as attributes (samebits.data.item_generator,
# samebits.distributed.all_reduce_exact, samebits.dask.predict, samebits.testing):
# imported on first use, so `import samebits` stays light (dask is an extra).
_SUBMODULES = ("dask", "data", "distributed", "models", "serve", "testing")


def __getattr__(name: str):
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"samebits.{name}")
    raise AttributeError(f"module 'samebits' has no attribute {name!r}")


__all__ = [
    "AuditError",
    "AuditReport",
    "Finding",
    "NativeBuildError",
    "NotInvariantError",
    "NotInvariantWarning",
    "RecordError",
    "SamebitsError",
    "TamperError",
    "UnsupportedInputError",
    "Verification",
    "__version__",
    "audit",
    "audit_loader",
    "batch_invariant",
    "covered_ops",
    "deterministic",
    "exact_dot",
    "exact_mean",
    "exact_norm",
    "exact_sum",
    "fingerprint",
    "fingerprint_diff",
    "fingerprint_id",
    "is_batch_invariant",
    "native_info",
    "record",
    "verify",
]
