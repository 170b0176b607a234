"""Number formatting and confidence intervals for reports: every number a template shows is made here.

Templates only place strings (STYLE.md 9.7), so this module is where rounding
rules live: Stata-like significant digits for estimates, fixed decimals for
test statistics, and "." for a value that is not available (None; and an SE
that is NaN, FitResult's marker for "no SE"). Values that are there but not
finite are written as such: "inf", "-inf" and "NaN" (an interval whose end
overflows, an estimate that diverged), never turned into an error while
rendering: a fit's results must survive its report. results.json writes
null for every non-finite number (results.jsonable).
"""

from __future__ import annotations

import math
import numbers
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
    return isinstance(x, numbers.Real) and math.isfinite(x)


def _nonfinite(x: float | None) -> str | None:
    """'.' for None, 'inf' / '-inf' / 'NaN' for non-finite numbers, None for a finite number."""
    if not isinstance(x, numbers.Real):
        return MISSING
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return None


def num(x: float | None, sig: int = 6) -> str:
    """An estimate-like number with `sig` significant digits (plain notation in 1e-4..1e6)."""
    text = _nonfinite(x)
    if text is not None:
        return text
    if x == 0:
        return "0"
    return f"{x:.{sig}g}"


def se_num(se: float | None) -> str:
    """A standard error: '.' when not available (None or NaN), else like `num` (inf shown as 'inf')."""
    return MISSING if not isinstance(se, numbers.Real) or math.isnan(se) else num(se)


def fixed(x: float | None, decimals: int) -> str:
    """A number with a fixed number of decimals (test statistics, log likelihoods)."""
    text = _nonfinite(x)
    return text if text is not None else f"{x:.{decimals}f}"


def pvalue(p: float | None) -> str:
    """A p-value to three decimals, as Stata prints it."""
    return fixed(p, 3)


def _available(est: float | None, se: float | None) -> bool:
    """An SE to build a statistic from: a number, not NaN (infinite is allowed), and an estimate that is finite."""
    return finite(est) and isinstance(se, numbers.Real) and not math.isnan(se)


def z_and_p(est: float, se: float) -> tuple[float | None, float | None]:
    """Wald z statistic and two-sided normal p-value (None when the SE is unavailable or 0)."""
    if not (_available(est, se) and se > 0):
        return None, None
    z = est / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def _exp(x: float) -> float:
    """exp that overflows to inf instead of raising (math.exp raises OverflowError beyond ~709.78)."""
    return math.inf if x > 709.0 else math.exp(x)


def ci(est: float, se: float, scale: str = "linear") -> tuple[float | None, float | None]:
    """95% interval; 'log' for SDs and variances and 'atanh' for correlations (Stata mixed's choices).

    None when it cannot be formed (no SE, an estimate outside the scale's domain); an end that
    overflows is +-inf (an SD of 1e-3 with an SE of 1 has an upper end of exp(1960) times the SD).
    """
    if not _available(est, se):
        return None, None
    if scale == "log":
        if est <= 0:
            return None, None
        half = Z95 * se / est
        return est * _exp(-half), est * _exp(half)
    if scale == "atanh":
        if abs(est) >= 1:
            return None, None
        centre, half = math.atanh(est), Z95 * se / (1 - est**2)
        return math.tanh(centre - half), math.tanh(centre + half)
    return est - Z95 * se, est + Z95 * se


MAX_DECIMALS = 10


def column_decimals(values: list[float | None], digits: int) -> int:
    """Decimals of a column: `digits`, or more when the column's largest |value| is below 1, so that it still
    shows `digits` significant digits (a variance of 2.4e-5 next to an SD of 0.0049 reads 0.000024, not 0.0000)."""
    magnitudes = [abs(v) for v in values if finite(v) and v != 0]
    if not magnitudes:
        return digits
    return min(MAX_DECIMALS, max(digits, digits - 1 - math.floor(math.log10(max(magnitudes)))))


def format_columns(body: list[list[object]], kinds: list[str], digits: int) -> list[list[str]]:
    """Format raw table cells column by column; text cells stay as they are.

    kinds per column: 'text'; 'num' (one number of decimals for the whole column, `column_decimals`,
    so the column aligns on the decimal point); 'z' (2 decimals); 'p' (3 decimals, as Stata prints P>|z|).
    """
    decimals = [column_decimals([c for row in body if isinstance(c := row[j], numbers.Real) or c is None], digits)
                if kind == "num" else 0 for j, kind in enumerate(kinds)]
    out = []
    for row in body:
        line = []
        for j, c in enumerate(row):
            if isinstance(c, str):
                line.append(c)
            elif kinds[j] == "z":
                line.append(fixed(c, 2))
            elif kinds[j] == "p":
                line.append(pvalue(c))
            else:
                line.append(fixed(c, decimals[j]))
        out.append(line)
    return out
