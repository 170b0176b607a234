"""summarize(): the report model's structure, Stata-like sections and Table-1-style latent tables."""

from __future__ import annotations

import dataclasses

from mlmrun.report import summarize
from mlmrun.report.format import MISSING, ci, z_and_p


def _section(report, heading):
    return next(s for s in report.sections if s.heading == heading)


def _all_cells(report):
    for section in report.sections:
        for table in section.tables:
            yield from table.columns
            for row in table.rows:
                yield from row


def test_everything_is_preformatted_text(pig_unstructured, make_fit):
    report = summarize(make_fit(pig_unstructured), pig_unstructured, total_seconds=1.5)
    assert all(isinstance(c, str) for c in _all_cells(report))
    assert all(isinstance(v, str) for pair in report.header for v in pair)
    for section in report.sections:
        for table in section.tables:
            assert all(len(row) == len(table.columns) for row in table.rows)
            assert len(table.align) == len(table.columns)
    assert dataclasses.asdict(report)  # plain data all the way down


def test_stata_like_sections(pig_unstructured, make_fit):
    lr = {"chi2": 472.65, "df": 3, "p": 1e-100, "kind": "chi2",
          "note": "Note: LR test is conservative and provided only for reference."}
    report = summarize(make_fit(pig_unstructured, extras={"lr_test": lr}), pig_unstructured, total_seconds=1.5)
    headings = [s.heading for s in report.sections]
    assert headings == ["Model", "Group summary", "Fixed effects", "Random-effects parameters", "Model fit", "Estimation"]
    header = dict(report.header)
    assert header["Data file"] == "data/pig.csv"
    assert len(dict(report.footer)["Data SHA-256"]) == 64  # provenance moved to the footer (issue 16)
    assert header["Rows used"] == "432" and header["Rows dropped (missing values)"] == "0"
    assert header["Method"].startswith("ML")
    assert header["Integration"].startswith("exact")
    groups = _section(report, "Group summary").tables[0]
    assert groups.rows[0][:6] == ["pig", "id", "48", "9", "9.0", "9"]
    fixed = _section(report, "Fixed effects").tables[0]
    assert fixed.columns[:5] == ["Parameter", "Estimate", "Std. err.", "z", "P>|z|"]
    assert [r[0] for r in fixed.rows] == ["_cons", "week"]  # one name for the constant (issue 16)
    random_tables = _section(report, "Random-effects parameters").tables
    assert random_tables[0].title == "pig: Unstructured"
    labels = [r[0] for r in random_tables[0].rows]
    # correlations name their terms in the spec's order (terms: [1, week])
    assert labels == ["sd(_cons)", "sd(week)", "corr(_cons,week)", "var(_cons)", "var(week)", "cov(_cons,week)"]
    assert random_tables[-1].title == "Residual"
    assert [r[0] for r in random_tables[-1].rows] == ["sd(Residual)", "var(Residual)"]
    fit_section = _section(report, "Model fit")
    assert fit_section.lines == ["LR test vs. linear regression: chi2(3) = 472.65   Prob > chi2 = 0.0000"]
    assert fit_section.notes == [lr["note"]]
    stats = dict(map(tuple, fit_section.tables[0].rows))
    assert stats["Log likelihood"] == "-1014.9268"
    assert stats["Free parameters"] == "6"
    estimation = dict(map(tuple, _section(report, "Estimation").tables[0].rows))
    assert estimation["Converged"] == "yes" and estimation["Iterations"] == "7"
    assert not any("time" in label.lower() for label in estimation)  # timings are in run.json
    assert report.converged and report.warnings == []


def test_fixed_effect_line_has_z_p_and_interval(pig_unstructured, make_fit):
    fit = make_fit(pig_unstructured)
    pt = pig_unstructured.model.partable
    values = fit.values.copy()
    values[pt.index("week")] = 6.2
    fit = dataclasses.replace(fit, values=values)
    row = next(r for r in _section(summarize(fit, pig_unstructured), "Fixed effects").tables[0].rows if r[0] == "week")
    z, p = z_and_p(6.2, 0.1)
    lo, hi = ci(6.2, 0.1)
    assert row == ["week", "6.2000", "0.1000", f"{z:.2f}", f"{p:.3f}", f"{lo:.4f}", f"{hi:.4f}"]


def test_unavailable_standard_errors_show_as_missing(pig_unstructured, make_fit):
    report = summarize(make_fit(pig_unstructured, cov=False), pig_unstructured)
    fixed = _section(report, "Fixed effects").tables[0]
    assert fixed.rows[0][2:] == [MISSING] * 5


