"""summarize(fit, prepared) -> ReportModel: everything report.html and report.md show, already formatted.

The report model is plain data (strings, lists, small dataclasses), laid out
like Stata's `mixed` output: header, group summary, fixed effects, random
effects per level as sd/corr and var/cov, then latent-variable tables in the
style of Table 1 of Rabe-Hesketh, Skrondal & Pickles (2004), fit statistics,
the LR test, the quadrature point check and the estimation record.
Templates only place these strings (STYLE.md 9.7).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlmrun.pipeline import Prepared
from mlmrun.report import figures, tables, vce
from mlmrun.report.discrete import discrete_tables
from mlmrun.report.equations import model_lines
from mlmrun.report.format import Table, fixed
from mlmrun.report.plots import Figure
from mlmrun.report.provenance import footer
from mlmrun.report.sem import sem_sections
from mlmrun.results import FitResult, ParamRow, jsonable, level_summaries, lr_test, parameter_rows
from mlmrun.spec.model import Spec


@dataclass(frozen=True)
class Section:
    """A headed part of the report: tables, free-text lines, figures (SVG) and notes.

    Adding a part to the report is one more Section in `summarize`; the templates lay out any of them."""

    heading: str
    tables: list[Table] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


@dataclass(frozen=True)
class ReportModel:
    """The formatted content of a report; renderers only lay it out."""

    title: str
    subtitle: str
    description: str
    converged: bool
    status: str
    warnings: list[str]
    header: list[tuple[str, str]]
    sections: list[Section]
    footer: list[tuple[str, str]] = field(default_factory=list)

    @property
    def figures(self) -> list[Figure]:
        """Every figure of the report, in order (written beside report.md, which links to them)."""
        return [f for s in self.sections for f in s.figures]


def _integration_text(fit: FitResult) -> str:
    method = fit.integration.get("method", "exact")
    points = fit.integration.get("points")
    per = (f"{points} points per dimension" if isinstance(points, int)
           else ", ".join(f"{k}: {v} points" for k, v in points.items()) if isinstance(points, dict) else "")
    text = {
        "exact": "exact (Gaussian marginal likelihood, no quadrature)",
        "moments": "exact, from the sufficient statistics (per missing-data pattern: sample means and covariances)",
        "adaptive": "adaptive Gauss–Hermite quadrature",
        "ghq": "Gauss–Hermite quadrature (non-adaptive)",
        "laplace": "Laplace approximation (joint, over all random effects)",
        "discrete": f"discrete latent distribution, {points} points (exact sum)",
    }.get(method, str(method))
    out = f"{text}, {per}" if per and method in ("adaptive", "ghq") else text
    if fit.integration.get("discrete_points"):
        out += f"; discrete level: {fit.integration['discrete_points']} points (exact sum)"
    return out


def _groups_text(fit: FitResult) -> list[tuple[str, str]]:
    """Stata's 'Number of groups' with 'Obs per group: min/avg/max', one line per level."""
    return [(f"Groups: {s['name']}", f"{s['n_units']}  (rows per group: min {s['min']}, avg {fixed(s['avg'], 1)}, "
                                     f"max {s['max']})") for s in level_summaries(fit.model)]


def _header(fit: FitResult, prepared: Prepared) -> list[tuple[str, str]]:
    """Stata's header first (observations, groups, Wald test, log likelihood, method, integration), then the files."""
    spec, model = prepared.spec, fit.model
    responses = "; ".join(f"{eq.name}: {eq.family.name}, {eq.family.link} link" for eq in model.equations)
    header = [("Number of obs", str(fit.n_obs)), *_groups_text(fit)]
    header += vce.header_lines(fit, spec)
    header += [
        (vce.loglik_label(fit, spec), fixed(fit.loglik, 4)),
        ("Method", "REML (restricted maximum likelihood)" if fit.method == "REML" else "ML (maximum likelihood)"),
        ("Integration", _integration_text(fit)),
        ("Responses", responses),
        ("Fixed part", spec.fixed),
        ("Spec file", prepared.path.name),
        ("Data file", spec.data.path),
    ]
    if spec.data.filter:
        header.append(("Row filter", " and ".join(f"{f.column} {f.op} {f.value}" for f in spec.data.filter)))
    header += [
        ("Rows read", str(model.n_rows_read)),
        ("Rows dropped (missing values)", str(model.n_dropped_missing)),
        ("Rows used", str(model.n)),
    ]
    if spec.data.provenance:
        header.append(("Data provenance", spec.data.provenance))
    return header


