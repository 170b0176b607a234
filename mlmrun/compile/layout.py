"""Index layouts derived once per compiled model, for code that runs at every likelihood evaluation.

A fit evaluates the likelihood hundreds of times on tiny arrays, where
rebuilding lists of members, position maps and triangle indices costs more
than the arithmetic. These helpers build them once: `tril` per size, and
`level_layout` per model (kept on the model object itself and rebuilt if
the model's latent variables or blocks are not the ones it was built from).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mlmrun.compile.model import CompiledModel


@lru_cache(maxsize=256)
def tril(k: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """np.tril_indices(k, offset), cached (read-only arrays)."""
    rows, cols = np.tril_indices(k, offset)
    rows.flags.writeable = False
    cols.flags.writeable = False
    return rows, cols


@dataclass(frozen=True)
class BlockLayout:
    """Where one covariance block sits in its level's L."""

    pos: np.ndarray
    """Positions of the block's members within CompiledModel.latent_at(level)."""
    rows: np.ndarray
    """Partable rows of the block's SDs then correlations."""
    diagonal: bool
    """True when the block is a single member (L is its SD)."""


@dataclass(frozen=True)
class LevelLayout:
    """Members of every level with latent variables, and each block's place in its level."""

    members: dict[int, list[int]]
    """Level index -> latent variables at that level (CompiledModel.latent_at order)."""
    blocks: tuple[BlockLayout, ...]
    """One per CompiledModel.blocks, same order."""


def _build(model: CompiledModel) -> LevelLayout:
    members = {lvl: model.latent_at(lvl) for lvl in sorted({lat.level for lat in model.latent})}
    blocks = []
    for block in model.blocks:
        pos = {m: p for p, m in enumerate(members[block.level])}
        blocks.append(BlockLayout(np.array([pos[m] for m in block.members], dtype=int),
                                  np.concatenate([block.sd_rows, block.corr_rows]).astype(int),
                                  len(block.members) == 1))
    return LevelLayout(members, tuple(blocks))


def level_layout(model: CompiledModel) -> LevelLayout:
    """The model's LevelLayout, built on first use and kept on the model."""
    cached = model.__dict__.get("_level_layout")
    if cached is not None and cached[0] is model.latent and cached[1] is model.blocks:
        return cached[2]
    layout = _build(model)
    object.__setattr__(model, "_level_layout", (model.latent, model.blocks, layout))
    return layout
