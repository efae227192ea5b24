"""Speech dequantization at the published size: batch 32, n = m = 320, DenseOperator,
L1Norm + LinfBall(1/16), ω = 10 (σ, τ fixed from the exact ‖K‖ so every implementation runs the
same iterations).

* ``SpeechGradient``: pdunroll.gradient per backend, dtype, gradient method and L (time, peak
  memory);
* ``SpeechTape``: bytes of the tape pdunroll's reverse pass keeps;
* ``SpeechBaselines``: torch.autograd, jax.grad, the same recursion in plain NumPy / torch, and
  the matrix-product floor of a full gradient;
* ``SpeechForward``: the forward loop alone (pdunroll, plain NumPy / torch, its 2L products).

Times include a device synchronisation. Peak memory (``track_peak_memory``, bytes) is the peak
above the memory held before the call: the process's resident set on the CPU (NumPy, torch and
XLA alike; see ``common.peak_rss_delta``), the CUDA allocator's peak for torch CUDA.
"""

from __future__ import annotations

import numpy as np

from . import baselines as bl
from .common import (
    DTYPES,
    ITERATIONS,
    LIBRARY_BACKENDS,
    MODES,
    SkipNotImplemented,
    _LibraryGradient,
    _Timed,
    backend,
    forward,
    gradient_method,
    nbytes,
    peak_rss_delta,
    pu,
    speech_problem,
)

try:  # imported once in asv's fork server rather than in every benchmark process
    import array_api_compat.torch  # noqa: F401
    import torch
except ImportError:
    torch = None

SPEECH = speech_problem()


def _library_setup(backend_name: str, dtype: str):
    be = backend(backend_name)
    p = SPEECH
    model = pu.AnalysisModel(pu.DenseOperator(be.asarray(p.K, dtype)), pu.L1Norm(),
                             pu.LinfBall(p.radius))
    steps = pu.step_sizes(model.operator, sigma=p.sigma, tau=p.tau, theta=p.theta,
                          op_norm=p.op_norm)
    return be, p, model, steps, be.asarray(p.x_tilde, dtype), be.asarray(p.x_true, dtype)


class SpeechGradient(_LibraryGradient):
    """pdunroll.gradient (hand-written reverse mode) on each backend."""

    params = [LIBRARY_BACKENDS, DTYPES, MODES, ITERATIONS]
    param_names = ["backend", "dtype", "mode", "L"]
    repeat = (3, 10, 15.0)

    def setup(self, backend_name, dtype, mode, L):
        if backend_name == "array_api_strict" and L > 100:
            raise SkipNotImplemented("array_api_strict measures overhead only: L <= 100")
        self.be, p, self.model, steps, self.xt, self.x = _library_setup(backend_name, dtype)
        self.kwargs = dict(iterations=L, method=gradient_method(mode, L), steps=steps)
        pu.gradient(self.model, self.xt, self.x, iterations=2, steps=steps)


class SpeechTape:
    """Bytes of the tape (arrays kept per step for the reverse pass) of pdunroll.gradient: the
    arrays the forward loop leaves in its tape, counted once each (the same on every backend)."""

    params = [DTYPES, MODES, ITERATIONS]
    param_names = ["dtype", "mode", "L"]
    timeout = 600

    def setup(self, dtype, mode, L):
        _, _, self.model, self.steps, self.xt, _ = _library_setup("numpy", dtype)
        method = gradient_method(mode, L)
        self.keep, _ = method.keeps(L)  # what the forward loop keeps for it
        self.L = L

    def track_tape_bytes(self, *args):
        state = forward(self.model, self.xt, self.steps, self.L, keep=self.keep)
        arrays = {}

        def collect(item):
            if isinstance(item, tuple | list):
                for part in item:
                    collect(part)
            elif item is not None and not isinstance(item, int | float):
                arrays[id(item)] = item

        collect(list(state.tape))
        return sum(nbytes(a) for a in arrays.values())

    track_tape_bytes.unit = "bytes"


BASELINES = ["torch_autograd", "jax_grad", "plain_numpy", "plain_torch", "floor_numpy",
             "floor_torch"]


