"""samebits: the same input gives the same output bits.

    with samebits.batch_invariant():
        out = model(batch)   # each item's bits are what it gets alone

See README.md for the guarantee table and docs/design.md for the reduction orders.
"""

from samebits._mode import NotInvariantWarning, batch_invariant, covered_ops, is_batch_invariant
from samebits.errors import (
    NativeBuildError,
    NotInvariantError,
    SamebitsError,
    UnsupportedInputError,
)

__version__ = "0.1.0"

__all__ = [
    "NativeBuildError",
    "NotInvariantError",
    "NotInvariantWarning",
    "SamebitsError",
    "UnsupportedInputError",
    "__version__",
    "batch_invariant",
    "covered_ops",
    "is_batch_invariant",
]
