"""pu.check_operator and pu.check_function: they pass on every built-in operator and function on
every backend, and they catch a wrong adjoint, a wrong norm claim, a wrong prox, a wrong prox
VJP and a wrong parameter VJP."""

import numpy as np
import pytest

import pdunroll as pu


def _operators(backend, dtype):
    rng = np.random.default_rng(0)
    kw = {"xp": backend.xp, "dtype": backend.dtype(dtype), "device": backend.device}

    def arr(shape, shift=0.0):
        return backend.asarray(rng.standard_normal(shape) + shift, dtype)

    mask = backend.asarray((rng.random((5, 6)) < 0.5).astype(float), dtype)
    blur = pu.Blur(arr((3, 3)), (5, 6), "zero")
    return [
        pu.DenseOperator(arr((7, 5))),
        *(pu.Conv1dFilterBank(arr((3, 4)), 9, b) for b in ("periodic", "zero", "valid")),
        *(pu.Conv2dFilterBank(arr((2, 3, 2)), (5, 6), b) for b in ("periodic", "zero", "valid")),
        pu.Gradient2d((5, 6), **kw),
        pu.Gradient2d((2, 5, 6), **kw),
        pu.Diagonal(arr((5, 6), 2.0)),
        pu.Composition(pu.Diagonal(arr((2, 5, 6))), pu.Gradient2d((5, 6), **kw)),
        pu.Stack(pu.Conv2dFilterBank(arr((2, 3, 3)), (5, 6), "valid"), blur),
        *(pu.Blur(arr((3, 2)), (5, 6), b) for b in ("periodic", "zero", "valid")),
        pu.Mask(mask),
        pu.Subsample((5, 6), 2, **kw),
        pu.Composition(pu.Subsample((5, 6), 2, **kw), blur),
        pu.ParallelBeam(6, 4, **kw),
    ]


def test_check_operator_passes_every_builtin_operator(numpy_backend, dtype):
    for op in _operators(numpy_backend, dtype):
        report = pu.check_operator(op)
        assert report.ok and len(report.rows) >= 4, str(report)


def test_check_operator_on_every_backend(backend, dtype):
    """A learnable and two fixed operators: the checks run on the operator's own backend, dtype
    and device (every built-in operator is checked on NumPy above: power iterations of
    convolutions are slow on eager JAX)."""
    rng = np.random.default_rng(0)
    mask = (rng.random((5, 6)) < 0.5).astype(float)
    for op in (pu.Diagonal(backend.asarray(rng.standard_normal((5, 6)), dtype)),
               pu.Mask(backend.asarray(mask, dtype)),
               pu.ParallelBeam(6, 4, xp=backend.xp, dtype=backend.dtype(dtype),
                               device=backend.device)):
        report = pu.check_operator(op)
        assert report.ok, str(report)


def _functions(backend, dtype):
    c = backend.asarray(np.linspace(-1, 1, 6), dtype)
    flat = [pu.L1Norm(0.7), pu.LinfBall(0.5), pu.L2Ball(1.3), pu.NoiseL2Ball(0.2, 1.1),
            pu.SquaredL2(2.0), pu.Zero(),
            pu.NonNegative(), pu.LinearTerm(c), pu.LinearTerm(c, pu.NonNegative()),
            pu.BoxBregmanL1Norm(0.8), pu.BoxBregmanLinfBall(0.5), pu.EntropicOrthant()]
    grouped = [pu.L21Norm(0.8), pu.Simplex(axis=1), pu.EntropicSimplex(axis=1)]
    return [(f, (3, 6)) for f in flat] + [(f, (3, 2, 4, 3)) for f in grouped]


def test_check_function_passes_every_builtin_function(numpy_backend, dtype):
    for f, shape in _functions(numpy_backend, dtype):
        example = numpy_backend.asarray(np.zeros(shape), dtype)
        report = pu.check_function(f, example)
        assert report.ok and len(report.rows) >= 9, str(report)


