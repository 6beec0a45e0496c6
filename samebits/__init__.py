"""samebits: the same input gives the same output bits.

    with samebits.batch_invariant():
        out = model(batch)   # each item's bits are what it gets alone

See README.md for the guarantee table and docs/design.md for the reduction orders.
"""

from samebits._mode import NotInvariantWarning, batch_invariant, covered_ops, is_batch_invariant
from samebits.errors import (
    NativeBuildError,
    NotInvariantError,
    RecordError,
    SamebitsError,
    TamperError,
    UnsupportedInputError,
)
from samebits.record.determinism import deterministic
from samebits.record.fingerprint import diff as fingerprint_diff
from samebits.record.fingerprint import fingerprint, fingerprint_id
from samebits.record.store import Verification, record, verify

__version__ = "0.1.0"

__all__ = [
    "NativeBuildError",
    "NotInvariantError",
    "NotInvariantWarning",
    "RecordError",
    "SamebitsError",
    "TamperError",
    "UnsupportedInputError",
    "Verification",
    "__version__",
    "batch_invariant",
    "covered_ops",
    "deterministic",
    "fingerprint",
    "fingerprint_diff",
    "fingerprint_id",
    "is_batch_invariant",
    "record",
    "verify",
]
