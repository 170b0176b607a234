"""ParTable: pack/unpack round trips, equality groups, ordered thresholds and the Jacobian."""

from __future__ import annotations

import numpy as np

from mlmrun.compile.partable import ParTableBuilder


def _table():
    b = ParTableBuilder()
    b.add("beta", "fixed", value=0.5)
    b.add("sd(Residual)", "residual", value=2.0, transform="log")
    b.add("sd(a)@g", "sd", value=1.0, lower=0)
    b.add("sd(b)@g", "sd", value=1.0, lower=0, equal_to="sd(a)@g")
    b.add("fixedload", "loading", value=1.0, free=False)
    b.add("cut1", "threshold", value=-1.0)
    b.add("cut2", "threshold", value=0.5, transform="ordered")
    b.add("cut3", "threshold", value=2.0, transform="ordered")
    return b.build()


def test_pack_unpack_round_trip():
    pt = _table()
    values = pt.start_values
    np.testing.assert_allclose(pt.unpack(pt.pack(values)), values)
    rng = np.random.default_rng(1)
    free = rng.normal(size=pt.n_free)
    np.testing.assert_allclose(pt.pack(pt.unpack(free)), free)


def test_equal_rows_stay_equal_and_thresholds_stay_ordered():
    pt = _table()
    rng = np.random.default_rng(2)
    for _ in range(20):
        v = pt.unpack(rng.normal(scale=3, size=pt.n_free))
        assert v[pt.index("sd(a)@g")] == v[pt.index("sd(b)@g")]
        cuts = v[[pt.index("cut1"), pt.index("cut2"), pt.index("cut3")]]
        assert np.all(np.diff(cuts) > 0)
        assert v[pt.index("fixedload")] == 1.0


def test_jacobian_matches_central_differences():
    pt = _table()
    free = np.random.default_rng(3).normal(size=pt.n_free)
    J = pt.jacobian(free)
    h = 1e-6
    num = np.stack([(pt.unpack(free + h * e) - pt.unpack(free - h * e)) / (2 * h) for e in np.eye(pt.n_free)], axis=1)
    np.testing.assert_allclose(J, num, atol=1e-7)
    assert not np.allclose(J + 1e-3, num, atol=1e-7)
