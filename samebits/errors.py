"""The samebits exception tree.

    SamebitsError
    ├── NotInvariantError      an op reached under batch_invariant() that the mode
    │                          cannot run with a fixed reduction order
    ├── UnsupportedInputError  (also ValueError) a dtype, device or shape a kernel
    │                          does not take
    ├── NativeBuildError       the native kernels could not be compiled or loaded
    ├── AuditError             (also ValueError) a model or inputs the audit cannot use
    └── RecordError            a record is missing, truncated, corrupt or malformed
        └── TamperError        its outputs or inputs do not match the manifest's hashes

Every message names the op, dtype, shape or field at fault and says what to do.
"""

from __future__ import annotations


class SamebitsError(Exception):
    """Base class of every samebits error."""


class NotInvariantError(SamebitsError):
    """An op whose result would depend on batch size, padding or threads ran under
    ``batch_invariant()`` and samebits has no invariant kernel for it."""

    def __init__(self, op: str, dtype: object = None, shape: object = None, hint: str = ""):
        self.op, self.dtype, self.shape = op, dtype, shape
        where = []
        if dtype is not None:
            where.append(f"dtype={dtype}")
        if shape is not None:
            where.append(f"shape={tuple(shape)}")
        detail = f" ({', '.join(where)})" if where else ""
        msg = f"{op}{detail} is not covered by samebits.batch_invariant()"
        msg += f": {hint}" if hint else "; see samebits.covered_ops() for what is."
        super().__init__(msg)


class UnsupportedInputError(SamebitsError, ValueError):
    """A kernel was given a dtype, device or shape it does not take."""


class NativeBuildError(SamebitsError, RuntimeError):
    """The native kernels could not be built (no C compiler, or it failed)."""


class RecordError(SamebitsError):
    """A record directory is unusable: missing, truncated, corrupt or malformed."""


class TamperError(RecordError):
    """A record's stored outputs or inputs do not match the hashes in its manifest."""


class AuditError(SamebitsError, ValueError):
    """The audit cannot run: the model raised, its outputs hold no tensors, or the
    inputs have no batch dimension to vary."""
