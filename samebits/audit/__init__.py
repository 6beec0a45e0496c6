"""Find out why a model's outputs differ: ``samebits.audit(model, inputs)``."""

from samebits.audit._audit import audit
from samebits.audit._report import CHECKS, AuditReport, Finding, render_html

__all__ = ["CHECKS", "AuditReport", "Finding", "audit", "render_html"]
