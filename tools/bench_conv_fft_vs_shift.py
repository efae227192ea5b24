"""Time two array-API implementations of a periodic 2-D filter bank (apply + adjoint + param_vjp):
FFT (xp.fft.rfftn) against shifted slices contracted in one matrix product (the library's).

    PYTHONPATH=src python tools/bench_conv_fft_vs_shift.py [--size 256] [--filters 48] [--k 7]

The library's Conv2dFilterBank uses the faster of the two (shifted slices); this script keeps
the numbers reproducible. The FFT variant below is the alternative that was measured.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def fft_maps(xp, h, shape):
    """apply, adjoint, param_vjp of periodic correlation (K x)_c[i] = Σ_p h_c[p] x[i + p − a]."""
    C, kh, kw = h.shape
    H, W = shape
    a, b = (kh - 1) // 2, (kw - 1) // 2
    dt, dev = h.dtype, h.device
    hp = xp.concat([h, xp.zeros((C, kh, W - kw), dtype=dt, device=dev)], axis=2)
    hp = xp.concat([hp, xp.zeros((C, H - kh, W), dtype=dt, device=dev)], axis=1)
    hp = xp.roll(hp, shift=(-a, -b), axis=(1, 2))
    spec = xp.fft.rfftn(hp, axes=(-2, -1))
    cspec = xp.conj(spec)

    def apply(x):
        X = xp.fft.rfftn(x, axes=(-2, -1))
        return xp.fft.irfftn(X[:, None] * cspec, s=shape, axes=(-2, -1))

    def adjoint(y):
        Y = xp.fft.rfftn(y, axes=(-2, -1))
        return xp.fft.irfftn(xp.sum(Y * spec, axis=1), s=shape, axes=(-2, -1))

    def param_vjp(r, x):
        R = xp.fft.rfftn(r, axes=(-2, -1))
        X = xp.fft.rfftn(x, axes=(-2, -1))
        full = xp.fft.irfftn(xp.sum(xp.conj(R) * X[:, None], axis=0), s=shape, axes=(-2, -1))
        return xp.roll(full, shift=(a, b), axis=(1, 2))[:, :kh, :kw]

    return apply, adjoint, param_vjp


def shift_maps(xp, h, shape):
    """The library's maps: shifted slices of the extended image, one matrix product."""
    from pdunroll import Conv2dFilterBank

    op = Conv2dFilterBank(h, shape, "periodic")
    return op.apply, op.adjoint, op.param_vjp


def bench(xp, name, maps, h, x, repeats):
    apply, adjoint, vjp = maps(xp, h, tuple(x.shape[1:]))
    y = apply(x)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        y = apply(x)
        adjoint(y)
        vjp(y, x)
        best = min(best, time.perf_counter() - t0)
    return y, best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--filters", type=int, default=48)
    ap.add_argument("--k", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    h0 = rng.standard_normal((args.filters, args.k, args.k))
    x0 = rng.standard_normal((args.batch, args.size, args.size))
    import array_api_compat.numpy as xnp

    backends = [("numpy", xnp, lambda a: a)]
    try:
        import array_api_compat.torch as xt
        import torch

        backends.append(("torch-cpu", xt, torch.asarray))
    except ImportError:
        pass
    for name, xp, conv in backends:
        for dt in ("float64", "float32"):
            h, x = conv(h0.astype(dt)), conv(x0.astype(dt))
            y1, t_fft = bench(xp, name, fft_maps, h, x, args.repeats)
            y2, t_shift = bench(xp, name, shift_maps, h, x, args.repeats)
            diff = float(np.max(np.abs(np.asarray(y1) - np.asarray(y2))))
            print(f"{name:9s} {dt}: fft {1e3 * t_fft:8.1f} ms   shift {1e3 * t_shift:8.1f} ms   "
                  f"(max |difference| {diff:.1e})")


if __name__ == "__main__":
    main()
