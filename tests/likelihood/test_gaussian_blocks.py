"""Block elimination of M = I + A'WA against dense numpy on random nested and crossed designs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import mlmrun.likelihood.sparse.blocks as sb
from mlmrun.likelihood.sparse.blocks import BlockStructure, BlockSystem, factorize, schur
from mlmrun.likelihood.sparse.selected_inverse import InversePlan, selected_inverse


def _codes(x: np.ndarray) -> np.ndarray:
    return np.unique(x, return_inverse=True)[1].ravel()


def random_system(rng: np.random.Generator, levels: list[np.ndarray], ks: list[int], c: int = 3):
    """Blocks of a random weighted design with one k-vector per row and level, plus the dense equivalents."""
    n = len(levels[0])
    U = [int(codes.max()) + 1 for codes in levels]
    coef = [rng.normal(size=(n, k)) for k in ks]
    w = rng.uniform(0.5, 2.0, size=n)
    F = rng.normal(size=(n, c))
    parts = []
    for codes, a, k, u in zip(levels, coef, ks, U, strict=True):
        rows = np.repeat(np.arange(n), k)
        cols = (codes[:, None] * k + np.arange(k)).ravel()
        parts.append(sp.csr_matrix((a.ravel(), (rows, cols)), shape=(n, u * k)))
    A = sp.hstack(parts).toarray()
    pairs, off = {}, {}
    for a in range(len(levels)):
        for b in range(a + 1, len(levels)):
            keys, inverse = np.unique(levels[a] * U[b] + levels[b], return_inverse=True)
            pairs[(a, b)] = divmod(keys, U[b])
            vals = np.zeros((len(keys), ks[a], ks[b]))
            np.add.at(vals, inverse.ravel(), w[:, None, None] * coef[a][:, :, None] * coef[b][:, None, :])
            off[(a, b)] = vals
    diag, rhs = [], []
    for codes, a, k, u in zip(levels, coef, ks, U, strict=True):
        d = np.zeros((u, k, k))
        np.add.at(d, codes, w[:, None, None] * a[:, :, None] * a[:, None, :])
        r = np.zeros((u, k, c))
        np.add.at(r, codes, w[:, None, None] * a[:, :, None] * F[:, None, :])
        diag.append(d)
        rhs.append(r)
    system = BlockSystem(diag, off, rhs, F.T @ (w[:, None] * F))
    M = np.eye(A.shape[1]) + A.T @ (w[:, None] * A)
    R = A.T @ (w[:, None] * F)
    return BlockStructure(U, ks, pairs), system, M, R


def designs(rng: np.random.Generator, n: int = 240) -> dict[str, tuple[list[np.ndarray], list[int]]]:
    child = rng.integers(0, 40, size=n)
    parent = rng.integers(0, 8, size=40)[child]
    grand = rng.integers(0, 3, size=8)[parent]
    cross1, cross2, cross3 = rng.integers(0, 25, size=n), rng.integers(0, 7, size=n), rng.integers(0, 4, size=n)
    return {
        "two-level": ([child], [2]),
        "nested-3": ([child, parent, grand], [2, 1, 3]),
        "crossed-2": ([cross1, cross2], [1, 1]),
        "crossed-3": ([cross1, cross2, cross3], [2, 1, 2]),
        "nested+crossed": ([child, parent, cross2], [2, 1, 1]),
        "large-k": ([child, cross2], [7, 2]),
    }


CASES = list(designs(np.random.default_rng(0)))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", ["default", "all-dense", "sparse-lu", "sparse-product", "direct"])
def test_logdet_solve_and_schur_match_dense(case: str, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if mode == "all-dense":
        monkeypatch.setattr(sb, "COMBO_MAX", -1)
    if mode == "sparse-lu":
        monkeypatch.setattr(sb, "DENSE_MAX", 0)
    if mode == "sparse-product":
        monkeypatch.setattr(sb, "DENSE_PRODUCT_MAX", 0)
    if mode == "direct":
        monkeypatch.setattr(sb, "DIRECT_MIN", 0)
    rng = np.random.default_rng(CASES.index(case))
    levels, ks = designs(rng)[case]
    structure, system, M, R = random_system(rng, [_codes(c) for c in levels], ks)
    factor = factorize(structure, system)
    assert factor.logdet == pytest.approx(np.linalg.slogdet(M)[1], abs=1e-9)
    np.testing.assert_allclose(schur(factor, system), system.ff - R.T @ np.linalg.solve(M, R), atol=1e-9)
    x = np.concatenate([xl.reshape(-1, R.shape[1]) for xl in factor.solve(system.rhs)])
    np.testing.assert_allclose(x, np.linalg.solve(M, R), atol=1e-10)


def test_nested_levels_stay_blockwise_and_crossed_ones_fill() -> None:
    rng = np.random.default_rng(5)
    all_designs = designs(rng)
    nested, _ = all_designs["nested-3"]
    st, *_ = random_system(rng, [_codes(c) for c in nested], [1, 1, 1])
    assert st.n_blockwise == 3 and st.q_remainder == 0
    crossed, _ = all_designs["crossed-2"]
    st, *_ = random_system(rng, [_codes(c) for c in crossed], [1, 1])
    assert st.n_blockwise == 1 and st.remainder == [1] and len(st.intra[1][0]) > 0


def test_not_positive_definite_raises() -> None:
    rng = np.random.default_rng(1)
    levels, ks = designs(rng)["two-level"]
    structure, system, *_ = random_system(rng, [_codes(c) for c in levels], ks)
    system.diag[0][3] = -10 * np.eye(2)
    with pytest.raises(np.linalg.LinAlgError):
        factorize(structure, system)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("mode", ["default", "all-dense", "sparse-lu", "sparse-product", "direct"])
def test_selected_inverse_matches_dense_inverse(case: str, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Diagonal unit blocks and the blocks of units sharing a row equal those of inv(M); None after sparse LU."""
    if mode == "all-dense":
        monkeypatch.setattr(sb, "COMBO_MAX", -1)
    if mode == "sparse-lu":
        monkeypatch.setattr(sb, "DENSE_MAX", 0)
    if mode == "sparse-product":
        monkeypatch.setattr(sb, "DENSE_PRODUCT_MAX", 0)
    if mode == "direct":
        monkeypatch.setattr(sb, "DIRECT_MIN", 0)
    rng = np.random.default_rng(CASES.index(case))
    levels, ks = designs(rng)[case]
    structure, system, M, _ = random_system(rng, [_codes(c) for c in levels], ks)
    inv = selected_inverse(factorize(structure, system), InversePlan(structure))
    if mode == "sparse-lu" and structure.remainder:
        assert inv is None
        return
    Z = np.linalg.inv(M)
    offsets = np.concatenate([[0], np.cumsum([u * k for u, k in zip(structure.n_units, ks, strict=True)])])

    def block(level: int, units: np.ndarray) -> np.ndarray:
        return offsets[level] + units[:, None] * ks[level] + np.arange(ks[level])[None, :]

    for lvl in range(len(ks)):
        idx = block(lvl, np.arange(structure.n_units[lvl]))
        np.testing.assert_allclose(inv.diag[lvl], Z[idx[:, :, None], idx[:, None, :]], atol=1e-12)
    for (a, b), blocks in inv.pairs.items():
        n0 = structure.n_initial[(a, b)]
        ia, ib = (x[:n0] for x in structure.pairs[(a, b)])
        expected = Z[block(a, ia)[:, :, None], block(b, ib)[:, None, :]]
        np.testing.assert_allclose(blocks, expected, atol=1e-12)


