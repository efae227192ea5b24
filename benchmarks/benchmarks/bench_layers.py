"""Parity at the speech size (batch 32, n = m = 320, float32, full gradient with b = L): pdunroll
(NumPy, torch; eager and compiled), its torch layer, torch.autograd of a plain loop, jax.grad
of a ``lax.scan`` loop, and a TensorFlow graph of the same full reverse recursion (skipped where
TensorFlow is not installed).

``TF graph``: written for this suite from the recursion of the docs' Mathematics page, "Full
reverse mode" (the algorithm of Brauer & Lorenz, EUSIPCO 2023, ``full_bp`` with b = L): the
forward loop and the reverse loop unrolled in Python inside one ``tf.function``, the tape held
as graph tensors, elementwise masks for the two clips.

``benchmarks/parity.py`` runs every implementation in one process, interleaved, and prints the
ratios; the asv class here times each one separately (``asv run --bench LayersParity``).
"""

from __future__ import annotations

import numpy as np

from .common import SkipNotImplemented, pu, speech_problem

SPEECH = speech_problem()
IMPLEMENTATIONS = ["numpy gradient", "torch gradient", "torch layer", "torch layer compiled",
                   "torch module", "torch module compiled", "torch train step compiled",
                   "torch.autograd", "torch.compile core", "numpy core", "jax.jit core",
                   "jax.jit layer", "jax.grad scan", "TF graph", "numpy floor", "torch floor"]


def _steps(p):
    return pu.StepSizes(p.sigma, p.tau, p.theta, p.op_norm)


def _core(model_of, steps, iterations):
    """(K, x̃, x†) ↦ (ℓ, ∇_K, ∇_x̃) through pdunroll's unchecked vjp: no validation, no host
    synchronisation (the function jax.jit and torch.compile see)."""
    from pdunroll.unroll.gradient import vjp_unchecked
    from pdunroll.unroll.plan import make_plan

    plan = make_plan(pu.Full(), iterations, None, steps)

    def core(K, xt, x_true):
        model = model_of(K)
        x_hat, pull = vjp_unchecked(model, xt, plan)
        g = x_hat - x_true
        c = pull(g)
        return 0.5 * (g * g).sum(), c.operator, c.x_tilde

    return core


def build(name: str, iterations: int, p=SPEECH, dtype: str = "float32"):
    """A zero-argument callable computing one full gradient with implementation ``name``
    (compiled ones are compiled and run once here); SkipNotImplemented where it cannot run."""
    steps = _steps(p)
    K, xt, x_true = (np.asarray(a, dtype=dtype) for a in (p.K, p.x_tilde, p.x_true))

    def model_of(Kb):
        return pu.AnalysisModel(pu.DenseOperator(Kb), pu.L1Norm(), pu.LinfBall(p.radius))

    if name == "numpy gradient":
        return lambda: pu.gradient(model_of(K), xt, x_true, iterations=iterations, steps=steps)
    if name in ("numpy floor", "torch floor"):  # the matrix products of a full gradient only
        from . import baselines as bl

        if name == "torch floor":
            import torch

            K, xt = torch.from_numpy(K), torch.from_numpy(xt)
        cat = np.concatenate if isinstance(K, np.ndarray) else torch.cat
        y, sa, sb = bl.floor_arrays(cat, K, xt, iterations)
        return lambda: bl.floor_gradient(K, xt, y, sa, sb, iterations)
    if name == "numpy core":
        core = _core(model_of, steps, iterations)
        return lambda: core(K, xt, x_true)
    if name.startswith("torch") or name in ("torch.autograd",):
        try:
            import torch
        except ImportError as err:
            raise SkipNotImplemented("torch is not installed") from err
        tK, txt, ttrue = (torch.from_numpy(a) for a in (K, xt, x_true))
        if name == "torch gradient":
            return lambda: pu.gradient(model_of(tK), txt, ttrue, iterations=iterations,
                                       steps=steps)
        if name in ("torch layer", "torch layer compiled"):
            from pdunroll.torch import unrolled

            leaf = tK.clone().requires_grad_()
            xl = txt.clone().requires_grad_()
            compile = name.endswith("compiled")

            def layer():
                x_hat = unrolled(model_of(leaf), xl, iterations=iterations, steps=steps,
                                 compile=compile)
                loss = 0.5 * ((x_hat - ttrue) ** 2).sum()
                return torch.autograd.grad(loss, (leaf, xl))

            layer()  # compiles (once per shape)
            return layer
        if name in ("torch module", "torch module compiled"):
            # UnrolledCP with its default StepRule (steps=None): ‖K‖ refreshed at every call by
            # warm-started power iterations, as while it trains
            from pdunroll.torch import UnrolledCP

            module = UnrolledCP(model_of(tK), iterations=iterations,
                                compile=name.endswith("compiled"))
            xl = txt.clone().requires_grad_()

            def step():
                x_hat = module(xl)
                loss = 0.5 * ((x_hat - ttrue) ** 2).sum()
                return torch.autograd.grad(loss, (*module.parameters(), xl))

            step()
            return step
        if name == "torch train step compiled":
            # the minibatch gradient of one step of pu.train(..., compile=True): the batch taken
            # from the training set, the model built, one compiled program (forward, loss, reverse)
            from pdunroll.learning.training import LocalGradient
            from pdunroll.torch import compiled_gradient
            from pdunroll.unroll.plan import make_plan

            plan = make_plan(pu.Full(), iterations, x_wanted=False)  # train's plan
            grad = LocalGradient(txt, ttrue, plan, None, compiled_gradient(True, "cpu"))
            indices = np.arange(txt.shape[0])
            model = model_of(tK)
            grad(model, indices, steps)
            return lambda: grad(model, indices, steps)
        if name == "torch.autograd":
            from .baselines import torch_autograd_gradient

            leaf = tK.clone().requires_grad_()
            xl = txt.clone().requires_grad_()
            return lambda: torch_autograd_gradient(leaf, xl, ttrue, p, iterations)
        if name == "torch.compile core":
            compiled = torch.compile(_core(model_of, steps, iterations))
            compiled(tK, txt, ttrue)
            return lambda: compiled(tK, txt, ttrue)
    if name.startswith("jax"):
        try:
            import jax
            import jax.numpy as jnp
        except ImportError as err:
            raise SkipNotImplemented("jax is not installed") from err
        jK, jxt, jtrue = (jnp.asarray(a) for a in (K, xt, x_true))
        if name == "jax.jit core":
            fn = jax.jit(_core(model_of, steps, iterations))
        elif name == "jax.jit layer":
            from pdunroll.jax import unrolled

            def loss(Kb, x):
                d = unrolled(model_of(Kb), x, iterations=iterations, steps=steps) - jtrue
                return 0.5 * jnp.sum(d * d)

            grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))

            def fn(Kb, x, _):
                return grad(Kb, x)
        else:
            from .baselines import jax_grad_function

            fn = jax_grad_function(p, iterations)
        jax.block_until_ready(fn(jK, jxt, jtrue))
        return lambda: jax.block_until_ready(fn(jK, jxt, jtrue))
    if name == "TF graph":
        fn = tf_full_gradient(p, iterations)
        import tensorflow as tf

        tK, txt, ttrue = (tf.constant(a) for a in (K, xt, x_true))
        fn(tK, txt, ttrue)
        return lambda: [t.numpy() for t in fn(tK, txt, ttrue)]
    raise ValueError(f"unknown implementation {name!r}")


