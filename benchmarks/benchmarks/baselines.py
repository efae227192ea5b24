"""Reference implementations of the same unrolled Chambolle-Pock gradient, for comparison.

All solve the speech problem (F = ‖·‖₁ so prox_{σF*} = clip to [−1, 1], G = indicator of
{‖r‖_∞ ≤ η}) with L steps and return (loss, ∇_K ℓ, ∇_x̃ ℓ) for ℓ = ½‖x̂ − x†‖²:

* ``torch_autograd``: a plain torch loop differentiated by torch.autograd;
* ``jax_grad``: ``jax.jit(jax.value_and_grad(...))`` of a ``lax.scan`` loop;
* ``plain_numpy`` / ``plain_torch``: pdunroll's hand-written recursion (DESIGN §3) written
  directly in NumPy / torch without the array-API layer: the same tape (x̄^{k−1}, y^k, two boolean
  masks), the same ∇_K products in chunks of ``NUMBERS_PER_PRODUCT`` entries, no in-place updates;
* ``floor_*``: only the matrix products of a full gradient: per step 2 forward (K x̄, Kᵀ y),
  2 backward (K δ_P, Kᵀ δ̄_D) and the ∇_K outer products, batched as the recursion batches them.
"""

from __future__ import annotations

import numpy as np

from .common import NUMBERS_PER_PRODUCT, SpeechProblem

# --------------------------------------------------------------------------- plain NumPy


def plain_numpy_forward(K, xt, p: SpeechProblem, iterations: int, keep: bool):
    """L CP steps; with ``keep`` also the tape of every step."""
    sigma, tau, theta, eta = p.sigma, p.tau, p.theta, p.radius
    r = np.zeros_like(xt)
    r_bar = r
    y = np.zeros((xt.shape[0], K.shape[0]), dtype=xt.dtype)
    tape = []
    for _ in range(iterations):
        x_bar = xt + r_bar
        z_d = y + sigma * (x_bar @ K.T)
        y = np.clip(z_d, -1.0, 1.0)
        z_p = r - tau * (y @ K)
        r_new = np.clip(z_p, -eta, eta)
        if keep:
            tape.append((x_bar, y, np.abs(z_d) <= 1.0, np.abs(z_p) <= eta))
        r_bar = r_new + theta * (r_new - r)
        r = r_new
    return r, tape


def plain_numpy_gradient(K, xt, x_true, p: SpeechProblem, iterations: int):
    sigma, tau, theta = p.sigma, p.tau, p.theta
    r, tape = plain_numpy_forward(K, xt, p, iterations, keep=True)
    g = xt + r - x_true
    loss = 0.5 * float(np.sum(g * g))
    grad_k = np.zeros_like(K)
    rows_a, rows_b, numbers = [], [], 0
    d_p, d_d, d_dbar, sum_d = g, None, None, None
    while tape:
        x_bar, y, mask_d, mask_p = tape.pop()
        v = d_p if d_dbar is None else d_p + sigma * (d_dbar @ K)
        d_p = np.where(mask_p, v, 0.0)
        w = -tau * (d_p @ K.T) if d_d is None else d_d - tau * (d_p @ K.T)
        d_new = np.where(mask_d, w, 0.0)
        d_dbar = (1 + theta) * d_new if d_d is None else d_new + theta * (d_new - d_d)
        d_d = d_new
        sum_d = d_d if sum_d is None else sum_d + d_d
        rows_a += [sigma * d_d, -tau * y]
        rows_b += [x_bar, d_p]
        numbers += 2 * (d_d.size + x_bar.size)
        if numbers >= NUMBERS_PER_PRODUCT or not tape:
            grad_k = grad_k + np.concatenate(rows_a).T @ np.concatenate(rows_b)
            rows_a, rows_b, numbers = [], [], 0
    return loss, grad_k, g + sigma * (sum_d @ K)


# --------------------------------------------------------------------------- plain torch


def plain_torch_forward(K, xt, p: SpeechProblem, iterations: int, keep: bool):
    import torch

    sigma, tau, theta, eta = p.sigma, p.tau, p.theta, p.radius
    r = torch.zeros_like(xt)
    r_bar = r
    y = torch.zeros((xt.shape[0], K.shape[0]), dtype=xt.dtype, device=xt.device)
    tape = []
    for _ in range(iterations):
        x_bar = xt + r_bar
        z_d = y + sigma * (x_bar @ K.T)
        y = torch.clamp(z_d, -1.0, 1.0)
        z_p = r - tau * (y @ K)
        r_new = torch.clamp(z_p, -eta, eta)
        if keep:
            tape.append((x_bar, y, torch.abs(z_d) <= 1.0, torch.abs(z_p) <= eta))
        r_bar = r_new + theta * (r_new - r)
        r = r_new
    return r, tape


