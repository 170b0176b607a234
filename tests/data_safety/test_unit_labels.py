"""Unit labels of within_parent levels in results.json: readable 'parent/own' paths, no control characters."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from mlmrun.pipeline import prepare
from tests.data_safety.cli_run import run

SPEC = """\
name: labels
data: {path: d.csv}
levels:
  - {name: class, id: class, within_parent: true}
  - {name: school, id: school}
responses:
  - {name: y, family: gaussian}
fixed: "y ~ x"
random:
  - {level: class, terms: [1]}
  - {level: school, terms: [1]}
"""

SCHOOLS = (2, 10, 7)


def _write_data(folder) -> None:
    rng = np.random.default_rng(3)
    rows = ["y,x,school,class"]
    for school in SCHOOLS:
        u = rng.normal()
        for klass in (1, 2, 3):
            v = 0.7 * rng.normal()
            for _ in range(4):
                x = rng.normal()
                rows.append(f"{1 + 0.5 * x + u + v + rng.normal():.5f},{x:.5f},{school},{klass}")
    (folder / "d.csv").write_text("\n".join(rows) + "\n")


def test_within_parent_units_are_labelled_parent_slash_own(folder, capsys):
    _write_data(folder)
    outcome = run(folder, capsys, SPEC, "fit")
    assert outcome.code == 0, outcome.err
    eb = json.loads((folder / "out" / "results.json").read_text())["empirical_bayes"]
    assert eb["school"]["units"] == ["2", "7", "10"]
    assert eb["class"]["units"] == [f"{s}/{c}" for s in (2, 7, 10) for c in (1, 2, 3)]
    assert all(label.isprintable() for label in eb["class"]["units"])


def test_every_row_belongs_to_the_unit_its_label_names(folder, capsys):
    _write_data(folder)
    (folder / "model.yaml").write_text(SPEC)
    model = prepare("model.yaml").model
    frame = pd.read_csv(folder / "d.csv")
    klass, school = model.levels
    named = [klass.labels[c] for c in klass.codes]
    assert named == [f"{s}/{c}" for s, c in zip(frame["school"], frame["class"], strict=True)]
    assert [school.labels[p] for p in klass.parent] == [label.split("/")[0] for label in klass.labels]


def test_three_nested_within_parent_levels_give_a_path(folder, capsys):
    rows = ["y,x,a,b,c"] + [f"{(i * 7) % 5},{i % 3},{i // 8 + 1},{(i // 4) % 2 + 1},{(i // 2) % 2 + 1}"
                            for i in range(16)]
    (folder / "d.csv").write_text("\n".join(rows) + "\n")
    spec = SPEC.replace("  - {name: class, id: class, within_parent: true}\n  - {name: school, id: school}\n",
                        "  - {name: c, id: c, within_parent: true}\n  - {name: b, id: b, within_parent: true}\n"
                        "  - {name: a, id: a}\n").replace("level: class", "level: c").replace("level: school", "level: a")
    (folder / "model.yaml").write_text(spec)
    c, b, a = prepare("model.yaml").model.levels
    assert list(a.labels) == ["1", "2"]
    assert list(b.labels) == ["1/1", "1/2", "2/1", "2/2"]
    assert list(c.labels) == [f"{x}/{y}/{z}" for x in (1, 2) for y in (1, 2) for z in (1, 2)]
    assert c.sizes().tolist() == [2] * 8
