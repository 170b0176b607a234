"""Discrete latent variables: NPMLE mass points (gllamm's ip(f)) and latent classes, compiled to one block per level.

A level whose latent variables are discrete carries K points e_1..e_K (vectors
over its d discrete variables) with probabilities p_1..p_K (softmax of
logits, the first fixed at 0). A row's linear predictor gains sum_j z_j(i) e_kj
for its unit's point k, with z_j = Z_j @ lambda_j as for any latent variable.

- `distribution: {discrete: K}` (NPMLE): locations enter as raw rows
  `loc{k}(name)@level`, the first point's fixed at 0, and the masses are
  centred, e_k = v_k - sum_l p_l v_l, so the mean of the discrete
  distribution is 0 and the fixed part keeps its constant (gllamm's
  identification; 2K-2 free parameters per dimension, as K free locations and
  K-1 probabilities with the constant dropped). Masses, probabilities and the
  implied variance are derived rows (results.py).
- `classes: K` (latent class): each class has its own coefficients on the
  loading design (`by: item` gives class-specific item intercepts), all free,
  so the fixed part must not span them; `structural.Gamma` on the class
  variable makes the class probabilities a multinomial logit in unit-level
  covariates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlmrun.compile.partable import ParTableBuilder
from mlmrun.data.levels import LevelIndex
from mlmrun.errors import KEY, DataError, IdentificationError, Loc, SpecError, dotted
from mlmrun.spec.model import Spec


@dataclass(frozen=True)
class DiscreteLevel:
    """The discrete latent distribution of one level (parameter-free description)."""

    level: int
    """Index into CompiledModel.levels."""
    kind: str
    """'npmle' (mean-zero mass points) or 'classes' (latent classes)."""
    tag: str
    """Name used in parameter names: 'mass' for NPMLE, the class variable's name for classes."""
    names: tuple[str, ...]
    """One per dimension: latent variable names (NPMLE) or loading labels (classes)."""
    K: int
    """Number of points fitted first (1 for `discrete: auto`, which grows it)."""
    auto: bool
    Z: tuple[np.ndarray, ...]
    """Per dimension, its loading design (n, K_j)."""
    loading_rows: tuple[np.ndarray, ...]
    """Per dimension, partable rows of its loadings; empty means the design's single column enters with weight 1."""
    loc_rows: np.ndarray
    """(K, d) partable rows of the raw locations."""
    logit_rows: np.ndarray
    """(K-1,) partable rows of the logits of points 2..K (point 1 is the reference)."""
    gamma_rows: np.ndarray
    """(K-1, n_w) partable rows of the multinomial-logit coefficients of points 2..K."""
    W: np.ndarray
    """(n_units, n_w) unit-level covariates of the class probabilities."""
    w_names: tuple[str, ...]
    starts: int
    seed: int
    where: Loc
    """Spec key of the distribution (for messages)."""
    scale_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    """(K-1,) partable rows of the class-specific log shifts of the family scale (`class_scale`), classes 2..K."""

    @property
    def centered(self) -> bool:
        return self.kind == "npmle"

    @property
    def dim(self) -> int:
        return len(self.names)


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax (stable)."""
    a = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(a)
    return e / e.sum(axis=-1, keepdims=True)


def point_logits(dl: DiscreteLevel, values: np.ndarray, W: np.ndarray | None = None) -> np.ndarray:
    """(n_units, K) logits of the points for units with covariates W (default: the level's); (1, K) without."""
    a = np.concatenate([[0.0], values[dl.logit_rows]])
    if not dl.w_names:
        return a[None, :]
    G = np.vstack([np.zeros(len(dl.w_names)), values[dl.gamma_rows]])
    return a[None, :] + (dl.W if W is None else W) @ G.T


def masses(dl: DiscreteLevel, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(locations (K, d), probabilities (K,) averaged over units) at partable values; NPMLE masses are centred."""
    p = softmax_rows(point_logits(dl, values)).mean(axis=0)
    v = values[dl.loc_rows]
    if dl.centered:
        v = v - p @ v
    return v, p


def derivations(dl: DiscreteLevel, level_name: str) -> list[tuple[str, str, list[int], object]]:
    """Derived rows (name, block, source rows, values -> value): masses, probabilities, implied variances."""
    src = [int(r) for r in np.concatenate([dl.loc_rows.reshape(-1), dl.logit_rows, dl.gamma_rows.reshape(-1)])]
    out: list = []
    if dl.kind == "npmle":
        for k in range(dl.K):
            for j, name in enumerate(dl.names):
                out.append((f"mass{k + 1}({name})@{level_name}", "mass", src,
                            lambda v, k=k, j=j: float(masses(dl, v)[0][k, j])))
    for k in range(dl.K):
        label = f"prob{k + 1}@{level_name}" if dl.kind == "npmle" else f"prob{k + 1}({dl.tag})@{level_name}"
        out.append((label, "probability", src, lambda v, k=k: float(masses(dl, v)[1][k])))
    if dl.kind == "npmle":
        for j, name in enumerate(dl.names):
            def var(v: np.ndarray, j: int = j) -> float:
                e, p = masses(dl, v)
                return float(p @ (e[:, j] - p @ e[:, j]) ** 2)
            out.append((f"var({name})@{level_name}", "variance", src, var))
    return out


def is_discrete(lat) -> bool:
    """True for a `latent:` entry or `random:` block whose distribution is discrete (mass points or classes)."""
    dist = getattr(lat, "distribution", None)
    return getattr(lat, "classes", None) is not None or (dist is not None and dist.discrete is not None)


@dataclass
class _Pending:
    level: int
    kind: str
    tag: str
    K: int | str
    names: list[str]
    Z: list[np.ndarray]
    rows: list[np.ndarray]
    where: Loc
    starts: int
    seed: int
    gamma_from: str | None = None
    class_scale: bool = False


def _unit_covariates(frame: pd.DataFrame, W: np.ndarray, names: tuple[str, ...], lv: LevelIndex,
                     where: Loc) -> np.ndarray:
    """Unit-level covariates: a row-level column must be constant within each unit of the class level."""
    out = np.zeros((lv.n_units, W.shape[1]))
    out[lv.codes] = W
    spread = np.abs(W - out[lv.codes]).max(axis=0, initial=0.0)
    if W.shape[1] and spread.max() > 1e-12:
        bad = names[int(np.argmax(spread))]
        raise DataError.at(where + (bad, KEY), f"covariate '{bad}' of the class probabilities varies within units of "
                                                f"level '{lv.name}'; use a covariate constant within each unit (e.g. its unit mean)")
    return out


def compile_discrete(spec: Spec, frame: pd.DataFrame, levels: list[LevelIndex], pt: ParTableBuilder,
                     X: np.ndarray, W_of: dict[str, tuple[np.ndarray, tuple[str, ...]]],
                     loadings, continuous: list[tuple[str, int]]) -> tuple[DiscreteLevel, ...]:
    """Compile the discrete `latent:` entries and `random:` blocks, one DiscreteLevel per level.

    `W_of[name]` gives a class variable's Gamma covariates (row-level, from compile/latent.py);
    `loadings` is compile/latent.py's loading builder (Z, partable rows, labels); `continuous` gives the
    normal latent variables (name, level index): they may only sit below the discrete level.
    """
    level_pos = {lv.name: i for i, lv in enumerate(levels)}
    n = len(frame)
    pending: dict[int, _Pending] = {}

    def add(level_name: str, kind: str, tag: str, K: int | str, names: list[str], Z: list, rows: list, where: Loc,
            dist) -> None:
        lvl = level_pos[level_name]
        lv = levels[lvl]
        if lv.crossed:
            raise SpecError.at(where, f"level '{level_name}' is crossed; discrete latent variables (mass points or "
                                      "classes) need a nested level: make the design nested or use a normal latent variable")
        starts, seed = (dist.starts, dist.seed) if dist is not None else (5, 1)
        if lvl in pending:
            have = pending[lvl]
            if kind == "classes" or have.kind == "classes" or have.K != K:
                raise SpecError.at(where, f"level '{level_name}' already has a discrete distribution with "
                                          f"{have.K} points ({dotted(have.where)}); discrete latent variables at "
                                          "one level share their points: give them the same `discrete:` (one class variable per level)")
            have.names += names
            have.Z += Z
            have.rows += rows
            return
        pending[lvl] = _Pending(lvl, kind, tag, K, names, Z, rows, where, starts, seed)

    for i, block in enumerate(spec.random):
        if not is_discrete(block):
            continue
        names = ["_cons" if str(t) == "1" else str(t) for t in block.terms]
        Z = [np.ones((n, 1)) if str(t) == "1" else frame[str(t)].to_numpy(dtype=float)[:, None] for t in block.terms]
        add(block.level, "npmle", "mass", block.distribution.discrete, names, Z,
            [np.zeros(0, dtype=int) for _ in names], ("random", i, "distribution", "discrete"), block.distribution)
    for i, lat in enumerate(spec.latent):
        if lat.class_scale and lat.classes is None:
            raise SpecError.at(("latent", i, "class_scale"), f"'{lat.name}' is not a latent class variable; "
                                                             "`class_scale` needs `classes: K`: drop it or add `classes`")
        if not is_discrete(lat):
            continue
        if lat.classes is not None:
            if lat.loadings is None:
                raise SpecError.at(("latent", i, "classes"), f"latent class variable '{lat.name}' has no `loadings`; "
                                                             "give the class-specific terms, e.g. `loadings: {by: item}` "
                                                             "(class-specific item intercepts) or `loadings: {on: [1, x]}`")
            if lat.loadings.fix or lat.loadings.equal or lat.loadings.start:
                raise SpecError.at(("latent", i, "loadings"), f"latent class variable '{lat.name}': its loadings are "
                                                              "class-specific coefficients, all free; drop `fix`, `equal` and `start`")
            Zall, _, labels = loadings(i, lat, frame, ParTableBuilder())
            add(lat.level, "classes", lat.name, lat.classes, list(labels), [Zall[:, [j]] for j in range(len(labels))],
                [np.zeros(0, dtype=int) for _ in labels], ("latent", i, "classes"), lat.distribution)
            pending[level_pos[lat.level]].gamma_from = lat.name
            pending[level_pos[lat.level]].class_scale = lat.class_scale
            if lat.class_scale and not any(r["block"] in ("residual", "shape") for r in pt.rows):
                raise SpecError.at(("latent", i, "class_scale"), f"latent class variable '{lat.name}': "
                                                                 "`class_scale` makes a gaussian residual SD or gamma "
                                                                 "shape class-specific, and no response has one; "
                                                                 "drop `class_scale`")
            continue
        if lat.loadings is None:
            raise IdentificationError.at(("latent", i), f"discrete latent '{lat.name}' has no loadings; give it "
                                                        "loadings (e.g. `loadings: {on: [1]}` for an intercept)")
        Zm, rows, _ = loadings(i, lat, frame, pt)
        if not any(not pt.rows[r]["free"] and pt.rows[r]["value"] != 0 for r in rows):
            raise IdentificationError.at(("latent", i, "loadings"), f"discrete latent '{lat.name}' has no fixed scale: "
                                                                    "its mass points are free, so fix one loading "
                                                                    "(loadings: {fix: {ITEM: 1}})")
        add(lat.level, "npmle", "mass", lat.distribution.discrete, [lat.name], [Zm], [np.array(rows, dtype=int)],
            ("latent", i, "distribution", "discrete"), lat.distribution)

    if pending and spec.estimation.method == "REML":
        raise SpecError.at(("estimation", "method"), "REML is defined for normal latent variables only; a discrete "
                                                     "latent distribution is fitted by ML: write `method: ML`")
    ordered = sorted(pending.values(), key=lambda q: q.level)
    if len(ordered) > 1 and any(q.K == "auto" for q in ordered):
        auto_at = next(q for q in ordered if q.K == "auto")
        raise SpecError.at(auto_at.where, "`discrete: auto` is not supported with discrete latent variables at two "
                                          "levels (the Gateaux search adds points at one level); give the number "
                                          "of points at every discrete level (compare fits by BIC)")
    same = [name for name, lvl in continuous if lvl in pending]
    if same:
        at_level = next(pending[lvl] for name, lvl in continuous if lvl in pending)
        raise SpecError.at(at_level.where, "a discrete latent distribution together with normal latent variables "
                                           f"at its own level ({', '.join(same)}) is not supported yet; make them "
                                           "all discrete (one set of points) or move the normal ones to another level")
    above = [name for name, lvl in continuous if ordered and lvl > ordered[0].level]
    nested = bool(above) or len(ordered) > 1  # the points become levels of the nested quadrature
    scaled = next((q for q in ordered if q.class_scale), None)
    if scaled is not None and (continuous or len(ordered) > 1):
        raise SpecError.at(scaled.where, f"`class_scale` of '{scaled.tag}' is only supported without latent "
                                         "variables at other levels; drop `class_scale` or the other latent variables")
    if nested and continuous:
        integ = spec.estimation.integration
        if integ.method == "laplace":
            raise SpecError.at(("estimation", "integration", "method"), "normal latent variables around a discrete "
                                                                        "level under another latent level are "
                                                                        "integrated with nodes placed by posterior "
                                                                        "moments, by quadrature only: write "
                                                                        "`method: adaptive`")
    higher = above + [name for q in ordered[1:] for name in q.names]
    out = []
    for lvl, pd_ in sorted(pending.items()):
        lv = levels[lvl]
        auto = pd_.K == "auto"
        K = 1 if auto else int(pd_.K)
        if K > lv.n_units:
            raise SpecError.at(pd_.where, f"{K} points but level '{lv.name}' has only {lv.n_units} units; "
                                          f"use at most {lv.n_units} points (or `discrete: auto`)")
        if pd_.kind == "classes":
            Zc = np.concatenate(pd_.Z, axis=1)
            if X.shape[1] and np.linalg.matrix_rank(np.column_stack([X, Zc])) < X.shape[1] + np.linalg.matrix_rank(Zc):
                raise IdentificationError.at(pd_.where, f"the class-specific terms of '{pd_.tag}' {pd_.names} overlap "
                                                        "the fixed part, so class and fixed coefficients are not "
                                                        "identified together; drop those terms from `fixed` "
                                                        "(e.g. 'y ~ 0' with class-specific item intercepts)")
        Wu, w_names = np.zeros((lv.n_units, 0)), ()
        if pd_.gamma_from is not None and pd_.gamma_from in W_of:
            Wr, w_names = W_of[pd_.gamma_from]
            Wu = _unit_covariates(frame, Wr, w_names, lv, ("structural", "Gamma", pd_.gamma_from))
        if w_names and nested:
            raise SpecError.at(("structural", "Gamma", pd_.gamma_from), f"covariates of the class probabilities of "
                                                                         f"'{pd_.tag}' are not supported with latent "
                                                                         "variables at another level above a discrete "
                                                                         f"one ({', '.join(higher)}); drop the Gamma "
                                                                         "entry or make the model's other latent "
                                                                         "variables sit below the discrete level")
        loc_rows, logit_rows, gamma_rows = point_rows(pt, pd_.kind, pd_.tag, pd_.names, lv.name, K, w_names)
        scale_rows = class_scale_rows(pt, pd_.tag, lv.name, K) if pd_.class_scale else np.zeros(0, dtype=int)
        out.append(DiscreteLevel(lvl, pd_.kind, pd_.tag, tuple(pd_.names), K, auto, tuple(pd_.Z), tuple(pd_.rows),
                                 loc_rows, logit_rows, gamma_rows, Wu, tuple(w_names), pd_.starts, pd_.seed, pd_.where,
                                 scale_rows))
    return tuple(out)


def point_rows(pt: ParTableBuilder, kind: str, tag: str, names: list[str] | tuple[str, ...], level_name: str, K: int,
               w_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Partable rows of K points: raw locations (NPMLE: point 1 fixed at 0), logits of points 2..K, Gamma rows."""
    loc = [[pt.add(f"loc{k + 1}({nm})@{level_name}" if kind == "npmle" else f"{tag}{k + 1}({nm})@{level_name}",
                   "mass", value=0.0, free=not (kind == "npmle" and k == 0), lhs=nm, op="@", rhs=str(k + 1),
                   level=level_name, origin="discrete") for nm in names] for k in range(K)]
    logit = [pt.add(f"logit{k + 1}({tag})@{level_name}", "logit", value=0.0, lhs=tag, op="logit", rhs=str(k + 1),
                    level=level_name, origin="discrete") for k in range(1, K)]
    gamma = [[pt.add(f"Gamma({tag}{k + 1}<-{w})", "class_gamma", value=0.0, lhs=f"{tag}{k + 1}", op="~", rhs=w,
                     level=level_name, origin="discrete") for w in w_names] for k in range(1, K)]
    return (np.array(loc, dtype=int).reshape(K, len(names)), np.array(logit, dtype=int),
            np.array(gamma, dtype=int).reshape(K - 1, len(w_names)))


def class_scale_rows(pt: ParTableBuilder, tag: str, level_name: str, K: int) -> np.ndarray:
    """Partable rows of the log shifts of the family scale of classes 2..K (class 1's is 0)."""
    return np.array([pt.add(f"lnscale{k + 1}({tag})@{level_name}", "mass", value=0.0, lhs=tag, op="lnscale",
                            rhs=str(k + 1), level=level_name, origin="discrete") for k in range(1, K)], dtype=int)


def discrete_rows(dl: DiscreteLevel) -> np.ndarray:
    """Every partable row of a discrete level's points (locations, logits, Gamma, class scale shifts)."""
    return np.concatenate([dl.loc_rows.reshape(-1), dl.logit_rows, dl.gamma_rows.reshape(-1),
                           dl.scale_rows]).astype(int)


def resize(model, K: int):
    """The same model with K points at its discrete level (the points' rows are the partable's last rows).

    Rows before them keep their free numbers (and so their equality constraints); the new rows start at 0.
    """
    import dataclasses

    from mlmrun.compile.partable import COLUMNS, ParTable

    dl = model.discrete[0]
    frame = model.partable.frame
    first = int(discrete_rows(dl).min(initial=len(frame)))
    head = frame.iloc[:first]
    pt = ParTableBuilder(rows=head.to_dict("records"))
    level_name = model.levels[dl.level].name
    loc, logit, gamma = point_rows(pt, dl.kind, dl.tag, dl.names, level_name, K, dl.w_names)
    scale = class_scale_rows(pt, dl.tag, level_name, K) if len(dl.scale_rows) else dl.scale_rows
    new = pd.DataFrame(pt.rows, columns=COLUMNS)
    free = new["free"].to_numpy(dtype=int).copy()
    tail = np.arange(first, len(new))
    base = int(head["free"].max()) if len(head) else 0
    is_free = free[tail] > 0
    free[tail[is_free]] = base + np.arange(1, int(is_free.sum()) + 1)
    new["free"] = free
    new_dl = dataclasses.replace(dl, K=K, loc_rows=loc, logit_rows=logit, gamma_rows=gamma, scale_rows=scale)
    return dataclasses.replace(model, partable=ParTable(new), discrete=(new_dl,) + tuple(model.discrete[1:]))

