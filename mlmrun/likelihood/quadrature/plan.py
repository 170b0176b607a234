"""The integration plan: method and points per latent level, checked against the compiled model.

`estimation.integration` in the spec (method adaptive | laplace | ghq, points
as one number or per level name, adapt mode | mean) and `estimation.check_points`
become an `IntegrationPlan` here; settings that make no sense for the model
raise SpecError naming the spec key and what to write instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from mlmrun.compile.model import CompiledModel
from mlmrun.errors import KEY, Loc, SpecError
from mlmrun.likelihood.quadrature.adaptive import CHUNK_ELEMENTS, Adaptation, Hierarchy, plain_adaptation
from mlmrun.likelihood.quadrature.rows import row_set
from mlmrun.likelihood.quadrature.rules import Rule, product_rule
from mlmrun.likelihood.quadrature.separable import SEPARABLE_CHUNK

PRUNE = 0.0
"""Product rules are not pruned: dropping light corner nodes biased the flagship log likelihood by ~2e-4
at any number of points (adaptive integrands grow towards the corners), unseen by the point check."""


@dataclass(frozen=True)
class IntegrationPlan:
    """How the latent levels are integrated: one entry per nested latent level, lowest first."""

    method: str
    """adaptive | laplace | ghq."""
    adapt: str
    """mode | mean."""
    level_names: tuple[str, ...]
    dims: tuple[int, ...]
    points: tuple[int, ...]
    prune: float = PRUNE

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(product_rule(p, q, self.prune) for p, q in zip(self.points, self.dims, strict=True))

    def with_points(self, points: int | dict[str, int]) -> IntegrationPlan:
        """The same plan with `points` per dimension at every level, or per level name (others unchanged)."""
        if isinstance(points, dict):
            new = tuple(int(points.get(name, p)) for name, p in zip(self.level_names, self.points, strict=True))
        else:
            new = (int(points),) * len(self.dims)
        return IntegrationPlan(self.method, self.adapt, self.level_names, self.dims, new, self.prune)

    def plain(self, h: Hierarchy, rules: tuple[Rule, ...]) -> Adaptation:
        return plain_adaptation(h, rules)

    def describe(self) -> dict:
        """The `integration` entry of FitResult/results.json."""
        pts = set(self.points)
        if not self.points:
            points = None
        elif len(pts) == 1:
            points = self.points[0]
        else:
            points = dict(zip(self.level_names, self.points, strict=True))
        return {"method": self.method, "points": points}

    def points_key(self) -> str:
        """How the point check names this plan: '20' (every level) or 'person: 20, district: 5'."""
        if len(set(self.points)) <= 1:
            return str(self.points[0]) if self.points else ""
        return ", ".join(f"{name}: {p}" for name, p in zip(self.level_names, self.points, strict=True))


def _crossed_levels(model: CompiledModel) -> None:
    """Latent variables at a crossed level need the exact Gaussian likelihood or the joint Laplace approximation
    (likelihood/laplace); refuse them under nested quadrature at the level's key, with the YAML to write."""
    crossed = sorted({lat.level for lat in model.latent if model.levels[lat.level].crossed})
    method = model.spec.estimation.integration.method
    if not crossed or method == "laplace":
        return
    level = model.levels[crossed[0]]
    if model.is_linear_gaussian:
        why = "`estimation.exact: false` asks for quadrature; drop it (every response is gaussian/identity)"
    else:
        eq = next(e for e in model.equations if (e.family.name, e.family.link) != ("gaussian", "identity"))
        why = (f"response '{eq.name}' is {eq.family.name}/{eq.family.link}, so the model needs integration; crossed "
               "random effects need every response gaussian with the identity link (exact likelihood) or the "
               "Laplace approximation over all random effects jointly")
    raise SpecError.at(("levels", crossed[0], "crossed", KEY),
                       f"level '{level.name}' is crossed and carries latent variables, which nested quadrature "
                       f"cannot integrate (`method: {method}`): {why}; write `estimation: {{integration: {{method: "
                       "laplace}}`, or make the design nested (drop `crossed: true`)")


