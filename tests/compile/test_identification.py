"""Obvious identification failures and structural-model errors are caught before fitting."""

from __future__ import annotations

import pytest

from mlmrun.errors import IdentificationError, SpecError
from mlmrun.pipeline import prepare
from tests.conftest import write_spec

BASE = """
name: lsat
data:
  path: data/lsat.csv
  stack: {columns: [i1, i2, i3, i4, i5], item: item, value: y}
levels:
  - {name: person, id: id}
responses:
  - {name: y, family: binomial}
fixed: "y ~ 0 + C(item)"
"""


def test_factor_without_fixed_scale_is_rejected(spec_dir):
    path = write_spec(spec_dir, BASE + """
latent:
  - {name: ability, level: person, loadings: {by: item}}
""")
    with pytest.raises(IdentificationError, match="no fixed scale"):
        prepare(path)


def test_factor_scaled_by_variance_is_accepted(spec_dir):
    path = write_spec(spec_dir, BASE + """
latent:
  - {name: ability, level: person, loadings: {by: item}, variance: 1}
""")
    model = prepare(path).model
    pt = model.partable.frame
    assert (pt.loc[pt.block == "loading", "free"] > 0).sum() == 5
    assert pt.loc[pt.name == "sd(ability)@person", "free"].item() == 0


def test_all_loadings_fixed_at_zero_is_rejected(spec_dir):
    path = write_spec(spec_dir, BASE + """
latent:
  - {name: ability, level: person, loadings: {by: item, fix: {i1: 0, i2: 0, i3: 0, i4: 0, i5: 0}}}
""")
    with pytest.raises(IdentificationError, match="fixed at zero"):
        prepare(path)


def test_b_cycle_is_a_spec_error_naming_the_cycle(spec_dir):
    path = write_spec(spec_dir, BASE + """
latent:
  - {name: a, level: person, loadings: {by: item, fix: {i1: 1}}}
  - {name: b, level: person, loadings: {by: item, fix: {i2: 1}}}
structural:
  B: {a: {b: free}, b: {a: free}}
""")
    with pytest.raises(SpecError) as err:
        prepare(path)
    text = "\n".join(err.value.problems)
    assert "cycle" in text and "a -> b -> a" in text.replace("b -> a -> b", "a -> b -> a")


def test_latent_without_loadings_or_role_is_rejected(spec_dir):
    path = write_spec(spec_dir, BASE + """
latent:
  - {name: ability, level: person, loadings: {by: item, fix: {i1: 1}}}
  - {name: orphan, level: person}
""")
    with pytest.raises(IdentificationError, match="no loadings and no role"):
        prepare(path)


def test_equal_loadings_share_one_free_parameter(spec_dir):
    path = write_spec(spec_dir, BASE + """
latent:
  - {name: ability, level: person, loadings: {by: item, fix: {i1: 1}, equal: [[i2, i3, i4]]}}
""")
    pt = prepare(path).model.partable.frame.set_index("name")
    free = {pt.at[f"loading(ability->i{k})", "free"] for k in (2, 3, 4)}
    assert len(free) == 1 and free != {0}
    assert pt.at["loading(ability->i5)", "free"] not in free