def _groups(fit: FitResult) -> Section | None:
    model = fit.model
    if not model.levels:
        return None
    nested = [lv.name for lv in model.levels if not lv.crossed]
    rows = []
    for lv, s in zip(model.levels, level_summaries(model), strict=True):
        if lv.crossed:
            structure = "crossed"
        else:
            pos = nested.index(lv.name)
            structure = f"nested in {nested[pos + 1]}" if pos + 1 < len(nested) else "top level"
        rows.append([lv.name, lv.column, str(s["n_units"]), str(s["min"]), fixed(s["avg"], 1), str(s["max"]), structure])
    table = Table(["Level", "ID column", "Units", "Min", "Avg", "Max", "Structure"], rows,
                  align=["l", "l", "r", "r", "r", "r", "l"])
    return Section("Group summary", [table], notes=["Min/Avg/Max: rows (level-1 units) per unit."])


def _latent(rows: dict, fit: FitResult, prepared: Prepared, digits: int) -> Section | None:
    model = fit.model
    if not any(lat.origin == "latent" for lat in model.latent):
        return None
    frame = prepared.data.frame
    parts = [tables.loadings(rows, model, frame, digits), *tables.latent_variances(rows, model, digits),
             tables.structural(rows, model, "B", digits), tables.structural(rows, model, "Gamma", digits)]
    notes = []
    if model.B_entries or model.Gamma_entries:
        notes.append("Latent variances are those of the disturbances zeta in eta = B eta + Gamma w + zeta.")
    items, factors = tables.factor_loadings(rows, model, frame)
    drawn = [figures.loadings_figure(items, factors)] if factors and items else []
    return Section("Latent variables", [t for t in parts if t is not None], notes=notes, figures=drawn)


def _item_intercepts(rows: dict[str, ParamRow], fit: FitResult, prepared: Prepared) -> frozenset[str]:
    """Fixed-part names the loadings table shows as item intercepts (printed there, not twice)."""
    model = fit.model
    if not any(lat.origin == "latent" and len(lat.loading_rows) for lat in model.latent):
        return frozenset()
    labels = tables.loading_order(model, prepared.data.frame)
    return frozenset(r.name for r in tables.item_intercepts(rows, model, labels).values())


def _lr_test(fit: FitResult) -> tuple[list[str], list[str]]:
    """Stata's line under the table: 'LR test vs. linear model: chi2(df) = ...' and its note."""
    lr = lr_test(fit)
    if lr is None:
        return [], []
    versus = "linear regression" if fit.model.is_linear_gaussian else "the model without latent variables"
    if lr["kind"] == "chibar2":
        line = f"LR test vs. {versus}: chibar2(01) = {fixed(lr['chi2'], 2)}   Prob >= chibar2 = {fixed(lr['p'], 4)}"
    else:
        line = f"LR test vs. {versus}: chi2({lr['df']}) = {fixed(lr['chi2'], 2)}   Prob > chi2 = {fixed(lr['p'], 4)}"
    return [line], [lr["note"]] if lr["note"] else []


def _fit_statistics(fit: FitResult, spec: Spec) -> Section:
    label = vce.loglik_label(fit, spec)
    table = Table(["Statistic", "Value"], [
        [label, fixed(fit.loglik, 4)],
        ["Free parameters", str(fit.n_params)],
        ["AIC", fixed(fit.aic, 2)],
        ["BIC", fixed(fit.bic, 2)],
        ["Observations used", str(fit.n_obs)],
    ])
    lines, notes = _lr_test(fit)
    return Section("Model fit", [table], lines=lines, notes=notes)


def _icc(fit: FitResult) -> Section | None:
    """Stata's `estat icc` table: ICC per level (highest first) with SE and 95% interval."""
    rows = fit.extras.get("icc")
    if not rows:
        return None
    body = [[r["label"], fixed(r["icc"], 4), "" if r["se"] is None else fixed(r["se"], 4),
             "" if r["ci"] is None else fixed(r["ci"][0], 4), "" if r["ci"] is None else fixed(r["ci"][1], 4)]
            for r in rows]
    table = Table(["Level", "ICC", "Std. err.", "[95% conf.", "interval]"], body, align=["l", "r", "r", "r", "r"])
    return Section("Intraclass correlation", [table],
                   notes=[f"{rows[0]['scale'][0].upper()}{rows[0]['scale'][1:]}; intervals on the logit scale."])


def _estimation(fit: FitResult) -> Section:
    """Convergence, iterations and the log likelihood by iteration (wall-clock times are in run.json)."""
    body = [
        ["Converged", "yes" if fit.converged else "NO"],
        ["Iterations", str(fit.iterations)],
        ["Function evaluations", str(fit.n_evaluations)],
    ]
    drawn = figures.history_figure(fit)
    return Section("Estimation", [Table(["", ""], body)], figures=[drawn] if drawn else [],
                   notes=["Timings are in run.json, so that reruns write identical reports."])


