"""Infinite and undefined numbers are rendered as such, and never crash the report or lose the results.

A confidence interval of an SD on the log scale, est * exp(+-1.96 se / est), overflows when se / est
exceeds ~362 (math.exp raises beyond 709.78): an SD of 1e-3 with an SE of 1 did that, the report
crashed and the fit's results were lost. Now the upper end is inf and is shown as "inf"; NaN and -inf
are shown as "NaN" and "-inf"; results.json writes null for every non-finite number and stays
strict JSON (no bare NaN or Infinity tokens).
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from mlmrun import cli
from mlmrun.pipeline import prepare
from mlmrun.report import render_html, render_markdown, summarize
from mlmrun.report.format import MISSING, Z95, ci, fixed, num, pvalue, se_num, z_and_p
from mlmrun.results import FitResult, results_dict, results_json
from tests.report.fakes import SPECS, fake_fit

PIG = SPECS / "pig_slope.yaml"


def strict_json(text: str) -> dict:
    """Parse JSON, failing on NaN / Infinity / -Infinity tokens (Python's json accepts them by default)."""

    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_text_of_non_finite_numbers() -> None:
    assert [num(math.inf), num(-math.inf), num(math.nan), num(None)] == ["inf", "-inf", "NaN", MISSING]
    assert [fixed(math.inf, 2), fixed(-math.inf, 4), fixed(math.nan, 1)] == ["inf", "-inf", "NaN"]
    assert pvalue(math.nan) == "NaN" and pvalue(None) == MISSING
    assert se_num(math.nan) == MISSING and se_num(None) == MISSING and se_num(math.inf) == "inf"
    assert num(np.float32(2.5)) == "2.5" and num(np.float64(-np.inf)) == "-inf"


def test_log_scale_interval_that_overflows_has_an_infinite_upper_end() -> None:
    lo, hi = ci(1e-3, 1.0, "log")  # exp(1960) overflows; exp(-1960) underflows to 0
    assert hi == math.inf and lo == 0.0
    # below the overflow the closed form est * exp(+-z se / est)
    lo, hi = ci(2.0, 0.5, "log")
    assert (lo, hi) == pytest.approx((2.0 * math.exp(-Z95 * 0.25), 2.0 * math.exp(Z95 * 0.25)), rel=1e-15)


def test_interval_and_z_with_an_infinite_se() -> None:
    assert ci(1.0, math.inf) == (-math.inf, math.inf)
    assert ci(0.5, math.inf, "log") == (0.0, math.inf)
    assert ci(0.5, math.inf, "atanh") == (-1.0, 1.0)
    z, p = z_and_p(1.0, math.inf)
    assert z == 0.0 and p == 1.0
    assert z_and_p(1.0, math.nan) == (None, None) and ci(1.0, math.nan) == (None, None)


def overflowing_fit(prepared) -> FitResult:
    """sd(week)@pig = 1e-3 with an SE of 1 (its interval overflows), an infinite and an undefined estimate."""
    fit = fake_fit(prepared)
    pt = prepared.model.partable
    values = fit.values.copy()
    values[pt.index("sd(week)@pig")] = 1e-3
    values[pt.index("week")] = math.inf
    values[pt.index("Intercept")] = math.nan
    cov = fit.cov_free.copy()
    k = int(pt.frame.at[pt.index("sd(week)@pig"), "free"]) - 1
    cov[k, k] = 1.0
    free = fit.free.copy()
    free[k] = 1e-3
    return dataclasses.replace(fit, values=values, free=free, cov_free=cov, loglik=math.nan)


def sd_week_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("| sd(week)"))


def test_report_renders_overflowing_interval_and_non_finite_estimates() -> None:
    prepared = prepare(PIG)
    fit = overflowing_fit(prepared)
    report = summarize(fit, prepared)
    md, html = render_markdown(report), render_html(report)
    assert sd_week_line(md).split("|")[2:6] == [" 0.0010 ", " 1.0000 ", " 0.0000 ", " inf "]
    week = next(line for line in md.splitlines() if line.startswith("| week |"))
    assert week.split("|")[2].strip() == "inf"
    intercept = next(line for line in md.splitlines() if line.startswith("| \\_cons |"))
    assert intercept.split("|")[2].strip() == "NaN"
    assert ">inf<" in html
    assert ">NaN<" in html


def test_results_json_stays_strict_with_non_finite_values() -> None:
    prepared = prepare(PIG)
    fit = overflowing_fit(prepared)
    doc = strict_json(results_json(results_dict(fit, PIG, prepared, total_seconds=1.0)))
    rows = {p["name"]: p for p in doc["parameters"]}
    assert rows["week"]["estimate"] is None and rows["Intercept"]["estimate"] is None
    assert rows["sd(week)@pig"]["estimate"] == pytest.approx(1e-3) and rows["sd(week)@pig"]["se"] == pytest.approx(1.0)
    assert doc["loglik"] is None


def test_cli_writes_every_file_for_a_fit_whose_interval_overflows(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(cli, "estimate", lambda model, progress=None: overflowing_fit(prepare(PIG)))
    out = tmp_path / "out"
    assert cli.main(["fit", str(PIG), "--out", str(out), "--quiet"]) == 0
    assert {p.name for p in out.iterdir()} == {"results.json", "report.html", "report.md", "run.json"}
    strict_json((out / "results.json").read_text())
    assert sd_week_line((out / "report.md").read_text()).split("|")[5].strip() == "inf"
