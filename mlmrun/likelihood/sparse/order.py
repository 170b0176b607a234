"""The order in which the blocked factorisation eliminates levels (shared by the exact and Laplace engines)."""

from __future__ import annotations

from mlmrun.compile.model import CompiledModel


def elimination_order(model: CompiledModel, levels: list[int]) -> list[int]:
    """Levels with the most units first (lowest nested level first on ties).

    A unit of a nested level meets one unit of each level above it, so the
    nested chain (children have at least as many units as parents) is
    eliminated without fill; a crossed factor with many units (students
    crossed with raters) likewise goes before the small factors it meets, so
    only small factors are left for the final dense factorisation.
    """
    nested_first = [lv for lv in levels if not model.levels[lv].crossed] + \
                   [lv for lv in levels if model.levels[lv].crossed]
    return sorted(nested_first, key=lambda lv: -model.levels[lv].n_units)