@pytest.mark.parametrize("ks", [[1, 1, 1], [2, 1, 2]])
def test_crossed_students_and_lecturers_take_the_direct_path_and_match_dense(ks: list[int],
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """InstEval's layout in small: students rate many lecturers (nested in departments) and a dept x service cell.

    Eliminating students fills the lecturers, so every neighbour of a student is in the
    remainder and the students are eliminated `direct` (no per-pair links); logdet,
    solves and the selected inverse must still equal dense numpy's.
    """
    monkeypatch.setattr(sb, "DIRECT_MIN", 500)
    rng = np.random.default_rng(14)
    n_students, n_lecturers, n_depts = 60, 25, 4
    student = np.repeat(np.arange(n_students), 8)
    lecturer = rng.integers(0, n_lecturers, len(student))
    cell = rng.integers(0, n_depts, n_lecturers)[lecturer] * 2 + rng.integers(0, 2, len(student))
    structure, system, M, R = random_system(rng, [_codes(student), _codes(lecturer), _codes(cell)], ks)
    assert structure.direct == [True] and structure.n_blockwise == 1 and structure.remainder == [1, 2]
    factor = factorize(structure, system)
    assert factor.logdet == pytest.approx(np.linalg.slogdet(M)[1], abs=1e-9)
    np.testing.assert_allclose(schur(factor, system), system.ff - R.T @ np.linalg.solve(M, R), atol=1e-9)
    inv = selected_inverse(factor, InversePlan(structure))
    Z = np.linalg.inv(M)
    offsets = np.concatenate([[0], np.cumsum([u * k for u, k in zip(structure.n_units, ks, strict=True)])])

    def block(level: int, units: np.ndarray) -> np.ndarray:
        return offsets[level] + units[:, None] * ks[level] + np.arange(ks[level])[None, :]

    for lvl in range(3):
        idx = block(lvl, np.arange(structure.n_units[lvl]))
        np.testing.assert_allclose(inv.diag[lvl], Z[idx[:, :, None], idx[:, None, :]], atol=1e-12)
    for (a, b), blocks in inv.pairs.items():
        ia, ib = (x[:structure.n_initial[(a, b)]] for x in structure.pairs[(a, b)])
        np.testing.assert_allclose(blocks, Z[block(a, ia)[:, :, None], block(b, ib)[:, None, :]], atol=1e-12)
