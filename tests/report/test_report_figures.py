"""Report figures (issue 16): deterministic self-contained SVG, what they draw, and where they are written."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare
from mlmrun.postest.diagnostics import gaussian_residuals
from mlmrun.report import plots
from tests.report.fakes import ROOT, SPECS

SVG = "{http://www.w3.org/2000/svg}"


def texts(svg: str) -> list[str]:
    """The text of every <text> element (matplotlib keeps text as text with svg.fonttype 'none')."""
    return [t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text")]


def test_caterpillar_draws_the_lowest_and_highest_units_when_there_are_many():
    rng = np.random.default_rng(3)
    mean = rng.normal(size=100)
    units = [f"u{i}" for i in range(100)]
    fig = plots.caterpillar("eb-test", "x at level y", units, mean, np.full(100, 0.2), top=20)
    labels = set(texts(fig.svg))
    order = np.argsort(mean)
    assert {units[i] for i in order[:10]} | {units[i] for i in order[-10:]} <= labels
    assert not {units[i] for i in order[10:-10]} & labels
    assert any("10 lowest and 10 highest of 100 units" in t for t in labels)


def test_figures_are_self_contained_svg_without_dates_or_scripts():
    fig = plots.history("h", "Log likelihood by iteration", [1, 2, 3], [-10.0, -9.0, -8.5])
    root = ET.fromstring(fig.svg)
    assert root.tag == f"{SVG}svg"
    assert "<script" not in fig.svg and "href=\"http" not in fig.svg
    assert not re.search(r"<dc:date>", fig.svg)
    assert fig.inline.startswith("<svg") and fig.name == "fig-h.svg"


def test_figure_bytes_do_not_depend_on_the_process():
    """matplotlib salts element ids with a random UUID per process unless svg.hashsalt is set."""
    code = ("from mlmrun.report import plots; import sys; "
            "sys.stdout.write(plots.history('h', 't', [1, 2, 3], [-3.0, -2.0, -1.5]).svg)")
    runs = [subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert runs[0] == runs[1] and "<svg" in runs[0]


def test_standardized_residuals_equal_an_independent_blup_computation():
    """pig_intercept: u_j = n_j s_u^2 / (n_j s_u^2 + s_e^2) * mean_j(y - x'b), residual (y - x'b - u_j) / s_e."""
    prepared = prepare(SPECS / "pig_intercept.yaml")
    fit = estimate(prepared.model)
    model = prepared.model
    pt = model.partable
    beta = fit.values[list(model.beta_rows)]
    s_u, s_e = fit.values[pt.index("sd(_cons)@pig")], fit.values[pt.index("sd(Residual)")]
    r = model.y - model.X @ beta
    codes = model.levels[0].codes
    n = np.bincount(codes)
    u = n * s_u**2 / (n * s_u**2 + s_e**2) * (np.bincount(codes, weights=r) / n)
    ((name, fitted, standardized),) = gaussian_residuals(fit)
    assert name == "weight"
    np.testing.assert_allclose(fitted, model.X @ beta + u[codes], rtol=1e-7)
    np.testing.assert_allclose(standardized, (r - u[codes]) / s_e, rtol=1e-6, atol=1e-8)


def test_the_fit_records_the_log_likelihood_by_iteration():
    prepared = prepare(SPECS / "pig_slope.yaml")
    fit = estimate(prepared.model)
    history = fit.extras["history"]
    assert [i for i, _ in history] == list(range(1, len(history) + 1)) and len(history) == fit.iterations
    assert history[-1][1] == pytest.approx(fit.loglik, abs=1e-6)
    assert history[-1][1] >= history[0][1]


def _fit_cli(spec: Path, out: Path) -> None:
    subprocess.run([sys.executable, "-m", "mlmrun", "fit", str(spec), "--out", str(out), "--quiet"], cwd=ROOT,
                   check=True, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                                    "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)})


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.mark.parametrize("spec", ["pig_slope.yaml", pytest.param("cbpp.yaml", marks=pytest.mark.slow)])
def test_a_rerun_writes_identical_results_and_reports(tmp_path, spec):
    out = tmp_path / "out"
    _fit_cli(SPECS / spec, out)
    first = _files(out)
    _fit_cli(SPECS / spec, out)
    second = _files(out)
    assert set(first) == set(second)
    assert {"results.json", "report.html", "report.md", "run.json", "fig-loglik-history.svg"} <= set(first)
    for name in first:
        if name != "run.json":  # wall-clock times live here, and only here
            assert first[name] == second[name], name
    assert b"timing" in first["run.json"] and b"timing" not in first["results.json"]


def test_report_md_links_the_figures_written_beside_it_and_html_embeds_them(tmp_path):
    out = tmp_path / "out"
    _fit_cli(SPECS / "pig_slope.yaml", out)
    md = (out / "report.md").read_text(encoding="utf-8")
    html = (out / "report.html").read_text(encoding="utf-8")
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    written = sorted(p.name for p in out.glob("fig-*.svg"))
    assert sorted(linked) == written
    assert set(written) == {"fig-eb-pig-cons.svg", "fig-eb-pig-week.svg", "fig-residuals.svg", "fig-loglik-history.svg"}
    assert html.count("<svg") == len(written)
    for name in written:  # the inline copy is the file's own <svg> element
        svg = (out / name).read_text(encoding="utf-8")
        assert svg[svg.index("<svg"):].strip() in html


def test_stale_figures_are_removed_and_other_files_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "fig-loadings.svg").write_text("<svg/>")
    (out / "notes.txt").write_text("mine")
    _fit_cli(SPECS / "pig_slope.yaml", out)
    assert not (out / "fig-loadings.svg").exists() and (out / "notes.txt").read_text() == "mine"
