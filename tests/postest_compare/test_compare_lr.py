"""`mlmrun compare`: LR tests of nested fits with the boundary mixtures, and its refusals.

The pig models are lme4's `anova(m0, m1)` pair of pig__postest_rs_un_ml (m0 the random intercept, m1
the unstructured random slope): our statistic must be lme4's 291.93 and the p-value the 50:50 mixture
of chi2(1) and chi2(2) at it (a variance and its covariance on the boundary), computed here with scipy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mlmrun import cli
from mlmrun.postest.compare import CONSERVATIVE_NOTE, Candidate, ComparisonError, compare, lr_test
from tests.conftest import SPECS, write_spec
from tests.reference.compare import load_reference

PIG_RI, PIG_RS_IND, PIG_RS_UN = (str(SPECS / f"{s}.yaml") for s in ("pig_intercept", "pig_slope",
                                                                      "pig_slope_unstructured"))


def run_compare(tmp_path: Path, *models: str, extra: tuple[str, ...] = ()) -> dict:
    out = tmp_path / "cmp.json"
    assert cli.main(["compare", *models, "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_random_slope_vs_intercept_matches_lme4_anova_with_mixture_p_value(tmp_path: Path) -> None:
    ref = load_reference("pig__postest_rs_un_ml", "results", "lr_test_vs_random_intercept")
    doc = run_compare(tmp_path, PIG_RI, PIG_RS_UN)
    (test,) = doc["lr_tests"]
    assert Path(test["restricted"]).name == "pig_intercept.yaml"
    assert Path(test["full"]).name == "pig_slope_unstructured.yaml"
    assert test["df"] == ref["df"] == 2
    assert test["chi2"] == pytest.approx(ref["chisq"], abs=2e-4)
    assert doc["models"][0]["loglik"] == pytest.approx(ref["loglik_null"], abs=1e-5)
    assert test["kind"] == "chibar2"
    assert test["distribution"] == "50:50 mixture of chi2(1) and chi2(2)"
    mixture = 0.5 * stats.chi2.sf(ref["chisq"], 1) + 0.5 * stats.chi2.sf(ref["chisq"], 2)
    assert test["p"] == pytest.approx(mixture, rel=1e-3)
    assert test["p"] < ref["p_naive"]  # the mixture is less conservative than anova's chi2(2)


def test_one_variance_is_chibar01_and_a_correlation_alone_is_plain_chi2(tmp_path: Path) -> None:
    doc = run_compare(tmp_path, PIG_RS_UN, PIG_RI, PIG_RS_IND)
    tests = {(Path(t["restricted"]).stem, Path(t["full"]).stem): t for t in doc["lr_tests"]}
    assert len(tests) == 3
    one = tests[("pig_intercept", "pig_slope")]
    assert one["tested"] == ["sd(week)@pig"] and one["kind"] == "chibar2" and one["df"] == 1
    assert one["p"] == pytest.approx(0.5 * stats.chi2.sf(one["chi2"], 1), rel=1e-9)
    corr = tests[("pig_slope", "pig_slope_unstructured")]
    assert corr["tested"] == ["corr(week,_cons)@pig"] and corr["kind"] == "chi2" and corr["note"] == ""
    lls = {Path(m["model"]).stem: m["loglik"] for m in doc["models"]}
    chi2 = 2 * (lls["pig_slope_unstructured"] - lls["pig_slope"])
    assert corr["chi2"] == pytest.approx(chi2, abs=1e-9)
    assert corr["p"] == pytest.approx(stats.chi2.sf(chi2, 1), rel=1e-9)
    for m in doc["models"]:
        assert m["aic"] == pytest.approx(-2 * m["loglik"] + 2 * m["n_params"], rel=1e-12)
        assert m["bic"] == pytest.approx(-2 * m["loglik"] + np.log(432) * m["n_params"], rel=1e-12)


def test_results_json_files_compare_like_their_specs(tmp_path: Path) -> None:
    files = []
    for spec in (PIG_RI, PIG_RS_UN):
        out = tmp_path / Path(spec).stem
        assert cli.main(["fit", spec, "--out", str(out), "--quiet"]) == 0
        files.append(str(out / "results.json"))
    from_files = run_compare(tmp_path, *files)["lr_tests"][0]
    from_specs = run_compare(tmp_path, PIG_RI, PIG_RS_UN)["lr_tests"][0]
    assert from_files["chi2"] == pytest.approx(from_specs["chi2"], abs=1e-9)
    assert from_files["p"] == pytest.approx(from_specs["p"], rel=1e-9)


def doc(params: list[tuple[str, str]], loglik: float, method: str = "ML", sha: str = "a", n_used: int = 10) -> dict:
    return {"loglik": loglik, "n_params": len(params), "method": method, "data": {"sha256": sha, "n_used": n_used},
            "parameters": [{"name": n, "block": b, "estimate": 1.0, "free": True} for n, b in params]}


BASE = [("Intercept", "fixed"), ("sd(Residual)", "residual"), ("sd(_cons)@school", "sd")]


def test_two_variances_give_the_conservative_chi2_with_statas_note() -> None:
    small = Candidate("a", doc(BASE, -100.0))
    large = Candidate("b", doc(BASE + [("sd(_cons)@class", "sd"), ("sd(x)@school", "sd")], -95.0))
    test = lr_test(small, large)
    assert test["kind"] == "chi2" and test["df"] == 2 and test["note"] == CONSERVATIVE_NOTE
    assert test["p"] == pytest.approx(stats.chi2.sf(10.0, 2), rel=1e-12)


def test_a_variance_with_two_covariances_is_the_chi2_2_3_mixture() -> None:
    small = Candidate("a", doc(BASE + [("sd(x)@school", "sd"), ("corr(x,_cons)@school", "corr")], -100.0))
    large = Candidate("b", doc(BASE + [
        ("sd(x)@school", "sd"), ("corr(x,_cons)@school", "corr"), ("sd(z)@school", "sd"),
        ("corr(z,_cons)@school", "corr"), ("corr(z,x)@school", "corr")], -96.0))
    test = lr_test(small, large)
    assert test["kind"] == "chibar2" and test["df"] == 3
    assert test["p"] == pytest.approx(0.5 * stats.chi2.sf(8.0, 2) + 0.5 * stats.chi2.sf(8.0, 3), rel=1e-12)


def test_fixed_effects_only_is_plain_chi2_and_a_zero_statistic_has_p_one() -> None:
    small = Candidate("a", doc(BASE, -100.0))
    large = Candidate("b", doc(BASE + [("x", "fixed")], -100.0 + 1e-9))
    test = lr_test(small, large)
    assert test["kind"] == "chi2" and test["note"] == "" and test["p"] == 1.0


def test_non_nested_models_get_no_lr_test() -> None:
    a = Candidate("a", doc(BASE + [("x", "fixed")], -100.0))
    b = Candidate("b", doc(BASE + [("z", "fixed"), ("w", "fixed")], -99.0))
    assert lr_test(a, b) is None
    assert compare([a, b])["lr_tests"] == []


@pytest.mark.parametrize(("other", "message"), [
    (doc(BASE, -1.0, sha="b"), "different data"),
    (doc(BASE, -1.0, n_used=9), "different data"),
    (doc(BASE, -1.0, method="REML"), "ML and REML likelihoods are not comparable"),
])
def test_refuses_different_data_and_ml_vs_reml(other: dict, message: str) -> None:
    with pytest.raises(ComparisonError, match=message):
        compare([Candidate("a", doc(BASE, -1.0)), Candidate("b", other)])


def test_refuses_reml_fits_with_different_fixed_parts_but_compares_equal_ones() -> None:
    a = Candidate("a", doc(BASE, -1.0, method="REML"))
    with pytest.raises(ComparisonError, match="REML fits with different fixed parts"):
        compare([a, Candidate("b", doc(BASE + [("x", "fixed")], -1.0, method="REML"))])
    same = compare([a, Candidate("b", doc(BASE + [("sd(x)@school", "sd")], 0.0, method="REML"))])
    assert same["lr_tests"][0]["kind"] == "chibar2"


def test_cli_refusals_exit_2_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["compare", PIG_RS_IND, str(SPECS / "pig_slope_reml.yaml")]) == 2
    assert "ML and REML likelihoods are not comparable" in capsys.readouterr().err
    hsb = write_spec(tmp_path, 'name: h\ndata: {path: ' + str(SPECS / "data" / "hsb82.csv") + '}\n'
                     'levels: [{name: school, id: school}]\nresponses: [{name: mAch, family: gaussian}]\n'
                     'fixed: "mAch ~ 1"\nrandom: [{level: school, terms: [1]}]\n')
    assert cli.main(["compare", PIG_RI, str(hsb), "--allow-outside-data"]) == 2
    assert "different data" in capsys.readouterr().err
    bad = tmp_path / "results.json"
    bad.write_text('{"loglik": 1}')
    assert cli.main(["compare", PIG_RI, str(bad)]) == 2
    assert "not a results.json" in capsys.readouterr().err
    assert cli.main(["compare", PIG_RI]) == 2
    assert "at least two models" in capsys.readouterr().err


def test_a_non_converged_model_is_flagged_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = []
    for spec in (PIG_RI, PIG_RS_IND):
        out = tmp_path / Path(spec).stem
        assert cli.main(["fit", spec, "--out", str(out), "--quiet"]) == 0
        files.append(out / "results.json")
    doc = json.loads(files[1].read_text())
    doc["converged"] = False
    files[1].write_text(json.dumps(doc))
    assert cli.main(["compare", *map(str, files)]) == 1
    captured = capsys.readouterr()
    assert "(NOT converged)" in captured.out and "did not converge" in captured.err


def test_bad_options_exit_2_before_fitting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["compare", PIG_RI, PIG_RS_IND, "--json", str(tmp_path / "no" / "c.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["compare", PIG_RI, PIG_RS_IND, "--bootstrap", "0"]) == 2
    assert "--bootstrap" in capsys.readouterr().err


def test_different_integration_is_noted(tmp_path: Path) -> None:
    doc = run_compare(tmp_path, PIG_RI, str(SPECS / "pig_intercept_quadrature.yaml"))
    assert doc["lr_tests"] == []  # same free parameters: not nested
    assert len(doc["notes"]) == 1 and "integrated differently" in doc["notes"][0]
    lls = [m["loglik"] for m in doc["models"]]
    assert lls[0] == pytest.approx(lls[1], abs=1e-5)
