"""`mlmrun batch`: every spec fitted on the cluster exactly as `mlmrun fit` fits it, failures isolated and summarised."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from mlmrun import cli
from tests.conftest import SPECS

NOT_CONVERGING = (SPECS / "pig_slope.yaml").read_text().replace("estimation: {method: ML}",
                                                                "estimation: {method: ML, max_iter: 1}")
INVALID = "name: bad\ndata: {path: data/pig.csv}\nresponses:\n  - {name: weight, family: gaussian}\nfixed: \"weight ~ nosuch\"\n"


@pytest.fixture
def batch_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory: two shipped specs, one that stops after one iteration, one invalid, with their data."""
    shutil.copytree(SPECS / "data", tmp_path / "data")
    for name in ("pig_intercept.yaml", "cbpp.yaml"):
        shutil.copy(SPECS / name, tmp_path / name)
    (tmp_path / "slow.yaml").write_text(NOT_CONVERGING)
    (tmp_path / "bad.yaml").write_text(INVALID)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _estimates(path: Path) -> tuple[float, dict[str, float], bool]:
    doc = json.loads(path.read_text())
    return doc["loglik"], {p["name"]: p["estimate"] for p in doc["parameters"]}, doc["converged"]


def test_batch_writes_every_spec_as_fit_does_and_exits_2_for_an_invalid_one(batch_dir, dask_client, capsys):
    specs = ["pig_intercept.yaml", "cbpp.yaml", "slow.yaml", "bad.yaml", "missing.yaml"]
    code = cli.main(["batch", *specs, "--scheduler", dask_client.scheduler.address, "--out", "out",
                     "--json", "summary.json"])
    captured = capsys.readouterr()
    assert code == 2 and "Traceback" not in captured.err
    doc = json.loads((batch_dir / "summary.json").read_text())
    rows = {r["spec"]: r for r in doc["specs"]}
    assert [r["spec"] for r in doc["specs"]] == specs
    assert {s: (r["status"], r["exit_code"]) for s, r in rows.items()} == {
        "pig_intercept.yaml": ("ok", 0), "cbpp.yaml": ("ok", 0), "slow.yaml": ("not-converged", 1),
        "bad.yaml": ("invalid", 2), "missing.yaml": ("invalid", 2)}
    assert doc["counts"] == {"ok": 2, "not-converged": 1, "invalid": 2, "error": 0}
    assert doc["exit_code"] == 2 and doc["workers"] == 2
    assert "bad.yaml:5:8: fixed: column 'nosuch' is not in the data" in rows["bad.yaml"]["message"]
    assert "cannot read spec" in rows["missing.yaml"]["message"]
    assert sorted(p.name for p in (batch_dir / "out").iterdir()) == ["cbpp", "pig_intercept", "slow"]
    for spec in ("pig_intercept.yaml", "cbpp.yaml", "slow.yaml"):
        stem = Path(spec).stem
        assert cli.main(["fit", spec, "--out", f"single/{stem}", "--quiet"]) == rows[spec]["exit_code"]
        loglik, estimates, converged = _estimates(batch_dir / "out" / stem / "results.json")
        alone = _estimates(batch_dir / "single" / stem / "results.json")
        assert converged is alone[2] is (spec != "slow.yaml")
        assert loglik == pytest.approx(alone[0], abs=1e-10) == rows[spec]["loglik"]
        assert estimates.keys() == alone[1].keys()
        assert all(estimates[k] == pytest.approx(alone[1][k], rel=1e-10, abs=1e-10) for k in estimates)
        assert not list((batch_dir / "out" / stem).glob(".*.tmp"))
    table = captured.out
    assert "5 specs: 2 ok, 1 not converged, 2 invalid, 0 internal errors" in table and "(exit 2)" in table
    assert captured.err.count("mlmrun batch: [") == 5 and "[5/5]" in captured.err


def test_batch_exits_1_when_the_only_failure_is_non_convergence(batch_dir, dask_client, capsys):
    code = cli.main(["batch", "slow.yaml", "--scheduler", dask_client.scheduler.address, "--quiet"])
    out = capsys.readouterr().out
    assert code == 1 and "slow.yaml  not-converged" in out
    assert json.loads((batch_dir / "reports" / "pig_slope" / "results.json").read_text())["converged"] is False


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(("address", "says"), [
    (None, "cannot reach a Dask scheduler at 'tcp://127.0.0.1:"),
    ("http://127.0.0.1:8786", "is not a Dask scheduler address"),
    ("localhost", "is not a Dask scheduler address"),
])
def test_an_unreachable_or_malformed_scheduler_is_exit_2_and_writes_nothing(batch_dir, capsys, address, says):
    address = address or f"tcp://127.0.0.1:{_closed_port()}"
    code = cli.main(["batch", "pig_intercept.yaml", "--scheduler", address, "--connect-timeout", "1", "--out", "out"])
    err = capsys.readouterr().err
    assert code == 2 and says in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (batch_dir / "out").exists()


