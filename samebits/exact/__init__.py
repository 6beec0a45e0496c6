"""Exact, order-independent reductions: correctly rounded sums, means, dots, norms."""

from samebits.exact._core import exact_dot, exact_mean, exact_norm, exact_sum

__all__ = ["exact_dot", "exact_mean", "exact_norm", "exact_sum"]
