"""The integration plan: method and points per latent level, checked against the compiled model.

`estimation.integration` in the spec (method adaptive | laplace | ghq, points
as one number or per level name, adapt mode | mean) and `estimation.check_points`
become an `IntegrationPlan` here; settings that make no sense for the model
raise SpecError naming the spec key and what to write instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlmrun.compile.model import CompiledModel
from mlmrun.errors import SpecError
from mlmrun.likelihood.adaptive import Adaptation, Hierarchy, plain_adaptation
from mlmrun.likelihood.quadrature import Rule, product_rule

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


def integration_plan(model: CompiledModel) -> IntegrationPlan:
    """Validate the spec's integration settings against the model's latent levels."""
    est = model.spec.estimation
    integ = est.integration
    crossed = sorted({model.levels[lat.level].name for lat in model.latent if model.levels[lat.level].crossed})
    if crossed:
        raise SpecError(
            f"estimation.integration: latent variables at crossed level(s) {crossed} cannot be integrated by nested "
            "quadrature; crossed random effects need all-gaussian responses (exact likelihood) or a nested design")
    levels = model.nested_levels
    names = tuple(model.levels[lvl].name for lvl in levels)
    dims = tuple(len(model.latent_at(lvl)) for lvl in levels)
    given = "points" in integ.model_fields_set
    if integ.method == "laplace":
        if given and integ.points != 1 and not (isinstance(integ.points, dict) and set(integ.points.values()) == {1}):
            raise SpecError("estimation.integration.points: laplace uses one adaptive point per dimension; "
                            "drop `points` or use `method: adaptive` with the points you want")
        if est.check_points:
            raise SpecError("estimation.check_points: the Laplace approximation has no points to vary; "
                            "use `method: adaptive` to check the quadrature with more points")
        points = (1,) * len(levels)
    elif isinstance(integ.points, dict):
        unknown = [k for k in integ.points if k not in names]
        if unknown:
            declared = [lv.name for lv in model.levels]
            why = [f"'{k}' has no latent variables" if k in declared else f"'{k}' is not a level" for k in unknown]
            raise SpecError(f"estimation.integration.points: {'; '.join(why)}; give points for the levels with "
                            f"latent variables: {list(names)}")
        default = type(integ).model_fields["points"].default
        points = tuple(int(integ.points.get(n, default)) for n in names)
    else:
        points = (int(integ.points),) * len(levels)
    if integ.adapt == "mean" and (integ.method == "laplace" or min(points, default=2) < 2):
        raise SpecError("estimation.integration.adapt: `mean` places nodes from posterior moments computed by the "
                        "quadrature itself, which needs at least 2 points per dimension (and not laplace); "
                        "use `adapt: mode`")
    bad = [p for p in points if p < 1]
    if bad:
        raise SpecError(f"estimation.integration.points: need at least 1 point per dimension, got {bad[0]}")
    for check in est.check_points or []:
        per_level = check if isinstance(check, dict) else {name: check for name in names}
        unknown = [k for k in per_level if k not in names]
        if unknown:
            raise SpecError(f"estimation.check_points: {unknown} are not levels with latent variables; "
                            f"give points for {list(names)}")
        if any(p < 1 for p in per_level.values()):
            raise SpecError(f"estimation.check_points: need at least 1 point per dimension, got {check}")
    return IntegrationPlan(integ.method, integ.adapt, names, dims, points)
