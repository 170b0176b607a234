"""REML is defined for linear gaussian models only: any other model asking for it is refused, never fitted as ML.

Through the command line: exit 2, nothing written, the message located at
the spec's `estimation` key (FILE:LINE:COL) with what to write instead.
"""

from __future__ import annotations

import re

import pytest

from mlmrun import cli
from tests.conftest import write_spec

RESPONSES = {
    "binomial": ("{name: incidence, family: binomial, link: logit, trials: size}", "cbpp.csv", "herd", "incidence ~ C(period)"),
    "poisson": ("{name: y, family: poisson}", "epil.csv", "subject", "y ~ trt + base"),
    "gaussian-log-link": ("{name: weight, family: gaussian, link: log}", "pig.csv", "id", "weight ~ week"),
}


@pytest.mark.parametrize("kind", list(RESPONSES))
def test_reml_for_a_non_linear_gaussian_model_exits_2_located_with_a_hint(spec_dir, tmp_path, capsys, kind):
    response, data, level, formula = RESPONSES[kind]
    spec = write_spec(spec_dir, f"""name: reml_{kind.replace('-', '_')}
data: {{path: data/{data}}}
levels:
  - {{name: g, id: {level}}}
responses:
  - {response}
fixed: "{formula}"
random:
  - {{level: g, terms: [1]}}
estimation:
  method: REML
""")
    out = tmp_path / "out"
    assert cli.main(["fit", str(spec), "--out", str(out), "--quiet"]) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    lines = spec.read_text().splitlines()
    estimation_line = next(i for i, text in enumerate(lines, 1) if text.startswith("estimation:"))
    m = re.search(rf"{re.escape(str(spec))}:(\d+):(\d+): estimation\.method: REML is only defined for linear "
                  r"Gaussian models[^;\n]*; write `method: ML`", err)
    assert m, err
    assert estimation_line <= int(m.group(1)) <= estimation_line + 1
    assert "Traceback" not in err and "internal error" not in err
