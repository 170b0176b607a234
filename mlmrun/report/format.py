"""Number formatting and confidence intervals for reports: every number a template shows is made here.

Templates only place strings (STYLE.md 9.7), so this module is where rounding
rules live: Stata-like significant digits for estimates, fixed decimals for
test statistics, and "." for a value that is not available.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MISSING = "."
"""Shown for a value that is not available (Stata's missing value)."""
Z95 = 1.959963984540054
"""The 97.5% standard normal quantile (a constant: importing scipy.stats costs ~1 s of CLI start-up)."""


@dataclass(frozen=True)
class Table:
    """A formatted table: column headers, rows of strings, per-column alignment ('l' or 'r')."""

    columns: list[str]
    rows: list[list[str]]
    title: str = ""
    align: list[str] = field(default_factory=list)
    note: str = ""

    def __post_init__(self) -> None:
        if not self.align:
            self.align.extend(["l"] + ["r"] * (len(self.columns) - 1))


def finite(x: float | None) -> bool:
    """True for a real, finite number."""
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def num(x: float | None, sig: int = 6) -> str:
    """An estimate-like number with `sig` significant digits (plain notation in 1e-4..1e6)."""
    if not finite(x):
        return MISSING
    if x == 0:
        return "0"
    return f"{x:.{sig}g}"


def fixed(x: float | None, decimals: int) -> str:
    """A number with a fixed number of decimals (test statistics, log likelihoods)."""
    return f"{x:.{decimals}f}" if finite(x) else MISSING


def pvalue(p: float | None) -> str:
    """A p-value to three decimals, as Stata prints it."""
    return f"{p:.3f}" if finite(p) else MISSING


def z_and_p(est: float, se: float) -> tuple[float, float]:
    """Wald z statistic and two-sided normal p-value (nan when the SE is unavailable)."""
    if not (finite(se) and se > 0 and finite(est)):
        return math.nan, math.nan
    z = est / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def ci(est: float, se: float, scale: str = "linear") -> tuple[float, float]:
    """95% interval; 'log' for SDs and variances and 'atanh' for correlations (Stata mixed's choices)."""
    if not (finite(se) and finite(est)):
        return math.nan, math.nan
    if scale == "log":
        if est <= 0:
            return math.nan, math.nan
        half = Z95 * se / est
        return est * math.exp(-half), est * math.exp(half)
    if scale == "atanh":
        if abs(est) >= 1:
            return math.nan, math.nan
        centre, half = math.atanh(est), Z95 * se / (1 - est**2)
        return math.tanh(centre - half), math.tanh(centre + half)
    return est - Z95 * se, est + Z95 * se