def test_not_converged_and_warnings_are_prominent(pig_unstructured, make_fit):
    fit = make_fit(pig_unstructured, converged=False, warnings=("sd(week)@pig is at the boundary (0)",))
    report = summarize(fit, pig_unstructured)
    assert not report.converged and report.status == "NOT converged"
    assert report.warnings[0].startswith("The optimiser did not converge")
    assert "sd(week)@pig is at the boundary (0)" in report.warnings


def test_point_check_table(pig_unstructured, make_fit):
    check = {"fitted_points": {"person": 20, "district": 8},
             "loglik": {"{'person': 20, 'district': 8}": -5131.2338, "20": -5131.2338, "28": -5131.2343},
             "loglik_change": -0.0005, "max_rel_estimate_change": 0.000137,
             "estimate_change_method": "one Newton step"}
    report = summarize(make_fit(pig_unstructured, extras={"point_check": check}), pig_unstructured)
    table = _section(report, "Quadrature check").tables[0]
    assert table.columns == ["Points", "Log likelihood", "Change"]
    assert table.rows == [["person: 20, district: 8 (fitted)", "-5131.2338", ""],
                          ["20 per dimension", "-5131.2338", "0.000000"],
                          ["28 per dimension", "-5131.2343", "-0.000500"]]
    assert "0.000137" in table.note and "one Newton step" in table.note


def test_point_check_of_another_shape_is_still_shown(pig_unstructured, make_fit):
    check = [{"points": 8, "loglik": -5160.1}, {"points": 12, "loglik": -5160.0}]
    report = summarize(make_fit(pig_unstructured, extras={"point_check": check}), pig_unstructured)
    table = _section(report, "Quadrature check").tables[0]
    assert table.columns == ["points", "loglik"] and table.rows[0] == ["8", "-5160.1"]


def test_lr_test_in_either_estimator_layout(abortion_prepared, make_fit):
    quadrature = {"statistic": 3970.72, "df": 11, "p_value": 0.0, "null_loglik": -7116.59,
                  "distribution": "chi2 (conservative: parameters on the boundary)"}
    section = _section(summarize(make_fit(abortion_prepared, extras={"lr_test": quadrature}), abortion_prepared),
                       "Model fit")
    assert section.lines == ["LR test vs. the model without latent variables: chi2(11) = 3970.72   "
                             "Prob > chi2 = 0.0000"]
    assert section.notes == ["Note: LR test is conservative and provided only for reference."]
    chibar = {"chi2": 12.5, "df": 1, "p": 0.0002, "kind": "chibar2", "note": "ignored"}
    section = _section(summarize(make_fit(abortion_prepared, extras={"lr_test": chibar}), abortion_prepared),
                       "Model fit")
    assert section.lines == ["LR test vs. the model without latent variables: chibar2(01) = 12.50   "
                             "Prob >= chibar2 = 0.0002"]
    assert section.notes == []


def test_latent_tables_read_like_table_1(abortion_prepared, make_fit):
    report = summarize(make_fit(abortion_prepared), abortion_prepared)
    latent = _section(report, "Latent variables")
    loadings = latent.tables[0]
    assert loadings.title == "Factor loadings"
    assert loadings.columns == ["Item", "Intercept", "(SE)", "λ general", "(SE)", "λ extreme", "(SE)"]
    # Items in the data's order, as in the paper's table.
    assert [r[0] for r in loadings.rows] == ["woman", "couple", "marriage", "financial", "defect", "risk", "rape"]
    woman = loadings.rows[0]
    assert woman[3:5] == ["1.0000", "(fixed)"] and woman[5] == "—"
    defect = loadings.rows[4]
    assert defect[5:7] == ["1.0000", "(fixed)"]
    titles = [t.title for t in latent.tables]
    assert titles[1:] == ["Variances at level person", "Variances at level district",
                          "Structural model B (latent on latent)"]
    person = latent.tables[1]
    assert [r[0] for r in person.rows] == ["var(general)", "var(extreme)", "sd(general)", "sd(extreme)"]
    assert latent.tables[3].rows[0][:3] == ["general ← general_district", "1.0000", "(fixed)"]
    assert any("disturbances" in n for n in latent.notes)
    assert "Random-effects parameters" not in [s.heading for s in report.sections]
    assert report.subtitle.startswith("Generalized linear latent and mixed model")
