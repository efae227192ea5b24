"""A gradient audit anyone can run: every applicable gradient method of a model compared with
central finite differences, with automatic differentiation of the same unrolled loop (torch,
JAX, where installed) and with each other, in one table.

Rows and their tolerances (ℓ = ½ Σ ‖x̂ − x†‖² of L unrolled steps):

* ``Full()`` vs central differences (ℓ(p + εd) − ℓ(p − εd)) / 2ε along a random direction d,
  one row per parameter group (operator, x̃, F, G): relative error ≤ 1e-5 (float64, ε = 1e-6);
* exact methods vs ``Full()`` (``Full(segments=c)``, ``Truncated(b=L)``): ≤ 1e-10;
* ``Full()`` vs torch.autograd / jax.grad of :func:`~pdunroll.unroll.forward.forward` (the
  library's own loop differentiated by the framework): ≤ 1e-10; ``Truncated(b)`` likewise
  against the loop with the state detached before the last b steps;
* approximations vs ``Full()`` at L and at 4L (``Asymptotic(b)``, ``Implicit()``, the L → ∞
  gradients of the docs' Mathematics page, "Truncated and asymptotic gradients" and "The
  fixed-point gradient"; Ochs, Ranftl, Brox & Pock 2016) and ``Truncated(b < L)`` (the gradient
  of the last b steps only) are reported without a tolerance: they differ from the gradient of
  ℓ by design, and whether the difference shrinks with L depends on the problem (a nonsmooth
  F or G, a non-unique solution); the note says whether it shrank from L to 4L.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from . import tree
from ._array import Array, array_device, check_flag, check_positive, xp_of
from .model import AnalysisModel, StepRule, StepSizes, check_model, resolve_steps
from .unroll.forward import ergodic_weights, forward
from .unroll.gradient import gradient
from .unroll.implicit import ConvergenceError
from .unroll.methods import Asymptotic, Full, GradientMethod, Implicit, Truncated, as_method

__all__ = ["AuditResult", "AuditRow", "check_gradients"]

FD_TOL, EXACT_TOL, AUTODIFF_TOL, CONVERGED = 1e-5, 1e-10, 1e-10, 1e-8  # CONVERGED: equal


@dataclass(frozen=True)
class AuditRow:
    """One comparison: ``method`` against ``reference``; ``error`` (relative), ``tolerance``
    (``inf``: reported only), ``ok``; ``note`` says why a row was skipped (then error is NaN)."""

    method: str
    reference: str
    error: float
    tolerance: float
    ok: bool
    note: str = ""


@dataclass(frozen=True)
class AuditResult:
    """The rows of :func:`check_gradients`; ``ok``: no disagreement above its tolerance."""

    rows: tuple[AuditRow, ...]
    iterations: int
    steps: StepSizes
    failures: tuple[AuditRow, ...] = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "failures", tuple(r for r in self.rows if not r.ok))

    @property
    def ok(self) -> bool:
        return not self.failures

    def table(self) -> str:
        head = ("method", "reference", "rel. error", "tolerance", "")
        body = [(r.method, r.reference, "—" if math.isnan(r.error) else f"{r.error:.2e}",
                 "—" if math.isinf(r.tolerance) else f"{r.tolerance:.0e}",
                 r.note if r.note else ("ok" if r.ok else "FAIL")) for r in self.rows]
        widths = [max(len(row[i]) for row in (head, *body)) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  "
                 + row[4] for row in (head, *body)]
        lines.insert(1, "-" * len(lines[0]))
        verdict = "all agree" if self.ok else f"{len(self.failures)} disagreement(s)"
        return "\n".join(lines + [f"L = {self.iterations}: {verdict}"])

    def __str__(self) -> str:
        return self.table()


def _flat(res) -> list[Array]:
    return [res.x_tilde, *tree.flatten(res.operator), *tree.flatten(res.f), *tree.flatten(res.g)]


def _rel(a: list, b: list) -> float:
    """‖a − b‖ / ‖b‖ over all leaves (a scale of 1e-300 for b = 0)."""
    num = sum(float(xp_of(x).sum((x - y) ** 2)) for x, y in zip(a, b, strict=True))
    den = sum(float(xp_of(y).sum(y * y)) for y in b)
    return math.sqrt(num) / max(math.sqrt(den), 1e-300)


def _groups(model: AnalysisModel, x_tilde):
    """(name, leaves, rebuild(leaves) -> (model, x̃)) per parameter group with leaves."""
    op, f, g = model.operator, model.f, model.g
    out = [("x_tilde", [x_tilde], lambda ls: (model, ls[0]))]
    if tree.flatten(op.params):
        out.append(("operator", tree.flatten(op.params), lambda ls: (AnalysisModel(
            op.with_params(tree.unflatten(op.params, ls)), f, g), x_tilde)))
    if tree.flatten(f.params):
        out.append(("F", tree.flatten(f.params), lambda ls: (AnalysisModel(
            op, f.with_params(tree.unflatten(f.params, ls)), g), x_tilde)))
    if tree.flatten(g.params):
        out.append(("G", tree.flatten(g.params), lambda ls: (AnalysisModel(
            op, f, g.with_params(tree.unflatten(g.params, ls))), x_tilde)))
    return out


def _direction(leaf, seed: int):
    """A fixed pseudo-random direction of ``leaf``'s shape, unit norm (no RNG in the API)."""
    xp = xp_of(leaf)
    n = math.prod(leaf.shape)
    d = xp.sin(xp.arange(n, dtype=leaf.dtype, device=array_device(leaf)) * (12.9898 + seed)
               + 78.233 * seed)
    return xp.reshape(d, leaf.shape) / xp.linalg.vector_norm(d)