class SpeechBaselines(_Timed):
    """Full-mode gradient (loss, ∇_K, ∇_x̃) by the reference implementations of baselines.py."""

    params = [BASELINES, DTYPES, ITERATIONS]
    param_names = ["implementation", "dtype", "L"]
    repeat = (3, 10, 15.0)

    def setup(self, impl, dtype, L):
        p = SPEECH
        if impl == "jax_grad":
            import jax

            jax.config.update("jax_enable_x64", True)
            import jax.numpy as jnp

            K, xt, x = (jnp.asarray(a, dtype=dtype) for a in (p.K, p.x_tilde, p.x_true))
            fn = bl.jax_grad_function(p, L)

            def make(iterations):  # the scan length is static: compile for L
                return lambda: jax.block_until_ready(fn(K, xt, x))

            warm = make(L)
        elif impl.endswith("numpy"):
            K, xt, x = (np.asarray(a, dtype=dtype) for a in (p.K, p.x_tilde, p.x_true))
            if impl == "plain_numpy":
                def make(iterations):
                    return lambda: bl.plain_numpy_gradient(K, xt, x, p, iterations)
            else:
                def make(iterations):
                    y, sa, sb = bl.floor_arrays(np.concatenate, K, xt, iterations)
                    return lambda: bl.floor_gradient(K, xt, y, sa, sb, iterations)
            warm = make(2)
        else:
            if torch is None:
                raise SkipNotImplemented("torch is not installed")
            K, xt, x = (torch.tensor(a, dtype=getattr(torch, dtype))
                        for a in (p.K, p.x_tilde, p.x_true))
            if impl == "torch_autograd":
                K.requires_grad_(True)
                xt.requires_grad_(True)

                def make(iterations):
                    return lambda: bl.torch_autograd_gradient(K, xt, x, p, iterations)
            elif impl == "plain_torch":
                def make(iterations):
                    return lambda: bl.plain_torch_gradient(K, xt, x, p, iterations)
            else:
                def make(iterations):
                    y, sa, sb = bl.floor_arrays(torch.cat, K, xt, iterations)

                    def run():
                        with torch.no_grad():
                            return bl.floor_gradient(K, xt, y, sa, sb, iterations)
                    return run
            warm = make(2)
        warm()  # lazy initialisation (and jax's compilation) outside the measurement
        self.run = make(L)

    def time_gradient(self, *args):
        self.run()

    def track_peak_memory(self, *args):
        return peak_rss_delta(self.run)

    track_peak_memory.unit = "bytes"


class AutogradSaved:
    """Bytes torch.autograd saves for its backward pass through the unrolled loop (distinct
    storages, K excluded): the autograd counterpart of ``SpeechTape``."""

    params = [DTYPES, ITERATIONS]
    param_names = ["dtype", "L"]
    timeout = 600

    def setup(self, dtype, L):
        if torch is None:
            raise SkipNotImplemented("torch is not installed")
        p = SPEECH
        K, xt, x = (torch.tensor(a, dtype=getattr(torch, dtype))
                    for a in (p.K, p.x_tilde, p.x_true))
        self.args = (K.requires_grad_(True), xt.requires_grad_(True), x, p, L)

    def track_saved_bytes(self, *args):
        return bl.torch_autograd_saved_bytes(*self.args)

    track_saved_bytes.unit = "bytes"


FORWARD_IMPLS = LIBRARY_BACKENDS + ["plain_numpy", "plain_torch", "floor_numpy", "floor_torch"]


class SpeechForward(_Timed):
    """L forward Chambolle-Pock steps, nothing stored (the loop behind pdunroll.chambolle_pock
    and the first half of every gradient), against plain loops and its 2L matrix products."""

    params = [FORWARD_IMPLS, DTYPES, ITERATIONS]
    param_names = ["implementation", "dtype", "L"]
    repeat = (3, 10, 10.0)

    def setup(self, impl, dtype, L):
        if impl == "array_api_strict" and L > 100:
            raise SkipNotImplemented("array_api_strict measures overhead only: L <= 100")
        p = SPEECH
        if impl in LIBRARY_BACKENDS:
            be, p, model, steps, xt, _ = _library_setup(impl, dtype)

            def make(iterations):
                def run():
                    state = forward(model, xt, steps, iterations)
                    be.sync()
                    return state
                return run
        elif impl.endswith("numpy"):
            K, xt = (np.asarray(a, dtype=dtype) for a in (p.K, p.x_tilde))
            y = bl.floor_arrays(np.concatenate, K, xt, 1)[0]
            if impl == "plain_numpy":
                def make(iterations):
                    return lambda: bl.plain_numpy_forward(K, xt, p, iterations, keep=False)
            else:
                def make(iterations):
                    return lambda: bl.floor_forward(K, xt, y, iterations)
        else:
            if torch is None:
                raise SkipNotImplemented("torch is not installed")
            K, xt = (torch.tensor(a, dtype=getattr(torch, dtype)) for a in (p.K, p.x_tilde))
            y = bl.floor_arrays(torch.cat, K, xt, 1)[0]
            if impl == "plain_torch":
                def make(iterations):
                    return lambda: bl.plain_torch_forward(K, xt, p, iterations, keep=False)
            else:
                def make(iterations):
                    return lambda: bl.floor_forward(K, xt, y, iterations)
        make(2)()
        self.run = make(L)

    def time_forward(self, *args):
        self.run()
