"""Independent references for the tests: a plain torch loop of the unrolled Chambolle-Pock
algorithm differentiated by torch.autograd, and central finite differences."""

from __future__ import annotations

import numpy as np


def torch_unrolled(K, x_tilde, x_true, *, iterations, sigma, tau, theta, f, g, radius=None,
                   weights=None, window=None):
    """ℓ = ½‖x̂ − x†‖² after L plain CP steps written directly in torch (no pdunroll code), and its
    autograd gradients w.r.t. K and x̃. ``f`` in {"l1"}, ``g`` in {"linf", "l2ball",
    "squared", "linf_identity_jacobian"} (the last: the ℓ∞-ball clip whose Jacobian autograd
    sees as the identity); ``window=b`` detaches the state before the last b steps (truncated BP);
    ``weights`` are the ergodic α_k (x̂ = x̃ + Σ α_k r^k)."""
    import torch

    K = torch.tensor(K, dtype=torch.float64, requires_grad=True)
    xt = torch.tensor(x_tilde, dtype=torch.float64, requires_grad=True)
    xd = torch.tensor(x_true, dtype=torch.float64)
    r = torch.zeros_like(xt)
    r_bar = r
    y = torch.zeros(xt.shape[0], K.shape[0], dtype=torch.float64)
    out = 0
    for k in range(1, iterations + 1):
        if window is not None and k == iterations - window + 1:
            r, r_bar, y = r.detach(), r_bar.detach(), y.detach()
            out = out.detach() if weights is not None and k > 1 else out
        z_d = y + sigma * (xt + r_bar) @ K.T
        assert f == "l1"
        y = torch.clamp(z_d, -1.0, 1.0)
        z_p = r - tau * y @ K
        if g == "linf":
            r_new = torch.clamp(z_p, -radius, radius)
        elif g == "linf_identity_jacobian":  # the clip forward, the identity backward
            r_new = z_p + (torch.clamp(z_p, -radius, radius) - z_p).detach()
        elif g == "l2ball":
            nrm = torch.linalg.vector_norm(z_p, dim=1, keepdim=True)
            r_new = torch.where(nrm > radius, z_p * radius / nrm, z_p)
        elif g == "squared":
            r_new = z_p / (1 + tau)
        else:
            raise ValueError(g)
        r_bar = r_new + theta * (r_new - r)
        r = r_new
        if weights is not None:
            out = out + weights[k - 1] * r
    x_hat = xt + (r if weights is None else out)
    loss = 0.5 * torch.sum((x_hat - xd) ** 2)
    gK, gx = torch.autograd.grad(loss, (K, xt))
    return float(loss.detach()), gK.numpy(), gx.numpy()


def directional_fd(fun, x, v, eps=1e-6):
    """Central difference (fun(x + εv) − fun(x − εv)) / 2ε of a scalar function of an array."""
    return (fun(x + eps * v) - fun(x - eps * v)) / (2 * eps)


def random_direction(shape, seed=1):
    v = np.random.default_rng(seed).standard_normal(shape)
    return v / np.linalg.norm(v)