def _fd_rows(model, x_tilde, x_true, full, iterations, alphas_arg, steps, eps):
    rows = []
    grads = {"x_tilde": [full.x_tilde], "operator": tree.flatten(full.operator),
             "F": tree.flatten(full.f), "G": tree.flatten(full.g)}
    for i, (name, leaves, rebuild) in enumerate(_groups(model, x_tilde)):
        ds = [_direction(leaf, i + 7 * j) for j, leaf in enumerate(leaves)]
        exact = sum(float(xp_of(gr).sum(gr * d)) for gr, d in zip(grads[name], ds, strict=True))

        def loss(sign, leaves=leaves, ds=ds, rebuild=rebuild):
            m, xt = rebuild([p + sign * eps * d for p, d in zip(leaves, ds, strict=True)])
            return gradient(m, xt, x_true, iterations=iterations, weights=alphas_arg,
                            steps=steps).loss

        fd = (loss(1) - loss(-1)) / (2 * eps)
        err = abs(exact - fd) / max(abs(exact), abs(fd), 1e-300)
        rows.append(AuditRow("Full()", f"finite differences ({name})", err, FD_TOL,
                             err <= FD_TOL))
    return rows


def _autodiff_rows(model, x_tilde, x_true, steps, iterations, alphas, references):
    """Rows against torch.autograd and jax.grad of the library's loop, where installed."""
    import importlib.util

    rows = []
    for name in ("torch", "jax"):
        label = "torch.autograd" if name == "torch" else "jax.grad"
        if importlib.util.find_spec(name) is None:
            rows.append(AuditRow("Full()", label, math.nan, AUTODIFF_TOL, True,
                                 f"skipped: {name} is not installed"))
            continue
        fixed = not tree.flatten(model.operator.params)
        if fixed and not type(model.operator.arrays[0]).__module__.startswith(name):
            rows.append(AuditRow("Full()", label, math.nan, AUTODIFF_TOL, True,
                                 "skipped: a fixed operator's arrays stay on their backend"))
            continue
        for method, res in references:
            b = method.back_steps(iterations)
            window = b if b < iterations else None
            if window is not None and alphas is not None:
                continue
            try:
                auto = _autodiff(name, model, x_tilde, x_true, steps, iterations, alphas, window)
            except (TypeError, ValueError) as err:
                rows.append(AuditRow(repr(method), label, math.nan, AUTODIFF_TOL, True,
                                     f"skipped: {str(err).splitlines()[0][:60]}"))
                break
            import numpy as np

            mine = [np.asarray(_host(a)) for a in _flat(res)]
            err = _rel(mine, auto)
            rows.append(AuditRow(_short(method), label, err, AUTODIFF_TOL, err <= AUTODIFF_TOL))
    return rows


