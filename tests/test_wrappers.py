"""Function wrappers cannot drop a method of their base: LinearTerm with c = 0 is its base, for
every step method of the Function interface (primal and dual, Euclidean and Bregman), and with
c ≠ 0 its dual step is the base's step shifted by c."""

import numpy as np
import pytest

import pdunroll as pu
from pdunroll.functions.euclidean import Function

SHAPE = (2, 3, 4)  # batch 2, signals 3×4 (groups / labels along axis 1)
STEP = 0.37

# every method of the interface that a chambolle_pock or forward_backward step calls
STEP_METHODS = sorted(n for n in dir(Function)
                       if ("step" in n or n.endswith("start")) and not n.startswith("check"))


def _prev(base, kind, rng):
    """A point in the interior of the step's domain (entropic steps: positive / on the simplex;
    box steps: inside the box)."""
    z = rng.standard_normal(SHAPE)
    if kind == "primal" and isinstance(base, pu.EntropicSimplex):
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
    if kind == "primal" and isinstance(base, pu.EntropicOrthant):
        return np.exp(z)
    if kind == "primal" and isinstance(base, pu.BoxBregmanLinfBall):
        return base.radius * np.tanh(z)
    if kind == "dual" and isinstance(base, pu.BoxBregmanL1Norm):
        return base.weight * np.tanh(z)
    return z


BASES = {
    "zero": pu.Zero(), "l1": pu.L1Norm(0.8), "linf": pu.LinfBall(0.5), "l2ball": pu.L2Ball(1.5),
    "squared": pu.SquaredL2(), "l21": pu.L21Norm(0.6), "simplex": pu.Simplex(axis=1),
    "nonneg": pu.NonNegative(), "box_l1": pu.BoxBregmanL1Norm(0.7),
    "box_linf": pu.BoxBregmanLinfBall(0.3), "entropic_orthant": pu.EntropicOrthant(),
    "entropic_simplex": pu.EntropicSimplex(axis=1),
}


def _tree_allclose(a, b):
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b)
        for p, q in zip(a, b, strict=True):
            _tree_allclose(p, q)
    else:
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-13, atol=1e-14)


def _call(f, method, prev, direction, v):
    """Run ``method`` of f the way the solvers do (its *_vjp on the saved of *_save)."""
    kind = "dual" if method.startswith("conj") else "primal"
    save = getattr(f, f"{'conj_prox' if kind == 'dual' else 'prox'}_step_save")
    if method.endswith("start"):
        return getattr(f, method)(np.zeros(SHAPE))
    if method.endswith("_vjp"):
        _, saved = save(prev, direction, STEP)
        return getattr(f, method)(saved, v, STEP)
    out = getattr(f, method)(prev, direction, STEP)
    return out[0] if method.endswith("_save") else out  # what is saved is each one's own


def test_the_interface_lists_every_step_method():
    assert {"prox_step", "prox_step_save", "prox_step_vjp", "prox_step_param_vjp",
            "conj_prox_step", "conj_prox_step_save", "conj_prox_step_vjp",
            "conj_prox_step_param_vjp", "start", "conj_start"} <= set(STEP_METHODS)


@pytest.mark.parametrize("method", [m for m in STEP_METHODS if not m.endswith("param_vjp")])
@pytest.mark.parametrize("name", sorted(BASES))
def test_linear_term_with_zero_costs_is_its_base(name, method):
    """(The parameter VJPs differ by design: the base has none, the wrapper's is ∇_c, checked
    against finite differences below and in test_functions_extra.)"""
    base = BASES[name]
    wrapped = pu.LinearTerm(np.zeros(SHAPE[1:]), base)
    rng = np.random.default_rng(abs(hash((name, method))) % 2**32)
    kind = "dual" if method.startswith("conj") else "primal"
    prev, direction, v = _prev(base, kind, rng), rng.standard_normal(SHAPE), \
        rng.standard_normal(SHAPE)
    _tree_allclose(_call(wrapped, method, prev, direction, v),
                   _call(base, method, prev, direction, v))


@pytest.mark.parametrize("name", ["box_l1", "l1", "l21", "zero"])
def test_linear_term_dual_step_is_the_base_step_shifted(name):
    """f = ⟨c, ·⟩ + base: f*(y) = base*(y − c), so y' = c + P_base(y − c, ascent) and the dual
    start is c + the base's; ∇_c⟨v, y'⟩ matches central differences."""
    base = BASES[name]
    rng = np.random.default_rng(5)
    c = 0.1 * rng.standard_normal(SHAPE[1:])
    f = pu.LinearTerm(c, base)
    prev = c + _prev(base, "dual", rng)
    ascent, v = rng.standard_normal(SHAPE), rng.standard_normal(SHAPE)
    want = c + base.conj_prox_step(prev - c, ascent, STEP)
    np.testing.assert_allclose(f.conj_prox_step(prev, ascent, STEP), want, rtol=1e-14)
    np.testing.assert_allclose(f.conj_start(np.zeros(SHAPE)), c + base.conj_start(np.zeros(SHAPE)))
    _, saved = f.conj_prox_step_save(prev, ascent, STEP)
    grad_c = f.conj_prox_step_param_vjp(saved, v, STEP)
    w = rng.standard_normal(SHAPE[1:])
    h = 1e-6

    def value(cc):
        return np.sum(v * pu.LinearTerm(cc, base).conj_prox_step(prev, ascent, STEP))

    fd = (value(c + h * w) - value(c - h * w)) / (2 * h)
    assert np.sum(grad_c * w) == pytest.approx(fd, rel=1e-6, abs=1e-9)