def test_check_function_on_every_backend(backend, dtype):
    """Functions with and without parameters on the backend (the differences and the
    minimisation run on float64 NumPy copies)."""
    for f, shape in [_functions(backend, dtype)[i] for i in (0, 7, 12)]:
        report = pu.check_function(f, backend.asarray(np.zeros(shape), dtype))
        assert report.ok, str(report)


class _WrongAdjoint(pu.DenseOperator):
    def adjoint(self, y):
        return y @ (self.params + 1e-3)


class _NormTooSmall(pu.DenseOperator):
    def norm(self, **kw):
        return 0.9 * float(np.linalg.norm(np.asarray(self.params), 2))


def test_check_operator_catches_a_wrong_adjoint_and_a_wrong_norm():
    k = np.random.default_rng(1).standard_normal((6, 4))
    with pytest.raises(pu.CheckError, match=r"adjoint: .* error [0-9.e-]+ \(tolerance"):
        pu.check_operator(_WrongAdjoint(k))
    with pytest.raises(pu.CheckError, match="norm: claimed"):
        pu.check_operator(_NormTooSmall(k))
    report = pu.check_operator(_WrongAdjoint(k), raise_on_failure=False)
    assert [r.name.split(":")[0] for r in report.failures] == ["adjoint"]
    assert report.failures[0].error > 1e-6


class _WrongThreshold(pu.L1Norm):
    """soft threshold at 1.1 t w: not the prox of w‖·‖₁."""

    def prox_save(self, z, t):
        return super().prox_save(z, 1.1 * t)


class _WrongProxVJP(pu.L2Ball):
    def prox_vjp(self, saved, v, t):
        return saved[2] * v  # drops the projection term of the Jacobian


class _WrongCostVJP(pu.LinearTerm):
    def prox_param_vjp(self, saved, v, t):
        return -super().prox_param_vjp(saved, v, t)

    def with_params(self, c):
        return _WrongCostVJP(c, self.base)


def test_check_function_catches_a_wrong_prox_and_wrong_vjps():
    x = np.zeros((3, 6))
    report = pu.check_function(_WrongThreshold(0.7), x, raise_on_failure=False)
    failed = {r.name.split(":")[0].split(" vs")[0] for r in report.failures}
    assert {"Moreau", "prox"} <= failed, str(report)
    with pytest.raises(pu.CheckError, match="numerical minimisation"):
        pu.check_function(_WrongThreshold(0.7), x)
    with pytest.raises(pu.CheckError, match="prox_vjp vs central difference"):
        pu.check_function(_WrongProxVJP(0.5), x)
    with pytest.raises(pu.CheckError, match="prox_param_vjp vs central difference"):
        pu.check_function(_WrongCostVJP(np.linspace(-1, 1, 6), pu.NonNegative()), x)


def test_checks_refuse_other_objects():
    with pytest.raises(TypeError, match="op must be a LinearOperator"):
        pu.check_operator(np.eye(3))
    with pytest.raises(TypeError, match="f must be a pdunroll Function"):
        pu.check_function(abs, np.zeros((1, 3)))


def test_the_lists_above_hold_every_registered_type(numpy_backend):
    """Every saveable operator and function of pdunroll is checked above (BlockSeparable and
    Translated in tests/test_inverse_problems.py)."""
    from pdunroll.registry import registered

    seen = {"BlockSeparable", "Translated"}

    def walk(op):
        seen.add(type(op).__name__)
        for sub in getattr(op, "operators", ()):
            walk(sub)

    for op in _operators(numpy_backend, "float64"):
        walk(op)
    seen |= {type(f).__name__ for f, _ in _functions(numpy_backend, "float64")}
    # pdunroll's own types (other tests register user classes of their own)
    own = {name for name, cls in registered().items() if cls.__module__.startswith("pdunroll.")}
    assert own <= seen, own - seen