def _host(a):
    """A NumPy copy of any backend's array (via DLPack, on the CPU)."""
    import numpy as np

    if hasattr(a, "detach"):
        a = a.detach().cpu()
    elif hasattr(a, "get") and not isinstance(a, np.ndarray):
        a = a.get()
    return np.from_dlpack(a) if not isinstance(a, np.ndarray) else a


def _autodiff(name, model, x_tilde, x_true, steps, iterations, alphas, window):
    """Gradients of ℓ (x̃, operator, F, G leaves, as NumPy) by the framework ``name``, through
    :func:`forward`; ``window=b`` detaches the state before the last b steps."""
    import numpy as np

    groups = _groups(model, x_tilde)
    leaves = [leaf for _, ls, _ in groups for leaf in ls]
    counts = [len(ls) for _, ls, _ in groups]
    names = [n for n, _, _ in groups]
    host = [np.asarray(_host(a)) for a in leaves]
    truth = np.asarray(_host(x_true))

    def rebuild(ls):
        it = iter(ls)
        parts = {n: [next(it) for _ in range(c)] for n, c in zip(names, counts, strict=True)}
        op, f, g = model.operator, model.f, model.g
        if "operator" in parts:
            op = op.with_params(tree.unflatten(op.params, parts["operator"]))
        if "F" in parts:
            f = f.with_params(tree.unflatten(f.params, parts["F"]))
        if "G" in parts:
            g = g.with_params(tree.unflatten(g.params, parts["G"]))
        return AnalysisModel(op, f, g), parts["x_tilde"][0]

    def loss(ls, stop, xt_true):
        m, xt = rebuild(ls)
        if window is None:
            state = forward(m, xt, steps, iterations, alphas=alphas)
        else:
            head = forward(m, xt, steps, iterations - window)
            r_bar = head.r + steps.theta * (head.r - head.r_prev) if iterations > window \
                else head.r
            start = (stop(head.r), stop(r_bar), stop(head.y))
            state = forward(m, xt, steps, window, start=start)
        diff = xt + (state.r if alphas is None else state.r_avg) - xt_true
        return 0.5 * (diff * diff).sum()

    if name == "torch":
        import torch

        ts = [torch.tensor(h, dtype=torch.float64, requires_grad=True) for h in host]
        grads = torch.autograd.grad(loss(ts, lambda t: t.detach(),
                                         torch.tensor(truth, dtype=torch.float64)), ts,
                                    allow_unused=True)
        return [np.zeros_like(h) if gr is None else gr.numpy() for gr, h in zip(grads, host,
                                                                                  strict=True)]
    import jax

    with jax.enable_x64(True):
        import jax.numpy as jnp

        js = [jnp.asarray(h, dtype=jnp.float64) for h in host]
        grads = jax.grad(lambda ls: loss(ls, jax.lax.stop_gradient,
                                         jnp.asarray(truth, dtype=jnp.float64)))(js)
        return [np.asarray(gr) for gr in grads]


def _short(method: GradientMethod) -> str:
    name = method.label()
    return name[:-1] + (", " if name[-2] != "(" else "") + "relax_primal=True)" \
        if method.relax_primal else name


