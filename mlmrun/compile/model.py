"""CompiledModel: everything the likelihood needs that does not depend on the parameters.

Notation (Rabe-Hesketh, Skrondal & Pickles 2004): for row i,
    nu_i = x_i' beta + offset_i + sum_m eta_m(i) * z_m(i),   z_m(i) = Z_m[i] @ lambda_m
    eta = B eta + Gamma w + zeta,  zeta_l = L_l u_l,  u_l ~ N(0, I)  at each level l.
Latent variables are ordered by level (lowest first); `u` are the standardised
disturbances the likelihood integrates over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mlmrun.compile.choice import ChoiceDesign
from mlmrun.compile.family_params import FamilyParams
from mlmrun.compile.ordinal_ext import OrdinalDesign
from mlmrun.compile.partable import ParTable
from mlmrun.data.levels import LevelIndex
from mlmrun.families import Family
from mlmrun.spec.model import Spec

if TYPE_CHECKING:
    from mlmrun.compile.residuals import ResidualStructure
    from mlmrun.compile.weights import Weighting


@dataclass(frozen=True)
class Equation:
    """A response equation: a family/link over a subset of rows."""

    name: str
    family: Family
    rows: np.ndarray
    scale_rows: np.ndarray | None
    """Per row of the equation, the partable row of its residual SD (gaussian) or shape (gamma)."""
    threshold_rows: np.ndarray | None
    """Ordinal: partable rows of the K-1 thresholds."""
    categories: tuple | None
    """Ordinal: category labels in order (y holds codes 0..K-1)."""
    hetero: np.ndarray | None = None
    """Gaussian `variance:` design S (rows of the equation x K): residual SD = sd(Residual) * exp(S @ alpha)."""
    hetero_rows: np.ndarray | None = None
    """Partable rows of alpha (block 'hetero', one per column of `hetero`)."""
    ordinal: OrdinalDesign | None = None
    """Ordinal with `thresholds:`/`scale:`: per-row threshold shifts and latent scale (compile/ordinal_ext.py)."""
    choice: ChoiceDesign | None = None
    """Multinomial and ranking: the choice sets (compile/choice.py)."""
    family_params: FamilyParams | None = None
    """Count and censored families: their per-row parameter columns (compile/family_params.py)."""


@dataclass(frozen=True)
class LatentVar:
    """A latent variable: its level and its loading design (z_m = Z @ lambda)."""

    name: str
    level: int
    """Index into CompiledModel.levels."""
    Z: np.ndarray
    """Loading design, shape (n, K); K = 0 for a variable acting only through B."""
    loading_rows: np.ndarray
    """Partable rows of the K loadings."""
    loading_labels: tuple[str, ...]
    origin: str
    """'latent' or 'random' (shorthand)."""


@dataclass(frozen=True)
class CovBlock:
    """A block of the covariance matrix Psi at one level: Psi_block = D R D."""

    level: int
    members: tuple[int, ...]
    """Latent variable indices (into CompiledModel.latent)."""
    kind: str
    """independent | identity | exchangeable | unstructured."""
    sd_rows: np.ndarray
    """Partable rows of the member SDs."""
    corr_rows: np.ndarray
    """Partable rows of the correlations, lower triangle by rows ((1,0), (2,0), (2,1), ...); empty if none."""


@dataclass(frozen=True)
class CompiledModel:
    """Spec + data compiled to arrays and one parameter table (frozen; no parameter-dependent state)."""

    spec: Spec
    y: np.ndarray
    X: np.ndarray
    x_names: tuple[str, ...]
    offset: np.ndarray
    trials: np.ndarray | None
    equations: tuple[Equation, ...]
    eq_of_row: np.ndarray
    levels: tuple[LevelIndex, ...]
    latent: tuple[LatentVar, ...]
    blocks: tuple[CovBlock, ...]
    B_entries: tuple[tuple[int, int, int], ...]
    """(outcome m, predictor m', partable row) for each B element."""
    W: np.ndarray
    """Covariates of the structural model, shape (n, n_w)."""
    w_names: tuple[str, ...]
    Gamma_entries: tuple[tuple[int, int, int], ...]
    """(latent m, W column, partable row) for each Gamma element."""
    beta_rows: np.ndarray
    partable: ParTable
    n_rows_read: int
    n_dropped_missing: int
    data_sha256: str
    weighting: Weighting | None = None
    """Row and level weights and the vce (compile/weights.py); None: unweighted, observed-information SEs."""
    discrete: tuple = ()
    """compile.discrete.DiscreteLevel per level whose latent variables are discrete (mass points or classes)."""
    item_codes: np.ndarray | None = None
    """Item of every row (codes into item_labels; mlmrun.compile.items), None when no column names items."""
    item_labels: tuple[str, ...] = ()
    rescov: tuple[tuple[int, int, int], ...] = ()
    """Residual covariances: (item a, item b, partable row)."""
    residual: ResidualStructure | None = None
    """A gaussian equation's residual covariance structure (compile/residuals.py), None for independent residuals."""

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def is_linear_gaussian(self) -> bool:
        """True when every equation is gaussian with identity link (exact likelihood applies)."""
        return all(eq.family.name == "gaussian" and eq.family.link == "identity" for eq in self.equations)

    def latent_at(self, level: int) -> list[int]:
        """Latent variable indices at a level, in order."""
        return [m for m, lat in enumerate(self.latent) if lat.level == level]

    @property
    def nested_levels(self) -> list[int]:
        """Indices of the nested (non-crossed) levels that carry latent variables, lowest first."""
        used = {lat.level for lat in self.latent}
        return [i for i, lv in enumerate(self.levels) if not lv.crossed and i in used]
