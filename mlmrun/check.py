"""`mlmrun fit SPEC --check`: refit and compare with the results.json committed beside the report.

An analysis kept in version control carries its results.json; a CI job on every pull request that
touches a spec or its data runs `--check`, which fits again (writing nothing) and compares:

- the data file's SHA-256 and the spec's SHA-256: equal (the committed results are of these files);
- the parameter table: the same names, each free or fixed as before;
- the log likelihood within LOGLIK_ABS + LOGLIK_REL * |loglik|;
- every estimate within ESTIMATE_ABS + ESTIMATE_REL * |committed|;
- every standard error within SE_ABS + SE_REL * |committed| (both missing, or both present);
- convergence as before.

The tolerances allow what differs between machines and library versions (optimiser end points,
BLAS summation order: around 1e-6 relative on these models) and nothing a change of model or data
gives. Exit EXIT_OK (0) when everything agrees, EXIT_DIFFERS (4) with one line per difference otherwise;
a missing or unreadable results.json is CheckError (exit 2).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlmrun.display import display_path
from mlmrun.errors import MlmrunError

EXIT_OK = 0
EXIT_DIFFERS = 4
"""`fit --check`: the refit does not reproduce the committed results.json."""

LOGLIK_ABS, LOGLIK_REL = 1e-4, 1e-7
ESTIMATE_ABS, ESTIMATE_REL = 1e-4, 1e-4
SE_ABS, SE_REL = 1e-4, 1e-3
MOST_LINES = 50
"""At most this many differences are listed (then how many more)."""


class CheckError(MlmrunError):
    """No committed results.json to compare with, or one that cannot be read (exit 2)."""


@dataclass(frozen=True)
class Tolerance:
    """|now - committed| <= absolute + relative * |committed|."""

    absolute: float
    relative: float

    def allows(self, committed: float, now: float) -> bool:
        if not (math.isfinite(committed) and math.isfinite(now)):
            return committed == now or (math.isnan(committed) and math.isnan(now))
        return abs(now - committed) <= self.absolute + self.relative * abs(committed)

    def __str__(self) -> str:
        return f"{self.absolute:g} + {self.relative:g} x |committed|"


LOGLIK = Tolerance(LOGLIK_ABS, LOGLIK_REL)
ESTIMATE = Tolerance(ESTIMATE_ABS, ESTIMATE_REL)
SE = Tolerance(SE_ABS, SE_REL)


def committed_results(folder: Path) -> dict[str, Any]:
    """The results.json in `folder` (where `fit` writes it), read before the refit so a missing one fails fast."""
    path = folder / "results.json"
    shown = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckError(f"--check: no committed results at {shown}; run `mlmrun fit` without --check first, "
                         "and commit its results.json") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckError(f"--check: cannot read {shown} ({exc}); restore the committed file") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckError(f"--check: {shown} is not valid JSON (line {exc.lineno}); restore the committed file") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("parameters"), list):
        raise CheckError(f"--check: {shown} is not an mlmrun results.json (no parameter list); restore it")
    return doc


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def differences(committed: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Every way `now` (a fresh results.json document) fails to reproduce `committed`, one readable line each."""
    lines: list[str] = []
    for section, what in (("data", "the data file"), ("spec", "the spec file")):
        old, new = (committed.get(section) or {}).get("sha256"), (now.get(section) or {}).get("sha256")
        if old != new:
            lines.append(f"{section}.sha256: {what} changed: committed {str(old)[:12]}..., now {str(new)[:12]}...")
    if committed.get("converged") != now.get("converged"):
        lines.append(f"converged: committed {committed.get('converged')}, now {now.get('converged')}")
    old_ll, new_ll = _number(committed.get("loglik")), _number(now.get("loglik"))
    if old_ll is None or new_ll is None or not LOGLIK.allows(old_ll, new_ll):
        lines.append(f"loglik: committed {old_ll!r}, now {new_ll!r} (difference "
                     f"{_diff(old_ll, new_ll)}; tolerance {LOGLIK})")
    old = {p["name"]: p for p in committed["parameters"]}
    new = {p["name"]: p for p in now.get("parameters", [])}
    for name in old.keys() - new.keys():
        lines.append(f"parameter {name}: in the committed results, not in the refit")
    for name in new.keys() - old.keys():
        lines.append(f"parameter {name}: in the refit, not in the committed results")
    for name in [n for n in old if n in new]:
        lines.extend(_parameter_lines(name, old[name], new[name]))
    return lines


def _parameter_lines(name: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    lines = []
    if old.get("free") != new.get("free"):
        lines.append(f"parameter {name}: committed {'free' if old.get('free') else 'fixed'}, "
                     f"now {'free' if new.get('free') else 'fixed'}")
    for key, tolerance in (("estimate", ESTIMATE), ("se", SE)):
        a, b = _number(old.get(key)), _number(new.get(key))
        if a is None and b is None:
            continue
        if a is None or b is None or not tolerance.allows(a, b):
            lines.append(f"parameter {name} {key}: committed {_show(a)}, now {_show(b)} "
                         f"(difference {_diff(a, b)}; tolerance {tolerance})")
    return lines


def _show(value: float | None) -> str:
    return "none" if value is None else f"{value:.8g}"


def _diff(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None else f"{b - a:+.3g}"


def run_check(spec_name: str, folder: Path, refit: Callable[[], dict[str, Any]],
              write: Callable[[str], None] = print) -> int:
    """Read the committed results in `folder`, refit (`refit` returns the fresh results document), compare.

    Prints one summary line on success, or a header and one line per difference; returns the exit code.
    """
    committed = committed_results(folder)
    shown = display_path(folder / "results.json")
    found = differences(committed, refit())
    if not found:
        write(f"{spec_name}: reproduces {shown} (log likelihood within {LOGLIK}, {len(committed['parameters'])} "
              f"parameters: estimates within {ESTIMATE}, standard errors within {SE}; same data and spec)")
        return EXIT_OK
    write(f"{spec_name}: does NOT reproduce {shown}: {len(found)} difference{'s' if len(found) > 1 else ''} "
          f"(exit {EXIT_DIFFERS})")
    for line in found[:MOST_LINES]:
        write(f"  {line}")
    if len(found) > MOST_LINES:
        write(f"  ... and {len(found) - MOST_LINES} more")
    return EXIT_DIFFERS