def test_zero_local_workers_and_clashing_output_folders_are_refused_before_any_fit(batch_dir, capsys):
    (batch_dir / "sub").mkdir()
    shutil.copy(batch_dir / "cbpp.yaml", batch_dir / "sub" / "cbpp.yaml")
    assert cli.main(["batch", "cbpp.yaml", "--local-workers", "0"]) == 2
    assert "--local-workers: 0; give a positive number" in capsys.readouterr().err
    for timeout in ("0", "nan", "inf"):
        assert cli.main(["batch", "cbpp.yaml", "--scheduler", "tcp://127.0.0.1:8786", "--connect-timeout", timeout]) == 2
        assert "--connect-timeout: " in capsys.readouterr().err
    assert cli.main(["batch", "cbpp.yaml", "sub/cbpp.yaml", "--out", "out", "--local-workers", "1"]) == 2
    assert "would both write to out/cbpp" in capsys.readouterr().err
    assert not (batch_dir / "out").exists() and not (batch_dir / "reports").exists()


def test_a_spec_whose_fit_raises_is_an_internal_error_and_the_others_still_fit(batch_dir, monkeypatch):
    """One spec's bug costs that spec only: status error (exit 3), its folder removed, the batch goes on."""
    import importlib

    from distributed import Client, LocalCluster

    from mlmrun.distributed.batch import BatchOptions, exit_code, run_batch
    from mlmrun.distributed.cluster import LOCAL_HTTP

    module = importlib.import_module("mlmrun.estimate")
    real = module.estimate

    def flaky(model, progress=None):
        if model.levels and model.levels[0].name == "herd":
            raise RuntimeError("optimiser exploded")
        return real(model, progress)

    monkeypatch.setattr(module, "estimate", flaky)  # threads of this process: the workers see it
    seen: list[tuple[str, int, int]] = []
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                      scheduler_kwargs=LOCAL_HTTP) as cluster, \
            Client(cluster, set_as_default=False) as client:
        rows = run_batch(client, ["cbpp.yaml", "pig_intercept.yaml"], BatchOptions(str(batch_dir), "out"),
                         lambda row, done, total: seen.append((row["spec"], done, total)))
    assert [(r["status"], r["exit_code"]) for r in rows] == [("error", 3), ("ok", 0)]
    assert "internal error: RuntimeError: optimiser exploded" in rows[0]["message"] and rows[0]["out"] is None
    assert exit_code(rows) == 3 and sorted(s for s, _, _ in seen) == ["cbpp.yaml", "pig_intercept.yaml"]
    assert [(d, t) for _, d, t in seen] == [(1, 2), (2, 2)]
    assert not (batch_dir / "out" / "cbpp").exists() and (batch_dir / "out" / "pig_intercept" / "results.json").is_file()


def test_a_batch_worker_confines_an_untrusted_spec_as_fit_does(batch_dir):
    """fit_one is the worker's whole job: a report.dir outside the project, or a file that is not YAML, is invalid."""
    from mlmrun.distributed.batch import BatchOptions, fit_one

    (batch_dir / "escape.yaml").write_text((SPECS / "pig_intercept.yaml").read_text()
                                           + "report: {dir: ../../elsewhere}\n")
    (batch_dir / "garbage.yaml").write_bytes(b"name: [unclosed\n\x00\x01")
    for spec, says in (("escape.yaml", "report.dir: '../../elsewhere' is outside the working directory"),
                       ("garbage.yaml", "garbage.yaml:")):
        row = fit_one(spec, BatchOptions(str(batch_dir)))
        assert (row["status"], row["exit_code"], row["out"]) == ("invalid", 2, None)
        assert says in row["message"], row["message"]
    assert not (batch_dir.parent / "elsewhere").exists() and not (batch_dir / "reports").exists()


def test_a_cluster_whose_workers_run_another_mlmrun_is_refused(batch_dir, dask_client, capsys, monkeypatch):
    import mlmrun

    monkeypatch.setattr(mlmrun, "__version__", "0.0.0-elsewhere")  # this process only; the workers keep theirs
    code = cli.main(["batch", "cbpp.yaml", "--scheduler", dask_client.scheduler.address, "--out", "out"])
    err = capsys.readouterr().err
    assert code == 2 and "workers run another mlmrun than this one (0.0.0-elsewhere)" in err
    assert not (batch_dir / "out").exists()
