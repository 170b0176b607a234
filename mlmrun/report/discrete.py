"""Report tables of a discrete latent distribution: mass points or classes, probabilities, implied variance.

Reads the estimates list (results.parameter_rows: masses, probabilities and
variances are derived rows with delta-method SEs) and the fit's `discrete`
summary (identification, starts, Gateaux derivative).
"""

from __future__ import annotations

from mlmrun.report.format import Table, num
from mlmrun.report.tables import DIGITS, EST_COLUMNS, estimate_line, numeric_table, wald_line
from mlmrun.results import FitResult, ParamRow


def discrete_tables(rows: dict[str, ParamRow], fit: FitResult) -> tuple[list[Table], list[str]] | None:
    """(tables, notes) for the discrete levels of `fit`, or None when it has none."""
    summary = fit.extras.get("discrete")
    if not fit.model.discrete or not isinstance(summary, dict):
        return None
    tables = []
    for i, dl in enumerate(fit.model.discrete):
        level = fit.model.levels[dl.level].name
        if dl.kind == "npmle":
            body = [estimate_line(f"mass{k + 1}({nm})", rows[f"mass{k + 1}({nm})@{level}"])
                    for k in range(dl.K) for nm in dl.names]
            body += [estimate_line(f"prob{k + 1}", rows[f"prob{k + 1}@{level}"]) for k in range(dl.K)]
            body += [estimate_line(f"var({nm}) implied", rows[f"var({nm})@{level}"]) for nm in dl.names]
            tables.append(numeric_table(list(EST_COLUMNS), body, DIGITS, title=f"Discrete distribution at level {level} "
                                                               f"({dl.K} mass points)"))
            if i == 0 and "intercepts" in summary:
                tables.append(Table(["Point", "Intercept (mass + _cons)", "Probability"],
                                    [[str(k + 1), num(b), num(p)] for k, (b, p) in
                                     enumerate(zip(summary["intercepts"], summary["probabilities"], strict=True))],
                                    title="Point-specific intercepts"))
        else:
            body = [estimate_line(f"{dl.tag}{k + 1}({nm})", rows[f"{dl.tag}{k + 1}({nm})@{level}"])
                    for k in range(dl.K) for nm in dl.names]
            tables.append(numeric_table(list(EST_COLUMNS), body, DIGITS, title=f"Class-specific coefficients ({dl.K} classes at level {level})"))
            probs = [estimate_line(f"prob{k + 1}({dl.tag})", rows[f"prob{k + 1}({dl.tag})@{level}"]) for k in range(dl.K)]
            tables.append(numeric_table(list(EST_COLUMNS), probs, DIGITS, title="Class probabilities"
                                                                  + (" (averaged over units)" if dl.w_names else "")))
            shifts = [estimate_line(f"lnscale{k + 1}", rows[f"lnscale{k + 1}({dl.tag})@{level}"])
                      for k in range(1, dl.K) if len(dl.scale_rows)]
            if shifts:
                tables.append(numeric_table(list(EST_COLUMNS), shifts, DIGITS, title="Class-specific log shifts of the residual SD "
                                                                     "(gamma shape); class 1 is the reference"))
    logits = [wald_line(r.name, r) for r in rows.values() if r.block in ("logit", "class_gamma")]
    if logits:
        tables.append(numeric_table(["Parameter", "Estimate", "Std. err.", "z", "P>|z|", "[95% conf.", "interval]"], logits, DIGITS,
                            title="Multinomial logit of the point probabilities (point 1 is the reference)"))
    starts = summary.get("starts", {})
    notes = [f"Identification: {summary.get('identification', '')}."]
    if starts:
        notes.append(f"{starts['count']} starting values (seed {starts['seed']}), {starts.get('screening', 'EM')} from each; the "
                     f"{len(starts['converged_logliks'])} best converged by quasi-Newton, best is start {starts['best']}; "
                     f"spread of their log likelihoods {num(starts['spread'])}.")
    gateaux = summary.get("gateaux")
    if isinstance(gateaux, dict):
        notes.append(f"Largest Gateaux derivative at the solution: {num(gateaux['max_derivative'])} "
                     f"(a point is added while it exceeds {num(gateaux['tolerance'])}).")
    return tables, notes