def integration_plan(model: CompiledModel) -> IntegrationPlan:
    """Validate the spec's integration settings against the model's latent levels (errors at their keys)."""
    est = model.spec.estimation
    integ = est.integration
    _crossed_levels(model)
    levels = model.nested_levels
    names = tuple(model.levels[lvl].name for lvl in levels)
    dims = tuple(len(model.latent_at(lvl)) for lvl in levels)
    given = "points" in integ.model_fields_set
    at_points = ("estimation", "integration", "points")
    if integ.method == "laplace":
        if given and integ.points != 1 and not (isinstance(integ.points, dict) and set(integ.points.values()) == {1}):
            raise SpecError.at(at_points, "laplace uses one adaptive point per dimension; "
                                          "drop `points` or use `method: adaptive` with the points you want")
        if est.check_points:
            raise SpecError.at(("estimation", "check_points"), "the Laplace approximation has no points to vary; "
                                                               "use `method: adaptive` to check the quadrature with more points")
        points = (1,) * len(levels)
    elif isinstance(integ.points, dict):
        declared = [lv.name for lv in model.levels]
        for k in integ.points:
            if k not in names:
                why = f"'{k}' has no latent variables" if k in declared else f"'{k}' is not a level"
                raise SpecError.at(at_points + (k, KEY), f"{why}; give points for the levels with latent variables: "
                                                         f"{list(names)}")
        default = type(integ).model_fields["points"].default
        for name, p in integ.points.items():
            if p < 1:
                raise SpecError.at(at_points + (name,), f"need at least 1 point per dimension, got {p}; write 1 or more")
        points = tuple(int(integ.points.get(n, default)) for n in names)
    else:
        if integ.points < 1:
            raise SpecError.at(at_points, f"need at least 1 point per dimension, got {integ.points}; write 1 or more")
        points = (int(integ.points),) * len(levels)
    if integ.adapt == "mean" and (integ.method == "laplace" or min(points, default=2) < 2):
        raise SpecError.at(("estimation", "integration", "adapt"),
                           "`mean` places nodes from posterior moments computed by the quadrature itself, which "
                           "needs at least 2 points per dimension (and not laplace); use `adapt: mode`")
    for j, check in enumerate(est.check_points or []):
        per_level = check if isinstance(check, dict) else {name: check for name in names}
        for k, p in per_level.items():
            if k not in names:
                raise SpecError.at(("estimation", "check_points", j, k, KEY),
                                   f"'{k}' is not a level with latent variables; give points for {list(names)}")
            if p < 1:
                where = ("estimation", "check_points", j) + ((k,) if isinstance(check, dict) else ())
                raise SpecError.at(where, f"need at least 1 point per dimension, got {p}; write 1 or more")
    return IntegrationPlan(integ.method, integ.adapt, names, dims, points)

GIB = 1 << 30
BYTES = 8
"""Every array the quadrature holds is float64."""
CHUNK_TEMPORARIES = 12
"""Arrays of one evaluation block alive at once in adaptive.evaluate (nu, log f and its derivative, the
family kernel's temporaries, the unit sums, posterior weights and their row repeat, weighted scores)."""
SEPARABLE_TEMPORARIES = 4
"""The same for the separable binomial-logit form: 1 + e^nu (then rho), the weighted rho, the run products and the
Louis pass's scores."""


@dataclass(frozen=True)
class PlanSizes:
    """The data sizes the quadrature's memory depends on."""

    n_rows: int
    """Rows the quadrature evaluates (after merging rows with identical predictors, likelihood/quadrature/rows.py)."""
    n_units: tuple[int, ...]
    """Units of each integrated level, lowest first (as in IntegrationPlan.level_names)."""
    max_unit_rows: int
    """Most rows in one unit of the lowest integrated level (an evaluation block holds at least one unit)."""
    family_params: int
    """Columns of family-parameter scores kept per row (1 per gaussian/gamma equation, K-1 per ordinal one)."""
    separable: bool = False
    """One unweighted binomial-logit equation (EquationFamilies.logit_counts): evaluations may use
    likelihood/quadrature/separable.py (more per row, bigger blocks)."""


