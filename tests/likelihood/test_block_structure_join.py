"""The inner join of the blocked factorisation's symbolic step (likelihood/sparse/blocks.py) against brute force.

BlockStructure pairs every two neighbours of an eliminated unit through
`_join`; it must return every (i, j) with equal keys, in left order and,
within one left row, in right order (the order the fill and update
positions are laid out in).
"""

from __future__ import annotations

import numpy as np

from mlmrun.likelihood.sparse.blocks import BlockStructure


def test_join_returns_every_matching_pair_in_left_then_right_order():
    rng = np.random.default_rng(11)
    for _ in range(100):
        left = rng.integers(0, 6, rng.integers(0, 25))
        right = rng.integers(0, 6, rng.integers(0, 25))
        i, j = BlockStructure._join(left, right)
        expected = [(a, b) for a in range(len(left)) for b in range(len(right)) if left[a] == right[b]]
        assert list(zip(i.tolist(), j.tolist(), strict=True)) == expected
        assert i.dtype == np.int64 and j.dtype == np.int64