def _diagnostics(fit: FitResult, top: int, residuals: list | None) -> Section | None:
    """Caterpillar plots of the EB predictions and residual plots of gaussian responses (`residuals`, from
    postest.diagnostics, when the caller computed them)."""
    drawn, notes = figures.caterpillars(fit, top)
    residual = figures.residual_figures(fit, residuals or [])
    if residual:
        notes.append("Residuals are conditional on the empirical Bayes predictions and divided by the residual SD.")
    if not drawn and not residual:
        return None
    return Section("Predictions and residuals", figures=drawn + residual, notes=notes)


def _point_check(fit: FitResult) -> Section | None:
    if "point_check" not in fit.extras:
        return None
    check = jsonable(fit.extras["point_check"])
    drawn = figures.point_check_figure(check, tables.points_label)
    return Section("Quadrature check", [tables.point_check(check)], figures=[drawn] if drawn else [])


def _warnings(fit: FitResult) -> list[str]:
    out = list(fit.warnings)
    if not fit.converged and not any("converg" in w.lower() for w in out):
        out.insert(0, "The optimiser did not converge: the estimates below are not a maximum of the likelihood.")
    return out


def summarize(fit: FitResult, prepared: Prepared, total_seconds: float | None = None,
              argv: list[str] | None = None, spec_sha256: str | None = None,
              residuals: list | None = None) -> ReportModel:
    """Build the report model of a fit; every number is formatted here, none in templates.

    Nothing shown depends on the clock (`total_seconds` is accepted for callers that pass it; timings
    go to run.json), so reruns render identical reports. `argv` is the command line for the footer;
    `residuals` the gaussian responses' (equation, fitted, standardized residuals) to plot
    (mlmrun.postest.diagnostics.gaussian_residuals; post-estimation is a later stage than the report).
    """
    from mlmrun import __version__

    rows = {r.name: r for r in parameter_rows(fit)}
    model, spec = fit.model, prepared.spec
    digits = spec.report.digits
    note = vce.cluster_note(fit)
    shown_elsewhere = _item_intercepts(rows, fit, prepared)
    fixed_notes = [note] if note else []
    if shown_elsewhere:
        fixed_notes.append(f"The {len(shown_elsewhere)} item intercepts are in the factor loadings table.")
    fixed_table = tables.fixed_effects(rows, model, digits, shown_elsewhere)
    sections = [Section("Model", lines=model_lines(model)), _groups(fit),
                Section("Fixed effects", [fixed_table], notes=fixed_notes) if fixed_table.rows else None]
    random = tables.random_effects(rows, model, digits)
    if random:
        sections.append(Section("Random-effects parameters", random,
                                notes=["Intervals for SDs and variances are on the log scale, for correlations "
                                       "on the atanh scale (as Stata mixed)."]))
    sections.append(_latent(rows, fit, prepared, digits))
    discrete = discrete_tables(rows, fit)
    if discrete is not None:
        sections.append(Section("Discrete latent distribution", discrete[0], notes=discrete[1]))
    other = tables.other_parameters(rows, digits)
    if other is not None:
        sections.append(Section("Other parameters", [other]))
    sections.append(_fit_statistics(fit, spec))
    sections.append(_icc(fit))
    sections += [Section(heading, tables_, notes=notes) for heading, tables_, notes in sem_sections(fit, rows)]
    sections.append(_diagnostics(fit, spec.report.top_units, residuals))
    sections.append(_point_check(fit))
    sections.append(_estimation(fit))
    for section in sections:
        if section is not None:
            vce.label_robust(section.tables, fit)
    gaussian = model.is_linear_gaussian and not any(lat.origin == "latent" for lat in model.latent)
    subtitle = (f"Mixed-effects {fit.method} regression" if gaussian
                else f"Generalized linear latent and mixed model ({fit.method})")
    return ReportModel(
        title=spec.report.title or spec.name,
        subtitle=subtitle,
        description=spec.description or "",
        converged=bool(fit.converged),
        status="converged" if fit.converged else "NOT converged",
        warnings=_warnings(fit),
        header=_header(fit, prepared),
        sections=[s for s in sections if s is not None],
        footer=footer(__version__, spec_sha256 or _sha256(prepared.path), model.data_sha256, argv),
    )


def _sha256(path: object) -> str:
    """SHA-256 of the spec file's bytes ('' for a spec that is not a file, such as a dict given to the API)."""
    import hashlib
    from pathlib import Path

    try:
        return hashlib.sha256(Path(str(path)).read_bytes()).hexdigest()
    except OSError:
        return ""

