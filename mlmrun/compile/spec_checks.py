"""Cross-reference checks of a spec that need no data, each problem located at its YAML key or list item.

These used to be pydantic model validators, whose errors can only be located
at the model that runs them (the whole spec: `1:1`). Here every problem
carries the YAML path of the offending key, so `mlmrun validate` prints
FILE:LINE:COL of the undeclared level, the duplicate name, the B edge that
closes a cycle or the repeated `loadings.only` item.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from mlmrun.errors import KEY, Loc, SpecError
from mlmrun.spec.model import Loadings, Spec


def _hint(name: str, known: Iterable[str], what: str) -> str:
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"declared {what} are {known}" if known else f"no {what} are declared"


def _duplicates(items: list, base: Loc, what: str) -> list[SpecError]:
    """A problem at every repeat of an item already listed (compared as text, as the compiler does)."""
    seen: dict[str, int] = {}
    out = []
    for j, item in enumerate(items):
        key = str(item)
        if key in seen:
            out.append(SpecError.at(base + (j,), f"{what} {item!r} is listed twice (also item {seen[key]}); "
                                                   "remove the repeat"))
        else:
            seen[key] = j
    return out


def _levels(spec: Spec) -> list[SpecError]:
    out = []
    first: dict[str, int] = {}
    for j, lv in enumerate(spec.levels):
        if lv.name in first:
            out.append(SpecError.at(("levels", j, "name"), f"level name '{lv.name}' is already used by levels.{first[lv.name]}; "
                                                          "give every level its own name"))
        else:
            first[lv.name] = j
    names = list(first)
    for i, block in enumerate(spec.random):
        if block.level not in first:
            out.append(SpecError.at(("random", i, "level"), f"level '{block.level}' is not declared under `levels:`; "
                                                           + _hint(block.level, names, "levels")))
    for i, lat in enumerate(spec.latent):
        if lat.level not in first:
            out.append(SpecError.at(("latent", i, "level"), f"level '{lat.level}' is not declared under `levels:`; "
                                                           + _hint(lat.level, names, "levels")))
    for lvl in spec.covariance:
        if lvl not in first:
            out.append(SpecError.at(("covariance", lvl, KEY), f"level '{lvl}' is not declared under `levels:`; "
                                                             + _hint(lvl, names, "levels")))
    return out


def _latent_names(spec: Spec) -> list[SpecError]:
    out = []
    first: dict[str, int] = {}
    for j, lat in enumerate(spec.latent):
        if lat.name in first:
            out.append(SpecError.at(("latent", j, "name"), f"latent variable name '{lat.name}' is already used by "
                                                          f"latent.{first[lat.name]}; give every latent variable its own name"))
        else:
            first.setdefault(lat.name, j)
    shorthand = {(block.level, "_cons" if str(t) == "1" else str(t)): i
                 for i, block in enumerate(spec.random) for t in block.terms}
    for j, lat in enumerate(spec.latent):
        if (lat.level, lat.name) in shorthand:
            out.append(SpecError.at(("latent", j, "name"), f"'{lat.name}' is also the name of a term of "
                                                          f"random.{shorthand[lat.level, lat.name]} at level '{lat.level}' "
                                                          "(the intercept is '_cons'); rename the latent variable"))
    known = list(first)
    for table, entries in (("B", spec.structural.B), ("Gamma", spec.structural.Gamma)):
        for outcome, row in entries.items():
            if outcome not in first:
                out.append(SpecError.at(("structural", table, outcome, KEY),
                                        f"'{outcome}' is not a latent variable; " + _hint(outcome, known, "latent variables")))
            if table == "B":
                for pred in row:
                    if pred not in first:
                        out.append(SpecError.at(("structural", "B", outcome, pred, KEY),
                                                f"'{pred}' is not a latent variable; " + _hint(pred, known, "latent variables")))
    return out


def _b_cycle(spec: Spec) -> list[SpecError]:
    """The first cycle in B (outcome -> predictor edges), located at the edge that closes it."""
    graph = {k: list(v) for k, v in spec.structural.B.items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> SpecError | None:
        state[node] = 1
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                return SpecError.at(("structural", "B", node, nxt, KEY),
                                    "B has a cycle: " + " -> ".join(cycle) + "; B must be recursive (no latent "
                                    "variable may depend on itself): remove this entry or another one of the cycle")
            if state.get(nxt) is None and (found := visit(nxt, path + [nxt])) is not None:
                return found
        state[node] = 2
        return None

    for node in graph:
        if state.get(node) is None and (found := visit(node, [node])) is not None:
            return [found]
    return []


def _responses(spec: Spec) -> list[SpecError]:
    out = []
    for k, eq in enumerate(spec.responses):
        if eq.categories is not None:
            out += _duplicates(eq.categories, ("responses", k, "categories"), "category")
    if len(spec.responses) < 2:
        return out
    out += [SpecError.at(("responses", k), "with several response equations, each needs `select: {column: [values]}` "
                                          "saying which rows it covers")
           for k, eq in enumerate(spec.responses) if eq.select is None]
    first = spec.responses[0].name
    out += [SpecError.at(("responses", k, "name"), f"all response equations must name the same response column "
                                                   f"(responses.0 names '{first}'); stack the data so one column holds every response")
            for k, eq in enumerate(spec.responses) if eq.name != first]
    return out


def _loadings(spec: Spec) -> list[SpecError]:
    out = []
    for i, block in enumerate(spec.random):
        out += _duplicates([1 if str(t) == "1" else t for t in block.terms], ("random", i, "terms"), "term")
    for i, lat in enumerate(spec.latent):
        spec_l: Loadings | None = lat.loadings
        if spec_l is None:
            continue
        base: Loc = ("latent", i, "loadings")
        if spec_l.only is not None:
            out += _duplicates(spec_l.only, base + ("only",), "category")
        if spec_l.on is not None:
            out += _duplicates(spec_l.on, base + ("on",), "column")
        grouped: dict[str, tuple[int, int]] = {}
        for g, group in enumerate(spec_l.equal):
            if len(group) < 2:
                out.append(SpecError.at(base + ("equal", g), f"{group} needs at least two loadings to set equal; "
                                                                   "name two or more, or drop the group"))
            for j, item in enumerate(group):
                if str(item) in grouped:
                    g0, j0 = grouped[str(item)]
                    out.append(SpecError.at(base + ("equal", g, j), f"{item!r} is already in equal.{g0} (item {j0}); "
                                                                   "list each loading in one group only"))
                else:
                    grouped[str(item)] = (g, j)
    return out


def _constraints(spec: Spec) -> list[SpecError]:
    out = []
    for g, group in enumerate(spec.constraints.equal):
        out += _duplicates(group, ("constraints", "equal", g), "parameter")
    return out


def check_spec(spec: Spec) -> None:
    """Raise one SpecError listing every cross-reference problem of `spec`, each at its key."""
    problems = (_levels(spec) + _latent_names(spec) + _b_cycle(spec) + _responses(spec) + _loadings(spec)
                + _constraints(spec))
    if problems:
        raise SpecError.many(problems)
