"""What the report shows (issue 16): Stata-like header, equations, names and block layout, decimals, footer."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest

from mlmrun import __version__
from mlmrun.pipeline import prepare
from mlmrun.report import render_markdown, summarize
from mlmrun.report.format import column_decimals, format_columns
from tests.report.fakes import SPECS


def _section(report, heading):
    return next(s for s in report.sections if s.heading == heading)


def _spec(tmp_path: Path, body: str, data: str = "pig.csv") -> Path:
    (tmp_path / data).write_bytes((SPECS / "data" / data).read_bytes())
    path = tmp_path / "spec.yaml"
    path.write_text(body, encoding="utf-8")
    return path


PIG_BLOCK = """\
name: pig_block
data: {{path: pig.csv}}
levels: [{{name: pig, id: id}}]
responses: [{{name: weight, family: gaussian}}]
fixed: "weight ~ week"
random: [{{level: pig, terms: [1, week], covariance: {kind}}}]
{extra}"""


def test_header_reads_like_stata(pig_unstructured, make_fit):
    fit = make_fit(pig_unstructured, extras={"wald": {"chi2": 4689.52, "df": 1, "p": 0.0}})
    header = dict(summarize(fit, pig_unstructured).header)
    assert list(header)[:6] == ["Number of obs", "Groups: pig", "Wald chi2(1)", "Prob > chi2", "Log likelihood",
                                "Method"]
    assert header["Number of obs"] == "432"
    assert header["Groups: pig"] == "48  (rows per group: min 9, avg 9.0, max 9)"
    assert header["Wald chi2(1)"] == "4689.52" and header["Prob > chi2"] == "0.0000"
    assert header["Log likelihood"] == "-1014.9268"


def test_model_is_written_as_equations(pig_unstructured, make_fit):
    lines = _section(summarize(make_fit(pig_unstructured), pig_unstructured), "Model").lines
    assert lines[0] == "E[weight] = x'β (week) + u(_cons)@pig + week·u(week)@pig   [gaussian]"
    assert "(u(_cons), u(week)) at pig ~ N(0, Ψ), Ψ unstructured" in lines
    assert lines[-1] == "residual of weight ~ N(0, σ²)"


def test_structural_model_and_loadings_in_the_equations(abortion_prepared, make_fit):
    lines = _section(summarize(make_fit(abortion_prepared), abortion_prepared), "Model").lines
    assert lines[0].startswith("logit E[resp] = x'β (0 + C(item)) + λ[item]·general@person + λ[item]·extreme@person")
    assert "general = b·general_district + ζ(general)" in lines


def test_constant_is_cons_in_every_table(pig_unstructured, make_fit):
    md = render_markdown(summarize(make_fit(pig_unstructured), pig_unstructured))
    assert "Intercept" not in md
    assert "| \\_cons |" in md and "| sd(\\_cons) |" in md


def test_one_term_block_is_labelled_identity(tmp_path, make_fit):
    prepared = prepare(_spec(tmp_path, PIG_BLOCK.format(kind="independent", extra="").replace("[1, week]", "[1]")))
    titles = [t.title for t in _section(summarize(make_fit(prepared), prepared), "Random-effects parameters").tables]
    assert titles == ["pig: Identity", "Residual"]


def test_identity_block_prints_one_sd_for_all_its_terms(tmp_path, make_fit):
    prepared = prepare(_spec(tmp_path, PIG_BLOCK.format(kind="identity", extra="")))
    table = _section(summarize(make_fit(prepared), prepared), "Random-effects parameters").tables[0]
    assert table.title == "pig: Identity"
    assert [r[0] for r in table.rows] == ["sd(_cons week)", "var(_cons week)"]


def test_exchangeable_block_is_one_variance_and_one_covariance(tmp_path, make_fit):
    prepared = prepare(_spec(tmp_path, PIG_BLOCK.format(kind="exchangeable", extra="")))
    fit = make_fit(prepared)
    table = _section(summarize(fit, prepared), "Random-effects parameters").tables[0]
    assert table.title == "pig: Exchangeable"
    assert [r[0] for r in table.rows] == ["sd(_cons week)", "corr(_cons week)", "var(_cons week)", "cov(_cons week)"]
    sd = fit.values[prepared.model.partable.index("sd(_cons)@pig")]
    assert float(table.rows[2][1]) == pytest.approx(sd**2, abs=5e-5)  # var = sd^2 at the table's 4 decimals


def test_factor_model_prints_item_intercepts_once(abortion_prepared, make_fit):
    report = summarize(make_fit(abortion_prepared), abortion_prepared)
    loadings = _section(report, "Latent variables").tables[0]
    assert loadings.columns[1] == "Intercept"
    # every fixed coefficient is an item intercept, shown in the loadings table: no fixed-effects table
    assert "Fixed effects" not in [s.heading for s in report.sections]


def test_report_digits_choose_the_decimals(tmp_path, make_fit):
    prepared = prepare(_spec(tmp_path, PIG_BLOCK.format(kind="unstructured", extra="report: {digits: 2}\n")))
    fixed = _section(summarize(make_fit(prepared), prepared), "Fixed effects").tables[0]
    for row in fixed.rows:
        estimate, se, z, p = row[1:5]
        assert len(estimate.split(".")[1]) >= 2 and len(z.split(".")[1]) == 2 and len(p.split(".")[1]) == 3
    week = next(r for r in fixed.rows if r[0] == "week")
    assert week[2] == "0.10"  # SE 0.1 with 2 decimals (the column's largest |value| is 0.1: 2 digits suffice)


def test_a_column_has_one_number_of_decimals():
    assert column_decimals([19.25, 6.2], 4) == 4
    assert column_decimals([0.0049, 2.4e-5], 4) == 6  # the largest value keeps 4 significant digits
    assert column_decimals([None, math.nan, 0.0], 3) == 3
    rows = format_columns([["a", 1.5, "(fixed)", 2.0, 0.00012], ["b", -12.25, 0.5, None, 0.5]],
                          ["text", "num", "num", "z", "p"], 3)
    assert rows == [["a", "1.500", "(fixed)", "2.00", "0.000"], ["b", "-12.250", "0.500", ".", "0.500"]]
    # right-aligned cells of equal decimals line up on the decimal point
    points = [len(r[1]) - r[1].index(".") for r in rows]
    assert len(set(points)) == 1


def test_footer_records_provenance(pig_unstructured, make_fit):
    report = summarize(make_fit(pig_unstructured), pig_unstructured, argv=["fit", "specs/x y.yaml"])
    footer = dict(report.footer)
    assert footer["mlmrun"] == __version__
    assert footer["Spec SHA-256"] == hashlib.sha256(pig_unstructured.path.read_bytes()).hexdigest()
    assert footer["Data SHA-256"] == hashlib.sha256((SPECS / "data" / "pig.csv").read_bytes()).hexdigest()
    assert footer["Command"] == "mlmrun fit 'specs/x y.yaml'"
    assert footer["Python"].count(".") == 2 and "numpy " in footer["Libraries"]
