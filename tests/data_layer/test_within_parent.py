"""`within_parent: true`: ids numbered within each parent unit still make distinct units.

The productivity data (years within states within regions) are renumbered by
the test so that state ids restart at 1 within every region (and, with an
added division level, region ids restart within every division). The units
must be the (parent, id) pairs a groupby in the test finds, and the fit must
be the published lme4 fit of the same model, read from tests/reference.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from mlmrun import cli
from tests.conftest import SPECS, write_spec
from tests.reference.compare import assert_close, load_reference

REF = "productivity__nested_ri_ml"


def renumbered_rows() -> tuple[list[str], list[dict[str, str]]]:
    """productivity.csv with division = regions grouped by three, region and state numbered within parents."""
    with (SPECS / "data" / "productivity.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        header, rows = list(reader.fieldnames or []), list(reader)
    region_no: dict[tuple[str, str], int] = {}
    state_no: dict[tuple[str, str], int] = {}
    for r in rows:
        division = str((int(r["region"]) - 1) // 3 + 1)
        region_key = (division, r["region"])
        region_no.setdefault(region_key, 1 + sum(k[0] == division for k in region_no))
        state_key = (r["region"], r["state"])
        state_no.setdefault(state_key, 1 + sum(k[0] == r["region"] for k in state_no))
        r["state_orig"], r["region_orig"] = r["state"], r["region"]
        r["division"], r["region"], r["state"] = division, str(region_no[region_key]), str(state_no[state_key])
    return header + ["state_orig", "region_orig", "division"], rows


def write_rows(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=header)
        w.writeheader()
        w.writerows(rows)


def spec_text(levels: str) -> str:
    return f"""name: productivity_within
data: {{path: data/renumbered.csv}}
levels:
{levels}
responses:
  - {{name: gsp, family: gaussian}}
fixed: "gsp ~ private + emp + hwy + water + other + unemp"
random:
  - {{level: state, terms: [1]}}
  - {{level: region, terms: [1]}}
estimation: {{method: ML}}
"""


TWO_LEVELS = """  - {name: state, id: state, within_parent: true}
  - {name: region, id: region_orig}"""
THREE_LEVELS = """  - {name: state, id: state, within_parent: true}
  - {name: region, id: region, within_parent: true}
  - {name: division, id: division}"""


@pytest.fixture
def renumbered(spec_dir: Path) -> list[dict[str, str]]:
    header, rows = renumbered_rows()
    write_rows(spec_dir / "data" / "renumbered.csv", header, rows)
    return rows


def unit_counts(text: str) -> dict[str, int]:
    return {name: int(n) for name, n in re.findall(r"(\w+) \((\d+) units\)", text)}


def test_renumbering_really_reuses_ids_across_parents(renumbered):
    states_per_id: dict[str, set[str]] = {}
    for r in renumbered:
        states_per_id.setdefault(r["state"], set()).add(r["state_orig"])
    assert max(len(v) for v in states_per_id.values()) > 1
    assert len({r["region"] for r in renumbered}) < len({r["region_orig"] for r in renumbered})


@pytest.mark.parametrize("levels", [TWO_LEVELS, THREE_LEVELS], ids=["state-in-region", "state-in-region-in-division"])
def test_within_parent_units_are_the_parent_id_pairs(spec_dir, renumbered, capsys, levels):
    spec = write_spec(spec_dir, spec_text(levels))
    assert cli.main(["validate", str(spec)]) == 0
    counts = unit_counts(capsys.readouterr().out)
    assert counts["state"] == len({(r["region_orig"], r["state"]) for r in renumbered})
    assert counts["state"] == len({r["state_orig"] for r in renumbered})
    assert counts["region"] == len({r["region_orig"] for r in renumbered})
    if "division" in counts:
        assert counts["division"] == len({r["division"] for r in renumbered})


@pytest.mark.parametrize("levels", [TWO_LEVELS, THREE_LEVELS], ids=["state-in-region", "state-in-region-in-division"])
def test_within_parent_fit_is_the_published_nested_fit(spec_dir, renumbered, tmp_path, levels):
    spec = write_spec(spec_dir, spec_text(levels))
    assert cli.main(["fit", str(spec), "--out", str(tmp_path), "--quiet"]) == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["data"]["n_used"] == load_reference(REF, "results", "nobs")
    groups = {lv["name"]: lv for lv in doc["levels"]}
    assert groups["state"]["n_units"] == load_reference(REF, "results", "ngroups", "state:region")
    assert groups["region"]["n_units"] == load_reference(REF, "results", "ngroups", "region")
    # lme4 on this data; the shipped spec's test holds the same 1e-4 (data-precision offsets, see the file's notes)
    assert_close("loglik", doc["loglik"], load_reference(REF, "results", "loglik"), abs_tol=1e-4)


def test_reused_ids_without_within_parent_are_refused_with_the_hint(spec_dir, renumbered, capsys):
    spec = write_spec(spec_dir, spec_text(TWO_LEVELS.replace(", within_parent: true", "")))
    assert cli.main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "is not nested in level 'region'" in err and "within_parent: true" in err
