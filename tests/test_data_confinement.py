"""A spec may only read files inside its own folder unless the user opts out (untrusted specs in CI)."""

from __future__ import annotations

import pytest

from mlmrun.cli import main
from mlmrun.errors import DataError, SpecError
from mlmrun.pipeline import prepare
from tests.conftest import SPECS, write_spec

BODY = """
name: pig
data: {path: PATH}
levels:
  - {name: pig, id: id}
responses:
  - {name: weight, family: gaussian}
fixed: "weight ~ week"
random:
  - {level: pig, terms: [1]}
"""


@pytest.mark.parametrize("path", [str(SPECS / "data" / "pig.csv"), "../outside/pig.csv"])
def test_data_outside_the_spec_folder_is_refused(tmp_path, path):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "pig.csv").write_text((SPECS / "data" / "pig.csv").read_text())
    folder = tmp_path / "specs"
    folder.mkdir()
    spec = write_spec(folder, BODY.replace("PATH", path))
    with pytest.raises(DataError, match="outside the spec's folder"):
        prepare(spec)
    assert prepare(spec, allow_outside_data=True).model.n == 432
    assert main(["validate", str(spec)]) == 2
    assert main(["validate", str(spec), "--allow-outside-data"]) == 0


def test_start_from_outside_the_spec_folder_is_refused(spec_dir):
    spec = write_spec(spec_dir, BODY.replace("PATH", "data/pig.csv") + "estimation: {start_from: /etc/passwd}\n")
    with pytest.raises(SpecError, match="outside the spec's folder"):
        prepare(spec)
