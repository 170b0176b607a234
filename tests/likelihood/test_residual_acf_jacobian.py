"""Autocorrelation maps of the AR and MA residual structures and their analytic Jacobians.

The AR autocorrelations are checked against the MA(infinity) representation
written here (psi weights from the AR recursion, gamma_k = sum_j psi_j psi_j+k,
truncated where psi has decayed below 1e-17), the MA ones against the
covariance of the moving sum built as a dense convolution matrix; the
Jacobians against central differences of the maps.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlmrun.likelihood.gaussian.residual_structures import ar_autocorrelation, ma_autocorrelation

AR = [np.array([0.6]), np.array([-0.8]), np.array([0.5, 0.3]), np.array([1.2, -0.5]), np.array([0.3, -0.2, 0.4])]
MA = [np.array([0.7]), np.array([-0.4, 0.25]), np.array([0.5, -0.3, 0.9])]


def _ar_acf_from_psi(phi: np.ndarray, max_lag: int, terms: int = 4000) -> np.ndarray:
    """rho_k of a stationary AR(p) from its MA(infinity) weights psi (psi_0 = 1, psi_j = sum_i phi_i psi_j-i)."""
    psi = np.zeros(terms)
    psi[0] = 1.0
    for j in range(1, terms):
        for i, c in enumerate(phi, start=1):
            if j - i >= 0:
                psi[j] += c * psi[j - i]
    gamma = np.array([psi[:terms - k] @ psi[k:] for k in range(max_lag + 1)])
    return gamma / gamma[0]


def _ma_acf_dense(theta: np.ndarray, max_lag: int, length: int = 40) -> np.ndarray:
    """rho_k of e = W a for the dense convolution matrix W of the MA weights: Cov(e) = W W'."""
    w = np.concatenate([[1.0], theta])
    W = np.zeros((length, length + len(theta)))
    for t in range(length):
        W[t, t:t + len(w)] = w[::-1]
    cov = W @ W.T
    mid = length // 2
    return cov[mid, mid:mid + max_lag + 1] / cov[mid, mid]


@pytest.mark.parametrize("phi", AR, ids=lambda p: "ar" + "_".join(f"{x:g}" for x in p))
@pytest.mark.parametrize("max_lag", [1, 7, 30])
def test_ar_autocorrelation_matches_the_ma_infinity_representation(phi: np.ndarray, max_lag: int) -> None:
    expected = _ar_acf_from_psi(phi, max_lag)
    assert ar_autocorrelation(phi, max_lag) == pytest.approx(expected, abs=1e-12)
    rho, _ = ar_autocorrelation(phi, max_lag, jacobian=True)
    assert rho == pytest.approx(expected, abs=1e-12)
    assert len(rho) == max_lag + 1


@pytest.mark.parametrize("phi", AR, ids=lambda p: "ar" + "_".join(f"{x:g}" for x in p))
def test_ar_jacobian_matches_central_differences(phi: np.ndarray) -> None:
    _, J = ar_autocorrelation(phi, 12, jacobian=True)
    h = 1e-6
    for i in range(len(phi)):
        up, down = phi.copy(), phi.copy()
        up[i] += h
        down[i] -= h
        numeric = (ar_autocorrelation(up, 12) - ar_autocorrelation(down, 12)) / (2 * h)
        assert J[:, i] == pytest.approx(numeric, abs=1e-7)
    assert np.all(J[0] == 0.0)
    assert np.max(np.abs(J)) > 0.1


@pytest.mark.parametrize("phi", [np.array([1.05]), np.array([0.5, 0.6]), np.array([0.2, -1.1])])
def test_ar_outside_the_stationary_region_is_refused(phi: np.ndarray) -> None:
    with pytest.raises(np.linalg.LinAlgError, match="stationary"):
        ar_autocorrelation(phi, 10)


@pytest.mark.parametrize("theta", MA, ids=lambda p: "ma" + "_".join(f"{x:g}" for x in p))
def test_ma_autocorrelation_and_jacobian(theta: np.ndarray) -> None:
    max_lag = 6
    rho, J = ma_autocorrelation(theta, max_lag, jacobian=True)
    assert rho == pytest.approx(_ma_acf_dense(theta, max_lag), abs=1e-12)
    assert np.all(rho[len(theta) + 1:] == 0.0)
    h = 1e-6
    for i in range(len(theta)):
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        numeric = (ma_autocorrelation(up, max_lag) - ma_autocorrelation(down, max_lag)) / (2 * h)
        assert J[:, i] == pytest.approx(numeric, abs=1e-8)
    assert np.max(np.abs(J)) > 0.1
