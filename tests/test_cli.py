"""The mlmrun command: fit/validate/schema, exit codes, output folders, iteration log, atomic output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlmrun import cli
from mlmrun.spec.schema import schema_text
from tests.report.fakes import ROOT, SPECS, fake_fit

PIG = SPECS / "pig_slope.yaml"
OUTPUTS = {"results.json", "report.html", "report.md", "run.json"}


@pytest.fixture
def fake_estimate(monkeypatch):
    """Replace estimation by a hand-made FitResult; `state['converged']` sets the outcome."""
    state = {"converged": True}

    def estimate(model, progress=None):
        from mlmrun.pipeline import prepare

        if progress is not None:
            progress(1, -1100.5)
            progress(2, -1014.9268)
        return fake_fit(prepare(PIG), converged=state["converged"])

    monkeypatch.setattr(cli, "estimate", estimate)
    return state


def test_fit_writes_three_files_and_logs_iterations(tmp_path, fake_estimate, capsys):
    out = tmp_path / "out"
    assert cli.main(["fit", str(PIG), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == OUTPUTS
    doc = json.loads((out / "results.json").read_text())
    assert doc["converged"] is True and doc["spec"]["name"] == "pig_slope"
    captured = capsys.readouterr()
    assert "iter 1  loglik -1100.500000" in captured.err
    assert "iter 2  loglik -1014.926800" in captured.err
    assert "converged" in captured.out


def test_quiet_suppresses_the_iteration_log(tmp_path, fake_estimate, capsys):
    assert cli.main(["fit", str(PIG), "--out", str(tmp_path), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "iter" not in captured.err and captured.out == ""


def test_not_converged_exits_1_and_still_writes_flagged_results(tmp_path, fake_estimate, capsys):
    fake_estimate["converged"] = False
    assert cli.main(["fit", str(PIG), "--out", str(tmp_path)]) == 1
    assert json.loads((tmp_path / "results.json").read_text())["converged"] is False
    assert "NOT converged" in (tmp_path / "report.html").read_text()
    assert "did not converge" in capsys.readouterr().err


def test_default_output_folder_is_reports_name(tmp_path, fake_estimate, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["fit", str(PIG), "--quiet"]) == 0
    assert {p.name for p in (tmp_path / "reports" / "pig_slope").iterdir()} == OUTPUTS


def test_spec_report_dir_is_used(tmp_path, fake_estimate, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "pig.csv").write_text((SPECS / "data" / "pig.csv").read_text())
    spec = tmp_path / "s.yaml"
    spec.write_text(PIG.read_text() + "report: {dir: custom/out}\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["fit", str(spec), "--quiet"]) == 0
    assert {p.name for p in (tmp_path / "custom" / "out").iterdir()} == OUTPUTS


def test_invalid_spec_exits_2_and_writes_nothing(tmp_path, fake_estimate, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text(PIG.read_text().replace("estimation: {method: ML}", "estimation: {methd: ML}"))
    out = tmp_path / "out"
    assert cli.main(["fit", str(spec), "--out", str(out)]) == 2
    assert not out.exists()
    assert f"{spec}:12:14: estimation.methd: unknown key 'methd'; did you mean 'method'?" in capsys.readouterr().err


def test_rendering_failure_leaves_nothing_half_written(tmp_path, fake_estimate, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("previous")

    def broken(report):
        raise RuntimeError("template exploded")

    monkeypatch.setattr("mlmrun.report.outputs.render_markdown", broken)
    assert cli.main(["fit", str(PIG), "--out", str(out)]) == 3
    assert [p.name for p in out.iterdir()] == ["results.json"]
    assert (out / "results.json").read_text() == "previous"
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: template exploded" in err and "Traceback" not in err


def test_failure_while_writing_leaves_previous_files(tmp_path, fake_estimate, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("previous")
    real = os.replace
    calls = []

    def flaky_replace(src, dst):
        calls.append(dst)
        if len(calls) == 1:
            raise OSError("disk full")
        real(src, dst)

    monkeypatch.setattr(os, "replace", flaky_replace)
    assert cli.main(["fit", str(PIG), "--out", str(out), "--quiet"]) == 3
    assert sorted(p.name for p in out.iterdir()) == ["report.md"]
    assert (out / "report.md").read_text() == "previous"


@pytest.mark.parametrize("spec", sorted(SPECS.glob("*.yaml")), ids=lambda p: p.name)
def test_validate_every_shipped_spec(spec, capsys):
    assert cli.main(["validate", str(spec)]) == 0
    assert ": OK: spec" in capsys.readouterr().out


def test_validate_show_partable(capsys):
    assert cli.main(["validate", str(SPECS / "pig_slope_unstructured.yaml"), "--show-partable"]) == 0
    out = capsys.readouterr().out
    for name in ("sd(_cons)@pig", "corr(week,_cons)@pig", "sd(Residual)", "loading(week@pig)"):
        assert name in out
    assert "transform" in out and "origin" in out


def test_schema_prints_the_json_schema(capsys):
    assert cli.main(["schema"]) == 0
    out = capsys.readouterr().out
    assert out == schema_text()
    assert json.loads(out)["title"] == "mlmrun spec"


def test_command_line_errors_have_no_traceback(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: x\nfixed: 3\nwhat: 1\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "mlmrun", "validate", str(spec)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "\nbad.yaml:3:1: what: unknown key 'what'" in proc.stderr  # relative to the working directory
    assert "\nbad.yaml:1:1: data: missing required key 'data'" in proc.stderr


def test_missing_spec_file_exits_2(tmp_path, capsys):
    assert cli.main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read spec" in capsys.readouterr().err


def test_real_fit_of_pig_slope(tmp_path):
    """End to end with the real estimator (the exact Gaussian path)."""
    assert cli.main(["fit", str(PIG), "--out", str(tmp_path), "--quiet"]) == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    names = {p["name"] for p in doc["parameters"]}
    assert {"sd(_cons)@pig", "var(_cons)@pig", "sd(Residual)", "var(Residual)"} <= names
    assert doc["integration"]["method"] == "exact"


def test_python_dash_m_entry_point_exists():
    assert Path(cli.__file__).with_name("__main__.py").exists()
