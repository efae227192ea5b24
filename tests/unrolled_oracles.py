"""torch.autograd oracles for models with any pdunroll operator and functions: the unrolled loop
(pdunroll.unroll.forward.forward, or the same steps with the state detached before the last b steps)
differentiated by autograd, and the asymptotic gradient as b autograd VJPs of one CP step at the
final iterate (docs, Mathematics: "Truncated and asymptotic gradients"). Callers build the model
from torch leaves with requires_grad."""

from __future__ import annotations

from pdunroll.unroll.forward import forward


def unrolled_loss(model, x_tilde, x_true, steps, iterations, *, alphas=None, window=None):
    """ℓ = ½‖x̂ − x†‖² after L CP steps; ``window=b`` detaches the state (and the ergodic sum)
    before the last b steps, so autograd gives the truncated gradient."""
    if window is None:
        state = forward(model, x_tilde, steps, iterations, alphas=alphas)
        r_out = state.r if alphas is None else state.r_avg
    else:
        op, f, g = model.operator, model.f, model.g
        r = g.start(x_tilde * 0)
        r_bar = r
        y = f.conj_start(op.apply(x_tilde) * 0)
        r_out = None
        for k in range(1, iterations + 1):
            if k == iterations - window + 1:
                r, r_bar, y = r.detach(), r_bar.detach(), y.detach()
                r_out = None if r_out is None else r_out.detach()
            y = f.conj_prox(y + steps.sigma * op.apply(x_tilde + r_bar), steps.sigma)
            r_new = g.prox(r - steps.tau * op.adjoint(y), steps.tau)
            r_bar = r_new + steps.theta * (r_new - r)
            r = r_new
            if alphas is not None:
                r_out = alphas[k - 1] * r if r_out is None else r_out + alphas[k - 1] * r
        r_out = r if alphas is None else r_out
    diff = x_tilde + r_out - x_true
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
        state = forward(model, x_tilde, steps, iterations - 1)
        r0, y0 = state.r, state.y
        rbar0 = r0 + theta * (r0 - state.r_prev) if iterations > 1 else r0
        last = forward(model, x_tilde, steps, iterations)
        x_hat = x_tilde + last.r
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
