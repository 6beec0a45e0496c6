"""Find out why a model's outputs differ: ``samebits.audit(model, inputs)``, and
why a data pipeline's batches do: ``samebits.audit_loader(make_loader)``."""

from samebits.audit._audit import audit
from samebits.audit._loader import LOADER_CHECKS, audit_loader
from samebits.audit._report import CHECKS, AuditReport, Finding, render_html

__all__ = [
    "CHECKS",
    "LOADER_CHECKS",
    "AuditReport",
    "Finding",
    "audit",
    "audit_loader",
    "render_html",
]