def default_methods(iterations: int) -> tuple[GradientMethod, ...]:
    """Full, Full with √L segments, Truncated(L), Truncated(L/2), Asymptotic(L), Implicit."""
    out = [Full()]
    if iterations >= 4:
        out.append(Full(segments=math.isqrt(iterations)))
    out.append(Truncated(iterations))
    if iterations >= 2:
        out.append(Truncated(iterations // 2))
    return (*out, Asymptotic(iterations), Implicit())


def _methods(methods) -> tuple:
    """``methods`` as a tuple of gradient methods, else an error naming ``methods``."""
    if isinstance(methods, str | GradientMethod) or not hasattr(methods, "__iter__"):
        raise TypeError(f"methods must be a sequence of gradient methods (e.g. [pu.Full(), "
                        f"pu.Truncated(3)]), got {methods!r}")
    return tuple(as_method(m) for m in methods)


def check_gradients(
    model: AnalysisModel,
    x_tilde: Array,
    x_true: Array,
    *,
    iterations: int,
    methods=None,
    weights=None,
    omega: float | None = None,
    steps: StepRule | StepSizes | None = None,
    eps: float = 1e-6,
    autodiff: bool = True,
) -> AuditResult:
    """Audit the gradients of ℓ = ½ Σ ‖x̂ − x†‖² w.r.t. x̃ and the parameters of the operator,
    F and G (the rows and tolerances are in this module's docstring); print ``result`` for the
    table, ``result.ok`` says whether every row agrees. Arrays in float64 (finite differences).

    ``methods``: gradient methods to compare (default :func:`default_methods`); ``weights``
    (ergodic) applies to Full and Truncated, the others are skipped then; ``autodiff=False``
    leaves out torch and JAX.
    """
    check_model(model).check_signals(x_tilde=x_tilde, x_true=x_true)
    eps = check_positive("eps", eps)
    if eps >= 1e-2:
        raise ValueError(f"eps must be a small finite-difference step (below 1e-2, e.g. 1e-6), "
                         f"got {eps:g}")
    autodiff = check_flag("autodiff", autodiff)
    if x_tilde.dtype != xp_of(x_tilde).float64:
        raise TypeError(f"check_gradients compares with finite differences: give float64 "
                        f"arrays, x_tilde has {x_tilde.dtype}")
    steps = resolve_steps(model.operator, omega, steps)
    methods = default_methods(iterations) if methods is None else _methods(methods)
    alphas = ergodic_weights(weights, iterations)
    full = gradient(model, x_tilde, x_true, iterations=iterations, weights=weights, steps=steps)
    rows = _fd_rows(model, x_tilde, x_true, full, iterations, weights, steps, eps)
    ref = _flat(full)
    references = [(Full(), full)]
    for method in methods:
        if method == Full():
            continue
        if alphas is not None and not method.stores_steps:
            rows.append(AuditRow(_short(method), "Full()", math.nan, math.inf, True,
                                 "skipped: not defined with ergodic weights"))
            continue
        try:
            res = gradient(model, x_tilde, x_true, iterations=iterations, method=method,
                           weights=weights, steps=steps)
        except ConvergenceError:
            rows.append(AuditRow(_short(method), "Full()", math.nan, math.inf, True,
                                 "not applicable: the linear solve did not converge"))
            continue
        err = _rel(_flat(res), ref)
        if method.stores_steps and method.back_steps(iterations) == iterations:
            rows.append(AuditRow(_short(method), "Full()", err, EXACT_TOL, err <= EXACT_TOL))
        elif method.stores_steps:
            rows.append(AuditRow(_short(method), "Full()", err, math.inf, True,
                                 "approximation (last b steps)"))
            references.append((method, res))
        else:
            rows.extend(_growing(model, x_tilde, x_true, method, iterations, steps, err))
    if autodiff:
        rows.extend(_autodiff_rows(model, x_tilde, x_true, steps, iterations, alphas,
                                   references))
    return AuditResult(tuple(rows), iterations, steps)


def _growing(model, x_tilde, x_true, method, iterations, steps, err):
    """An L → ∞ method against Full() at L and at 4L: the difference must not grow (a method
    with b = L backward steps runs b = 4L there)."""
    longer = 4 * iterations
    method4 = replace(method, b=longer) if getattr(method, "b", None) == iterations else method
    full4 = gradient(model, x_tilde, x_true, iterations=longer, steps=steps)
    try:
        res4 = gradient(model, x_tilde, x_true, iterations=longer, method=method4, steps=steps)
    except ConvergenceError:
        return [AuditRow(_short(method), f"Full(), L = {iterations}", err, math.inf, True,
                         "approximation"),
                AuditRow(_short(method4), f"Full(), L = {longer}", math.nan, math.inf, True,
                         "not applicable: the linear solve did not converge")]
    err4 = _rel(_flat(res4), _flat(full4))
    trend = "shrinks" if err4 <= max(err, CONVERGED) else "grows"
    return [AuditRow(_short(method), f"Full(), L = {iterations}", err, math.inf, True,
                     "approximation"),
            AuditRow(_short(method4), f"Full(), L = {longer}", err4, math.inf, True,
                     f"approximation: the difference {trend} with L")]