def plain_torch_gradient(K, xt, x_true, p: SpeechProblem, iterations: int):
    import torch

    sigma, tau, theta = p.sigma, p.tau, p.theta
    with torch.no_grad():
        r, tape = plain_torch_forward(K, xt, p, iterations, keep=True)
        g = xt + r - x_true
        loss = 0.5 * float(torch.sum(g * g))
        grad_k = torch.zeros_like(K)
        rows_a, rows_b, numbers = [], [], 0
        d_p, d_d, d_dbar, sum_d = g, None, None, None
        while tape:
            x_bar, y, mask_d, mask_p = tape.pop()
            v = d_p if d_dbar is None else d_p + sigma * (d_dbar @ K)
            d_p = torch.where(mask_p, v, 0.0)
            w = -tau * (d_p @ K.T) if d_d is None else d_d - tau * (d_p @ K.T)
            d_new = torch.where(mask_d, w, 0.0)
            d_dbar = (1 + theta) * d_new if d_d is None else d_new + theta * (d_new - d_d)
            d_d = d_new
            sum_d = d_d if sum_d is None else sum_d + d_d
            rows_a += [sigma * d_d, -tau * y]
            rows_b += [x_bar, d_p]
            numbers += 2 * (d_d.numel() + x_bar.numel())
            if numbers >= NUMBERS_PER_PRODUCT or not tape:
                grad_k = grad_k + torch.cat(rows_a).T @ torch.cat(rows_b)
                rows_a, rows_b, numbers = [], [], 0
        return loss, grad_k, g + sigma * (sum_d @ K)


# --------------------------------------------------------------------------- torch.autograd


def torch_autograd_loss(K, xt, x_true, p: SpeechProblem, iterations: int):
    """ℓ of the plain unrolled torch loop, with the autograd graph (K and x̃ require grad)."""
    import torch

    sigma, tau, theta, eta = p.sigma, p.tau, p.theta, p.radius
    r = torch.zeros_like(xt)
    r_bar = r
    y = torch.zeros((xt.shape[0], K.shape[0]), dtype=xt.dtype, device=xt.device)
    for _ in range(iterations):
        y = torch.clamp(y + sigma * ((xt + r_bar) @ K.T), -1.0, 1.0)
        r_new = torch.clamp(r - tau * (y @ K), -eta, eta)
        r_bar = r_new + theta * (r_new - r)
        r = r_new
    d = xt + r - x_true
    return 0.5 * torch.sum(d * d)


def torch_autograd_gradient(K, xt, x_true, p: SpeechProblem, iterations: int):
    import torch

    loss = torch_autograd_loss(K, xt, x_true, p, iterations)
    grad_k, grad_x = torch.autograd.grad(loss, (K, xt))
    return float(loss.detach()), grad_k, grad_x


def torch_autograd_saved_bytes(K, xt, x_true, p: SpeechProblem, iterations: int) -> int:
    """Bytes of the tensors autograd saves for the backward pass (distinct storages, without the
    parameter K itself), recorded with ``torch.autograd.graph.saved_tensors_hooks``."""
    import torch

    seen = {}
    skip = {K.untyped_storage().data_ptr()}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = torch_autograd_loss(K, xt, x_true, p, iterations)
    del loss
    return sum(seen.values())


# --------------------------------------------------------------------------- jax


def jax_grad_function(p: SpeechProblem, iterations: int):
    """``jit(value_and_grad(ℓ, argnums=(K, x̃)))`` of a ``lax.scan`` CP loop (compiled on first
    call: call it once before timing)."""
    import jax
    import jax.numpy as jnp

    sigma, tau, theta, eta = p.sigma, p.tau, p.theta, p.radius

    def loss(K, xt, x_true):
        def step(carry, _):
            r, r_bar, y = carry
            y = jnp.clip(y + sigma * ((xt + r_bar) @ K.T), -1.0, 1.0)
            r_new = jnp.clip(r - tau * (y @ K), -eta, eta)
            return (r_new, r_new + theta * (r_new - r), y), None

        zero_r = jnp.zeros_like(xt)
        zero_y = jnp.zeros((xt.shape[0], K.shape[0]), dtype=xt.dtype)
        (r, _, _), _ = jax.lax.scan(step, (zero_r, zero_r, zero_y), None, length=iterations)
        d = xt + r - x_true
        return 0.5 * jnp.sum(d * d)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


# --------------------------------------------------------------------------- matmul floors


def floor_arrays(cat, K, xt, iterations: int):
    """Operands of :func:`floor_forward` / :func:`floor_gradient`: a (batch, m) dual-like array
    and two stacks of rows for the ∇_K products (``cat`` = np.concatenate or torch.cat)."""
    batch = xt.shape[0]
    y = K[:batch] * 1.0
    rows = min(2 * batch * iterations, NUMBERS_PER_PRODUCT // (K.shape[0] + K.shape[1]))
    reps = -(-rows // batch)
    return y, cat([y] * reps)[:rows], cat([xt] * reps)[:rows]


def _row_major_transpose(K):
    """Kᵀ copied row by row (NumPy or torch), as pdunroll's scaled operator σK holds it: OpenBLAS
    multiplies by it 1.5 × faster than by the transposed view ``K.T`` at the speech size."""
    return K.T.reshape(-1).reshape(K.shape[1], K.shape[0])


def floor_forward(K, xt, y, iterations: int):
    """The 2L products of L forward steps: K x̄ (as x̄ Kᵀ, Kᵀ row-major) and Kᵀ y (as y K)."""
    kt = _row_major_transpose(K)
    for _ in range(iterations):
        u = xt @ kt
        v = y @ K
    return u, v


def floor_gradient(K, xt, y, stack_a, stack_b, iterations: int):
    """The products of a full gradient: 2L forward, 2L backward (K x as x Kᵀ with Kᵀ
    row-major, Kᵀ y as y K) and the ∇_K outer products of 2·batch·L rows in chunks as the
    recursion makes them."""
    kt = _row_major_transpose(K)
    for _ in range(2 * iterations):
        u = xt @ kt
        v = y @ K
    rows_left = 2 * xt.shape[0] * iterations
    while rows_left > 0:
        rows = min(rows_left, stack_a.shape[0])
        w = stack_a[:rows].T @ stack_b[:rows]
        rows_left -= rows
    return u, v, w