def plan_sizes(model: CompiledModel) -> PlanSizes:
    """Sizes of `model` for `plan_memory`."""
    levels = tuple(model.nested_levels)
    n_units = tuple(model.levels[lvl].n_units for lvl in levels)
    rows = row_set(model, levels)
    most = int(np.bincount(rows.codes[levels[0]]).max(initial=0)) if levels else rows.n
    params = 0
    for eq in model.equations:
        if eq.threshold_rows is not None:
            params += len(eq.threshold_rows)
        elif eq.scale_rows is not None:
            params += 1
        elif eq.family_params is not None:
            params += len(eq.family_params.columns)
    separable = (len(model.equations) == 1 and model.weighting is None and model.equations[0].choice is None
                 and (model.equations[0].family.name, model.equations[0].family.link) == ("binomial", "logit"))
    return PlanSizes(rows.n, n_units, most, params, separable)


def _rule_size(points: int, dim: int) -> int:
    """Nodes of the unpruned product rule (pruning only removes nodes, so this bounds the evaluation)."""
    return int(points) ** int(dim)


def plan_memory(plan: IntegrationPlan, sizes: PlanSizes) -> int:
    """Estimated peak bytes of one quadrature evaluation with `plan` (what adaptive.evaluate holds at once).

    With R_k the nodes of level k (points^dims), S_k = R_k x ... x R_top the
    node configurations of levels k and above, q_k and D_k = q_k + ... + q_top
    the dimensions, n rows and n_k units per level, the evaluation keeps
      - the rules being built: Golub-Welsch needs points^2 x 3 values, the product grid (3 q_k + 2) R_k;
      - per upper level k >= 1: its node chains and weights n_k S_k (D_k + 3);
      - per lowest-level unit and configuration: centres and their ancestor input n_0 S_1 (2 q_0 + D_1 + 2);
      - per row and configuration: the base predictor and its gathered node chains, the score
        expectations and family-parameter scores, n S_1 (D_1 + 4 + q_0 + p), or the posterior moments
        n_0 S_1 q_0 (1 + q_0) for empirical Bayes, whichever is larger; the separable binomial-logit
        form adds n S_1 x 2 (e^base and its linear part's temporary);
      - the lowest level's moved nodes, their squares and log weights n_0 R_0 (2 q_0 + 3);
      - CHUNK_TEMPORARIES arrays of one evaluation block, at least one unit's rows x R_0
        (SEPARABLE_TEMPORARIES arrays of SEPARABLE_CHUNK elements for the separable form).
    """
    K = len(plan.dims)
    if K == 0:
        return 0
    q, n, units = plan.dims, sizes.n_rows, sizes.n_units
    R = [_rule_size(p, d) for p, d in zip(plan.points, plan.dims, strict=True)]
    S = [math.prod(R[k:]) for k in range(K)] + [1]
    D = [sum(q[k:]) for k in range(K)] + [0]
    values = sum(3 * p * p + (3 * d + 2) * r for p, d, r in zip(plan.points, q, R, strict=True))
    values += sum(units[k] * S[k] * (D[k] + 3) for k in range(1, K))
    cfg, q0, n0 = S[1], q[0], units[0]
    values += n0 * cfg * (2 * q0 + D[1] + 2)
    values += max(n * cfg * (D[1] + 4 + q0 + sizes.family_params), n0 * cfg * q0 * (1 + q0))
    values += 2 * n * cfg if sizes.separable else 0
    values += n0 * R[0] * (2 * q0 + 3)
    per_block = max(1, CHUNK_ELEMENTS // max(1, n * R[0]))
    chunk, arrays = (SEPARABLE_CHUNK, SEPARABLE_TEMPORARIES) if sizes.separable else (CHUNK_ELEMENTS, CHUNK_TEMPORARIES)
    values += arrays * max(chunk, sizes.max_unit_rows * R[0] * min(per_block, cfg))
    return int(values) * BYTES


LAPLACE_START_POINTS = 5
"""Points per dimension of the adaptive stage a Laplace fit starts from (estimate.quadrature_fit.COARSE_POINTS)."""


MAX_SUGGESTED_GIB = 4096
"""Above this estimate the refusal does not suggest raising the budget."""


def _num(x: int) -> str:
    """A count in full up to a million, else with 3 significant digits (points and nodes can be huge)."""
    return str(x) if x < 10**6 else f"{Decimal(x):.3g}"


def gib(nbytes: int | float) -> str:
    """Bytes as GiB with 3 significant digits, for any size (big integers included)."""
    return f"{Decimal(nbytes) / GIB:.3g}"


def _plans_to_check(model: CompiledModel, plan: IntegrationPlan) -> list[tuple[IntegrationPlan, str]]:
    """Every plan a fit evaluates at full size, with what sets it: the fitted one, Laplace's start, the point checks."""
    plans = [(plan, "fit")]
    if plan.method == "laplace":
        plans.append((plan.with_points(LAPLACE_START_POINTS), "laplace"))
    for j, check in enumerate(model.spec.estimation.check_points or []):
        plans.append((plan.with_points(check), f"check{j}"))
    return plans


def _largest_fitting(plan: IntegrationPlan, sizes: PlanSizes, level: int, budget: float) -> int:
    """Most points at `level` (others unchanged) whose estimate stays within `budget`; 0 if not even 1 fits."""
    def need(p: int) -> int:
        return plan_memory(plan.with_points({plan.level_names[level]: p}), sizes)

    lo, hi = 0, plan.points[level]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if need(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _where_points(model: CompiledModel, level_name: str) -> Loc:
    """The key that sets a level's points: estimation.integration.points(.level), else the nearest key given."""
    est = model.spec.estimation
    integ = est.integration
    if "points" in integ.model_fields_set:
        named = isinstance(integ.points, dict) and level_name in integ.points
        return ("estimation", "integration", "points") + ((level_name,) if named else ())
    if "integration" in est.model_fields_set:
        return ("estimation", "integration")
    if "estimation" in model.spec.model_fields_set:
        return ("estimation",)
    return ("levels", next(i for i, lv in enumerate(model.levels) if lv.name == level_name))


def check_memory(model: CompiledModel, plan: IntegrationPlan) -> int:
    """Refuse integration settings whose estimated peak memory exceeds `estimation.memory_budget_gib`.

    Returns the largest estimate (bytes) over the plans a fit evaluates. The
    error names the estimate, the budget, which level's points to lower (and
    to how many at most), or the budget to raise.
    """
    if not plan.dims:
        return 0
    budget = model.spec.estimation.memory_budget_gib * GIB
    sizes = plan_sizes(model)
    worst = 0
    for candidate, source in _plans_to_check(model, plan):
        need = plan_memory(candidate, sizes)
        worst = max(worst, need)
        if need <= budget:
            continue
        nodes = [_rule_size(p, d) for p, d in zip(candidate.points, candidate.dims, strict=True)]
        order = sorted(range(len(nodes)), key=lambda i: -nodes[i])
        fitting = [(i, f) for i in order if (f := _largest_fitting(candidate, sizes, i, budget))]
        k, fits = fitting[0] if fitting else (order[0], 0)
        name = candidate.level_names[k]
        what = (f"{_num(candidate.points[k])} points in {candidate.dims[k]} dimension(s) at level '{name}' make "
                f"{_num(nodes[k])} nodes per unit ({sizes.n_units[k]} units, {sizes.n_rows} rows)")
        if fits:
            lower = f"lower the points at level '{name}' to at most {fits}"
        elif len(nodes) == 1:
            lower = f"even 1 point at level '{name}' does not fit"
        else:
            lower = "lower the points at every level (one level alone cannot bring it within the budget)"
        if source == "laplace":
            where: Loc = ("estimation", "integration", "method")
            head = (f"the Laplace fit starts with {LAPLACE_START_POINTS}-point adaptive quadrature, whose estimated "
                    f"peak memory is {gib(need)} GiB")
            lower = f"use fewer latent variables at level '{name}'"
        elif source.startswith("check"):
            j = int(source.removeprefix("check"))
            where = ("estimation", "check_points", j)
            head = f"this point check needs an estimated {gib(need)} GiB"
            lower = f"check with at most {fits} points at level '{name}'" if fits else lower
        else:
            where = _where_points(model, name)
            head = f"the quadrature needs an estimated {gib(need)} GiB"
        over = f"over the memory budget of {gib(budget)} GiB (estimation.memory_budget_gib)"
        if need > MAX_SUGGESTED_GIB * GIB:
            raise SpecError.at(where, f"{head}, more memory than any machine has and {over}: {what}; {lower}")
        raise SpecError.at(where, f"{head}, {over}: {what}; {lower}, or raise the budget "
                                  f"(`estimation: {{memory_budget_gib: {-(-need * 6 // (5 * GIB))}}}`)")
    return worst
