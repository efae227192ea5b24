"""torch.autograd oracles for models with any pdunroll operator and functions: the unrolled
Chambolle-Pock loop written out here from the docs' Mathematics page ("The unrolled solver"),
not the library's forward pass, differentiated by autograd (also with the state detached before
the last b steps), and the asymptotic gradient as b autograd VJPs of one CP step at the final
iterate (docs, Mathematics: "Truncated and asymptotic gradients"). Callers build the model from
torch leaves with requires_grad. Only the functions' own step maps (prox, conjugate prox and
their Bregman variants, tested on their own) are shared with the library."""

from __future__ import annotations


def iterate(model, x_tilde, steps, iterations, *, alphas=None, window=None):
    """L steps from r⁰ = r̄⁰ = 0 (the functions' interior start for Bregman steps), y⁰ = 0:

        y^k = argmin_y σF*(y) − σ⟨K(x̃ + r̄^{k−1}), y⟩ + D(y, y^{k−1})   (prox_{σF*} for D = ½‖·‖²)
        r^k = argmin_r τG(r) + τ⟨Kᵀy^k, r⟩ + D(r, r^{k−1})             (prox_{τG})

    (the functions' steps take the scaled directions σ K(x̃ + r̄^{k−1}) and −τ Kᵀ y^k)
        r̄^k = r^k + θ(r^k − r^{k−1})

    Returns (r^L, r^{L−1}, y^L, Σ α_k r^k or None); ``window=b`` detaches the state and the
    ergodic sum before the last b steps."""
    op, f, g = model.operator, model.f, model.g
    sigma, tau, theta = steps.sigma, steps.tau, steps.theta
    r = g.start(x_tilde * 0)
    r_bar, r_prev = r, r
    y = f.conj_start(op.apply(x_tilde) * 0)
    r_sum = None
    for k in range(1, iterations + 1):
        if window is not None and k == iterations - window + 1:
            r, r_bar, y = r.detach(), r_bar.detach(), y.detach()
            r_sum = None if r_sum is None else r_sum.detach()
        y = f.conj_prox_step(y, sigma * op.apply(x_tilde + r_bar), sigma)
        r_prev, r = r, g.prox_step(r, -tau * op.adjoint(y), tau)
        r_bar = r + theta * (r - r_prev)
        if alphas is not None:
            r_sum = alphas[k - 1] * r if r_sum is None else r_sum + alphas[k - 1] * r
    return r, r_prev, y, r_sum


def unrolled_loss(model, x_tilde, x_true, steps, iterations, *, alphas=None, window=None):
    """ℓ = ½‖x̂ − x†‖² with x̂ = x̃ + r^L (x̃ + Σ α_k r^k for ergodic weights) after L steps of
    :func:`iterate`; ``window=b`` detaches the state before the last b steps, so autograd gives
    the truncated gradient."""
    r, _, _, r_sum = iterate(model, x_tilde, steps, iterations, alphas=alphas, window=window)
    diff = x_tilde + (r if alphas is None else r_sum) - x_true
    return 0.5 * (diff * diff).sum()


def asymptotic_grads(model, x_tilde, x_true, steps, iterations, b, leaves, detached_operator):
    """The asymptotic gradient by autograd: b reverse passes through one CP step T at the inputs
    of step L, output cotangents starting at (r: g, r̄: 0, y: 0) and fed back as the next
    outputs' cotangents, summing the cotangents of ``leaves`` (and of x̃). The operator-parameter
    term of z_D is taken at x̂ (as the asymptotic gradient prescribes) by adding the zero-valued
    σ(K x̂ − K_det x̂), where ``detached_operator`` is K with detached parameters."""
    import torch

    sigma, tau, theta = steps.sigma, steps.tau, steps.theta
    with torch.no_grad():
        r0, r0_prev, y0, _ = iterate(model, x_tilde, steps, iterations - 1)
        rbar0 = r0 + theta * (r0 - r0_prev) if iterations > 1 else r0
        x_hat = x_tilde + iterate(model, x_tilde, steps, iterations)[0]
    r_in, rbar_in, y_in = (t.detach().clone().requires_grad_(True) for t in (r0, rbar0, y0))
    xt = x_tilde.detach().clone().requires_grad_(True)
    op, op_det = model.operator, detached_operator
    z_d = (y_in + sigma * op_det.apply(xt + rbar_in)
           + sigma * (op.apply(x_hat) - op_det.apply(x_hat)))
    y = model.f.conj_prox(z_d, sigma)
    r = model.g.prox(r_in - tau * op.adjoint(y), tau)
    rbar = r + theta * (r - r_in)
    cot = (x_hat - x_true, torch.zeros_like(rbar), torch.zeros_like(y))
    totals = [None] * (len(leaves) + 1)
    for _ in range(b):
        grads = torch.autograd.grad((r, rbar, y), (r_in, rbar_in, y_in, xt, *leaves),
                                    grad_outputs=cot, retain_graph=True, allow_unused=True)
        cot = grads[:3]
        for i, gr in enumerate(grads[3:]):
            if gr is not None:
                totals[i] = gr if totals[i] is None else totals[i] + gr
    grad_x = x_hat - x_true + totals[0]
    return float(0.5 * ((x_hat - x_true) ** 2).sum()), grad_x, totals[1:]
