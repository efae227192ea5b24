"""The batched fixed-point solvers of pdunroll.unroll.krylov on small dense systems
(I − N_i) u_i = b_i, one per signal, against numpy.linalg in float64, on every backend."""

import numpy as np
import pytest
from conftest import relative_error

import pdunroll as pu

BATCH, D = 4, 9
SPLIT = (2, 2)  # a vector is a block of shape (batch, 2, 2) and a block of shape (batch, 5)


def _systems(seed=0, radius=0.9):
    """Nonsymmetric N_i with spectral radius ``radius`` (so the Neumann series converges too)."""
    rng = np.random.default_rng(seed)
    mats = rng.standard_normal((BATCH, D, D))
    rho = np.abs(np.linalg.eigvals(mats)).max(axis=1)
    mats = mats * (radius / rho)[:, None, None]
    b = rng.standard_normal((BATCH, D))
    return mats, b


def _blocks(backend, v):
    return (backend.asarray(v[:, :4].reshape(BATCH, *SPLIT)), backend.asarray(v[:, 4:]))


def _flat(backend, u):
    return np.concatenate([backend.to_numpy(u[0]).reshape(BATCH, 4), backend.to_numpy(u[1])],
                          axis=1)


def _apply(backend, mats):
    """u ↦ N u per signal, written with array-API operations on the two blocks."""
    xp = backend.xp
    m = backend.asarray(mats)

    def apply_n(u):
        flat = xp.concat([xp.reshape(u[0], (BATCH, 4)), u[1]], axis=1)
        out = xp.sum(m * flat[:, None, :], axis=2)
        return xp.reshape(out[:, :4], (BATCH, *SPLIT)), out[:, 4:]

    return apply_n


def _solve(mats, b):
    return np.stack([np.linalg.solve(np.eye(D) - mats[i], b[i]) for i in range(BATCH)])


@pytest.mark.parametrize("restart", [50, 3])
def test_gmres_solves_each_signal(backend, restart):
    mats, b = _systems()
    u, info = pu.gmres(_apply(backend, mats), _blocks(backend, b), tol=1e-12, maxiter=200,
                       restart=restart)
    assert info.converged and info.status == "converged" and info.method == "gmres"
    assert relative_error(_flat(backend, u), _solve(mats, b)) < 1e-10
    assert info.residual <= 1e-12 and backend.to_numpy(info.residuals).shape == (BATCH,)
    if restart == 50:  # full GMRES terminates within the dimension
        assert info.iterations <= D + 1


def test_gmres_zero_right_hand_side_for_one_signal(backend):
    mats, b = _systems(1)
    b[2] = 0.0
    u, info = pu.gmres(_apply(backend, mats), _blocks(backend, b), tol=1e-12, maxiter=100)
    assert info.converged
    x = _flat(backend, u)
    assert np.all(x[2] == 0.0)
    assert relative_error(x, _solve(mats, b)) < 1e-10


def test_gmres_singular_inconsistent_system_stagnates(backend):
    """N_i with eigenvalue 1 and b_i off the range of I − N_i: no solution. GMRES stops on
    stagnation, reports the least-squares residual (not 0), and its answer is not worse than 0."""
    mats, b = _systems(2)
    # eigenvalue 1 with left and right eigenvector e_0: row 0 and column 0 of N are e_0
    mats[:, 0, :] = 0.0
    mats[:, :, 0] = 0.0
    mats[:, 0, 0] = 1.0
    u, info = pu.gmres(_apply(backend, mats), _blocks(backend, b), tol=1e-10, maxiter=500)
    assert not info.converged and info.status == "stagnated"
    lsq = [np.linalg.norm(b[i, :1]) / np.linalg.norm(b[i]) for i in range(BATCH)]
    np.testing.assert_allclose(backend.to_numpy(info.residuals), lsq, rtol=1e-8)
    assert info.iterations < 500


def test_neumann_is_the_truncated_series(backend):
    """u_j = Σ_{i<j} N^i b exactly, and with a tolerance the series converges to the solution."""
    mats, b = _systems(3, radius=0.5)
    apply_n = _apply(backend, mats)
    u, info = pu.neumann(apply_n, _blocks(backend, b), tol=1e-300, maxiter=5)
    assert info.status == "maxiter" and info.iterations == 5 and not info.converged
    series = sum(np.einsum("bij,bj->bi", np.stack([np.linalg.matrix_power(m, i) for m in mats]),
                           b) for i in range(5))
    assert relative_error(_flat(backend, u), series) < 1e-13
    u, info = pu.neumann(apply_n, _blocks(backend, b), tol=1e-11, maxiter=500)
    assert info.converged and info.residual <= 1e-11
    assert relative_error(_flat(backend, u), _solve(mats, b)) < 1e-9


def test_neumann_diverging_series_is_reported(numpy_backend):
    mats, b = _systems(4, radius=1.5)
    _, info = pu.neumann(_apply(numpy_backend, mats), _blocks(numpy_backend, b), tol=1e-10,
                         maxiter=60)
    assert info.status == "maxiter" and not info.converged and info.residual > 1.0


def test_bad_arguments(numpy_backend):
    mats, b = _systems()
    with pytest.raises(ValueError, match="maxiter"):
        pu.gmres(_apply(numpy_backend, mats), _blocks(numpy_backend, b), tol=1e-8, maxiter=0)
    with pytest.raises(TypeError, match="restart"):
        pu.gmres(_apply(numpy_backend, mats), _blocks(numpy_backend, b), tol=1e-8, maxiter=5,
                 restart=2.5)
