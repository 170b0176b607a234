"""`mlmrun simulate` writes the design with simulated responses; `compare --bootstrap` is seeded per replicate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlmrun import cli
from mlmrun.estimate import estimate
from mlmrun.pipeline import prepare
from mlmrun.postest.bootstrap import bootstrap_p, make_task, replicate
from mlmrun.postest.compare import ComparisonError
from tests.conftest import SPECS


def test_simulate_writes_replicates_keeping_design_and_is_reproducible(tmp_path: Path) -> None:
    out = tmp_path / "sim.csv"
    args = ["simulate", str(SPECS / "wine_logit.yaml"), "--seed", "3", "--replicates", "4", "--out", str(out), "--quiet"]
    assert cli.main(args) == 0
    first = pd.read_csv(out)
    assert list(first.columns) == ["replicate", "obs", "judge", "rating"]
    data = pd.read_csv(SPECS / "data" / "wine.csv")
    assert len(first) == 4 * len(data)
    one = first[first["replicate"] == 2]
    assert one["obs"].tolist() == list(range(1, len(data) + 1))
    assert one["judge"].tolist() == data["judge"].tolist()
    assert set(first["rating"]) <= set(data["rating"])
    assert cli.main(args) == 0
    pd.testing.assert_frame_equal(first, pd.read_csv(out))


def test_simulate_refuses_a_bad_output_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["simulate", str(SPECS / "pig_intercept.yaml"), "--seed", "1", "--out", str(tmp_path / "x.txt")]) == 2
    assert "must end in .csv or .parquet" in capsys.readouterr().err
    missing = tmp_path / "no" / "x.csv"
    assert cli.main(["simulate", str(SPECS / "pig_intercept.yaml"), "--seed", "1", "--out", str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["simulate", str(SPECS / "pig_intercept.yaml"), "--seed", "1", "--replicates", "0",
                     "--out", str(tmp_path / "x.csv")]) == 2
    assert "--replicates" in capsys.readouterr().err


@pytest.fixture(scope="module")
def pig_pair():
    small = estimate(prepare(SPECS / "pig_intercept.yaml").model)
    large = estimate(prepare(SPECS / "pig_slope.yaml").model)
    return small, large


def test_bootstrap_replicates_do_not_depend_on_their_order(pig_pair) -> None:
    task = make_task(*pig_pair, seed=5)
    forward = [replicate(task, i) for i in range(3)]
    backward = [replicate(task, i) for i in (2, 1, 0)][::-1]
    assert forward == backward
    assert all(s is not None and s >= 0 for s in forward)
    result = bootstrap_p(task, 1.0, 3, mapper=lambda f, shared, idx: [f(shared, i) for i in reversed(list(idx))][::-1])
    assert result["statistics"] == forward
    assert result["p"] == pytest.approx((1 + sum(s >= 1.0 for s in forward)) / 4)


def test_bootstrap_p_value_of_a_large_statistic_is_one_over_r_plus_one(tmp_path: Path) -> None:
    out = tmp_path / "b.json"
    assert cli.main(["compare", str(SPECS / "pig_intercept.yaml"), str(SPECS / "pig_slope.yaml"),
                     "--bootstrap", "5", "--seed", "2", "--json", str(out)]) == 0
    (test,) = json.loads(out.read_text())["lr_tests"]
    boot = test["bootstrap"]
    assert boot["replicates"] == 5 and boot["replicates_used"] == 5 and boot["seed"] == 2
    assert max(boot["statistics"]) < test["chi2"]  # 291.8 is far in the tail of the null distribution
    assert boot["p"] == pytest.approx(1 / 6)


def test_bootstrap_needs_specs_and_the_same_response(tmp_path: Path, pig_pair,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ri"
    assert cli.main(["fit", str(SPECS / "pig_intercept.yaml"), "--out", str(out), "--quiet"]) == 0
    assert cli.main(["compare", str(out / "results.json"), str(SPECS / "pig_slope.yaml"), "--bootstrap", "2"]) == 2
    assert "both must be given as specs" in capsys.readouterr().err
    small, large = pig_pair
    other = estimate(prepare(SPECS / "cbpp.yaml").model)
    with pytest.raises(ComparisonError, match="same response rows"):
        make_task(small, other, 1)
    assert np.isfinite(large.loglik)


def test_simulated_frame_of_mixed_responses_names_the_equation() -> None:
    from mlmrun.postest.simulate import simulate_replicates, simulated_frame

    model = prepare(SPECS / "diet.yaml").model
    values = model.partable.start_values
    frame = simulated_frame(model, simulate_replicates(model, values, 1, 2))
    assert list(frame.columns) == ["replicate", "obs", "id", "equation", "y"]
    data = pd.read_csv(SPECS / "data" / "diet.csv")
    binary = frame["equation"].to_numpy() == 2
    assert binary.sum() == 2 * (data["item"] == "chd").sum()
    assert set(frame.loc[binary, "y"]) <= {0.0, 1.0}
    assert frame.loc[~binary, "y"].nunique() > 100