def tf_full_gradient(p, iterations: int):
    """``tf.function`` (a graph, not XLA) of L CP steps and the full reverse recursion
    (δ_P, δ_D, δ̄_D and ∇_K = Σ σ δ_D x̄ᵀ − τ y δ_Pᵀ), returning (ℓ, ∇_K, ∇_x̃)."""
    try:
        import tensorflow as tf
    except ImportError as err:
        raise SkipNotImplemented("tensorflow is not installed") from err
    sigma, tau, theta, eta = p.sigma, p.tau, p.theta, p.radius

    @tf.function
    def grad(K, xt, x_true):
        r = tf.zeros_like(xt)
        r_bar = r
        y = tf.zeros((xt.shape[0], K.shape[0]), dtype=xt.dtype)
        tape = []
        for _ in range(iterations):
            x_bar = xt + r_bar
            z_d = y + sigma * tf.matmul(x_bar, K, transpose_b=True)
            y = tf.clip_by_value(z_d, -1.0, 1.0)
            z_p = r - tau * tf.matmul(y, K)
            r_new = tf.clip_by_value(z_p, -eta, eta)
            tape.append((x_bar, y, tf.abs(z_d) <= 1.0, tf.abs(z_p) <= eta))
            r_bar = r_new + theta * (r_new - r)
            r = r_new
        g = xt + r - x_true
        zero_p, zero_d = tf.zeros_like(xt), tf.zeros_like(y)
        d_p, d_d, d_dbar, sum_d = g, zero_d, zero_d, zero_d
        grad_k = tf.zeros_like(K)
        for x_bar, y_k, mask_d, mask_p in reversed(tape):
            d_p = tf.where(mask_p, d_p + sigma * tf.matmul(d_dbar, K), zero_p)
            d_new = tf.where(mask_d, d_d - tau * tf.matmul(d_p, K, transpose_b=True), zero_d)
            d_dbar = d_new + theta * (d_new - d_d)
            d_d = d_new
            sum_d = sum_d + d_d
            grad_k = grad_k + tf.matmul(sigma * d_d, x_bar, transpose_a=True) \
                - tf.matmul(tau * y_k, d_p, transpose_a=True)
        return 0.5 * tf.reduce_sum(g * g), grad_k, g + sigma * tf.matmul(sum_d, K)

    return grad


class LayersParity:
    """Time of one full gradient (b = L) at the speech size, float32, per implementation."""

    params = (IMPLEMENTATIONS, [10, 100])
    param_names = ["implementation", "L"]
    timeout = 600

    def setup(self, name, iterations):
        self.fn = build(name, iterations)

    def time_gradient(self, name, iterations):
        self.fn()
