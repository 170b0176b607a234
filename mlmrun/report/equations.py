"""The model written out as equations: response equations, structural model, covariance structures.

One line per response (link(E[y]) = fixed part + latent terms), one per latent variable that is
regressed (eta = B eta + Gamma w + zeta), one per covariance block and one for the residual, in
the notation of the report's tables (`u(week)@pig` is the random coefficient of week at level pig,
whose SD is the table's sd(week)).
"""

from __future__ import annotations

from mlmrun.compile.model import CompiledModel

_LINKED = {"identity": "E[{y}]", "log": "log E[{y}]", "logit": "logit E[{y}]", "probit": "probit E[{y}]",
           "cloglog": "cloglog E[{y}]"}
_STRUCTURE = {"independent": "diagonal", "identity": "one variance", "exchangeable": "one variance, one covariance",
              "unstructured": "unstructured"}


def _fixed_rhs(model: CompiledModel) -> str:
    """The right-hand side of the spec's fixed formula, the constant written as _cons."""
    text = model.spec.fixed.split("~", 1)[-1].strip()
    return text if text else "0"


def _latent_term(model: CompiledModel, m: int) -> str:
    """How latent variable m enters a response: u(_cons)@pig, week·u(week)@pig, λ[item]·general@person."""
    lat = model.latent[m]
    level = model.levels[lat.level].name
    if lat.origin == "random":
        return f"u(_cons)@{level}" if lat.name == "_cons" else f"{lat.name}·u({lat.name})@{level}"
    if lat.Z.shape[1] == 0:
        return ""
    spec_lat = next((s for s in model.spec.latent if s.name == lat.name), None)
    by = spec_lat.loadings.by if spec_lat is not None and spec_lat.loadings is not None else None
    return f"λ[{by}]·{lat.name}@{level}" if by else f"{lat.name}@{level}"


def _response_lines(model: CompiledModel) -> list[str]:
    terms = [t for t in (_latent_term(model, m) for m in range(len(model.latent))) if t]
    rhs = " + ".join([f"x'β ({_fixed_rhs(model)})", *terms])
    lines = []
    for eq in model.equations:
        family, link = eq.family.name, eq.family.link
        left = _LINKED.get(link, f"{link}(E[{{y}}])").format(y=eq.name)
        if family == "ordinal":
            left = f"{link} P({eq.name} ≤ k) = cut_k −"
            lines.append(f"{left} ({rhs})   [{family}]")
            continue
        lines.append(f"{left} = {rhs}   [{family}]")
    return lines


def _structural_lines(model: CompiledModel) -> list[str]:
    frame = model.partable.frame
    by_lhs: dict[str, list[str]] = {}
    for _, _, row in (*model.B_entries, *model.Gamma_entries):
        lhs, rhs = str(frame.at[row, "lhs"]), str(frame.at[row, "rhs"])
        by_lhs.setdefault(lhs, []).append(f"b·{rhs}")
    return [f"{lhs} = {' + '.join(parts)} + ζ({lhs})" for lhs, parts in by_lhs.items()]


def _covariance_lines(model: CompiledModel) -> list[str]:
    lines = []
    for block in model.blocks:
        level = model.levels[block.level].name
        names = [("u(" + model.latent[m].name + ")") if model.latent[m].origin == "random"
                 else f"ζ({model.latent[m].name})" for m in block.members]
        kind = "one variance" if len(names) == 1 else _STRUCTURE.get(block.kind, block.kind)
        lines.append(f"({', '.join(names)}) at {level} ~ N(0, Ψ), Ψ {kind}")
    for eq in model.equations:
        if eq.family.name == "gaussian":
            lines.append(f"residual of {eq.name} ~ N(0, σ²)" + (", σ depending on covariates" if eq.hetero is not None
                                                                 else ""))
    return lines


def model_lines(model: CompiledModel) -> list[str]:
    """The equations of the model, response equations first."""
    return _response_lines(model) + _structural_lines(model) + _covariance_lines(model)
