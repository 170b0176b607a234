"""examples/notebook_api.py runs as documented and shows what each cell promises."""

from __future__ import annotations

import runpy

import pytest

from tests.conftest import ROOT


def test_the_notebook_example_runs_every_cell(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                              tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(ROOT / "examples" / "notebook_api.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "<mlmrun.Fit cbpp: converged" in out and "sd(_cons)@herd" in out
    assert "eb_mean(_cons)@herd" in out and "mu_marginal" in out and "unseen@herd" in out
    assert "<mlmrun.Fit cbpp_dict: converged" in out and "characters of results.json" in out
