"""The inner join on eliminated units of the blocked factorisation's symbolic step (sparse/blocks.py).

Checked against the join written here as the brute-force double loop over
both key lists, which yields every matching (i, j) with i, then j, ascending.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlmrun.likelihood.sparse.blocks import BlockStructure


def _brute_join(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(i, j) for i, a in enumerate(left) for j, b in enumerate(right) if a == b]
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    i, j = zip(*pairs, strict=True)
    return np.array(i, np.int64), np.array(j, np.int64)


@pytest.mark.parametrize("seed", range(12))
def test_join_gives_every_matching_pair_in_left_then_right_order(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_keys = int(rng.integers(1, 15))
    left = rng.integers(0, n_keys, int(rng.integers(0, 60))).astype(np.int64)
    right = rng.integers(0, n_keys, int(rng.integers(0, 60))).astype(np.int64)
    i, j = BlockStructure._join(left, right)
    bi, bj = _brute_join(left, right)
    assert np.array_equal(i, bi) and np.array_equal(j, bj)
    assert np.all(left[i] == right[j])


def test_join_of_disjoint_keys_is_empty() -> None:
    i, j = BlockStructure._join(np.array([0, 1, 2], np.int64), np.array([5, 6], np.int64))
    assert len(i) == 0 and len(j) == 0 and i.dtype == np.int64 and j.dtype == np.int64
