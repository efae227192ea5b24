"""Shared pieces of the benchmark suite: backends, the speech problem, memory measurement.

The suite measures the working tree's ``src/pdunroll`` (put first on ``sys.path`` here), not an
installed copy. Problems are built in NumPy float64 and moved to each backend, so every
implementation (library, torch.autograd, jax.grad, plain loops) solves the same problem with the
same step sizes σ, τ, θ.
"""

from __future__ import annotations

import ctypes
import gc
import math
import os
import sys
import time
import timeit
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:
    from asv_runner.benchmarks.mark import SkipNotImplemented
except ImportError:  # importable without asv (tests/test_benchmark_baselines.py)

    class SkipNotImplemented(NotImplementedError):
        """asv's "skip this parameter combination" (asv treats NotImplementedError alike)."""

_SRC = Path(__file__).resolve().parents[2] / "src"
if str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

import pdunroll as pu  # noqa: E402
from pdunroll.unroll import reverse as _reverse  # noqa: E402
from pdunroll.unroll.forward import forward  # noqa: E402, F401 - the CP loop of every gradient

# numbers (entries of both factors) per ∇_K product in the hand-written loops: as pdunroll's
NUMBERS_PER_PRODUCT = getattr(_reverse, "_NUMBERS_PER_PRODUCT", 2**18)

LIBRARY_BACKENDS = ["numpy", "torch", "array_api_strict", "torch_cuda", "cupy"]
DTYPES = ["float32", "float64"]
# the gradient methods as asv parameters: names (asv keys results by them, and report.py reads
# them), turned into method objects by gradient_method()
MODES = ["full", "truncated", "asymptotic"]
ITERATIONS = [10, 100, 1000]
B_STEPS = 30  # back-iterations b of the truncated and asymptotic methods (EUSIPCO: b = 30)


# Timer of every time_ benchmark: wall clock by default; PDUNROLL_BENCH_TIMER=process measures the
# process's CPU time instead (robust to other processes on a shared machine when the BLAS and
# torch run single-threaded; meaningless for GPU runs, which wait for the device).
TIMER = time.process_time if os.environ.get("PDUNROLL_BENCH_TIMER") == "process" \
    else timeit.default_timer


def gradient_method(mode: str, iterations: int) -> pu.GradientMethod:
    """The gradient method named ``mode`` at L = ``iterations``: ``Full()``,
    ``Truncated(min(30, L))`` or ``Asymptotic(30)``."""
    if mode == "full":
        return pu.Full()
    if mode == "truncated":
        return pu.Truncated(min(B_STEPS, iterations))
    if mode == "asymptotic":
        return pu.Asymptotic(B_STEPS)
    raise ValueError(f"unknown gradient method {mode!r}: expected one of {MODES}")


# --------------------------------------------------------------------------- backends


@dataclass
class Backend:
    """An array backend: namespace, device, NumPy → backend conversion and a device sync."""

    name: str
    xp: object
    device: object = None

    def asarray(self, a: np.ndarray, dtype: str):
        a = np.asarray(a, dtype=np.dtype(dtype))
        if self.name == "array_api_strict":
            return self.xp.asarray(a, dtype=getattr(self.xp, dtype))
        return self.xp.asarray(a, device=self.device)

    def sync(self) -> None:
        """Wait for queued GPU work (a no-op on the CPU): call it inside every timed region."""
        if self.name == "torch_cuda":
            import torch

            torch.cuda.synchronize()
        elif self.name == "cupy":
            import cupy

            cupy.cuda.get_current_stream().synchronize()


def backend(name: str) -> Backend:
    """The backend ``name``, or asv's SkipNotImplemented when it (or its GPU) is missing."""
    if name == "numpy":
        import array_api_compat.numpy as xp

        return Backend(name, xp)
    if name == "array_api_strict":
        try:
            import array_api_strict as xp
        except ImportError as err:
            raise SkipNotImplemented("array_api_strict is not installed") from err
        return Backend(name, xp)
    if name in ("torch", "torch_cuda"):
        try:
            import array_api_compat.torch as xp
            import torch
        except ImportError as err:
            raise SkipNotImplemented("torch is not installed") from err
        if name == "torch":
            return Backend(name, xp, "cpu")
        if not torch.cuda.is_available():
            raise SkipNotImplemented("torch CUDA: no GPU on this machine")
        torch.backends.cuda.matmul.allow_tf32 = False
        return Backend(name, xp, "cuda")
    if name == "cupy":
        try:
            import cupy

            cupy.cuda.runtime.getDeviceCount()
        except Exception as err:  # noqa: BLE001 - not installed or no usable GPU
            raise SkipNotImplemented(f"cupy: not installed or no GPU ({err})") from err
        import array_api_compat.cupy as xp

        return Backend(name, xp)
    raise ValueError(f"unknown backend {name!r}")


def nbytes(a) -> int:
    """Bytes held by one array of any backend."""
    if hasattr(a, "element_size"):  # torch
        return a.element_size() * a.numel()
    if hasattr(a, "nbytes"):
        return int(a.nbytes)
    return math.prod(a.shape) * np.dtype(str(a.dtype)).itemsize  # array_api_strict


# --------------------------------------------------------------------------- problems


@dataclass
class SpeechProblem:
    """The published speech setting: batch 32, n = m = 320, L1Norm + LinfBall(1/16), ω = 10."""

    K: np.ndarray
    x_tilde: np.ndarray
    x_true: np.ndarray
    sigma: float
    tau: float
    theta: float
    radius: float
    op_norm: float


def speech_problem(batch: int = 32, n: int = 320, bitrate: int = 4, omega: float = 10.0,
                   seed: int = 0) -> SpeechProblem:
    """Synthetic voiced-speech frames (harmonics of a random pitch at 16 kHz plus noise, random
    level), quantized at ``bitrate``; K = orthonormal DCT-II plus a 1 % random perturbation."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000.0
    f0 = rng.uniform(90.0, 250.0, (batch, 1))
    x = sum(rng.uniform(0.2, 1.0, (batch, 1)) / h
            * np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 2 * np.pi, (batch, 1)))
            for h in range(1, 9))
    x = x + 0.02 * rng.standard_normal((batch, n))
    x = x / np.max(np.abs(x), axis=1, keepdims=True) * rng.uniform(0.2, 1.0, (batch, 1))
    K = pu.dct_matrix(n) + 0.01 * rng.standard_normal((n, n))
    norm = float(np.linalg.norm(K, 2))
    steps = pu.StepRule(omega=omega).for_norm(norm)
    return SpeechProblem(K, pu.quantize(x, bitrate), x, steps.sigma, steps.tau, 1.0,
                         1.0 / 2**bitrate, norm)


# --------------------------------------------------------------------------- memory


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise SkipNotImplemented(f"/proc/self/status has no {field}")


def peak_rss_delta(fn) -> int:
    """Peak resident memory during ``fn()`` above the resident memory before it, in bytes.

    Linux only: frees what the allocator caches (``malloc_trim``), resets the process's
    high-water mark (``/proc/self/clear_refs`` = 5), runs ``fn`` and reads VmHWM − VmRSS(before).
    Counts every allocation of every CPU library (NumPy, torch, XLA) at page granularity.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError as err:
        raise SkipNotImplemented(f"cannot reset the peak RSS here ({err})") from err
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    result = fn()
    peak = _status_kib("VmHWM")
    del result
    return 1024 * (peak - before)


def peak_cuda_delta(fn) -> int:
    """Peak bytes allocated by torch's CUDA allocator during ``fn()`` above what was allocated."""
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    result = fn()
    torch.cuda.synchronize()
    del result
    return torch.cuda.max_memory_allocated() - before


def peak_bytes(backend_name: str, fn) -> int:
    """The peak-memory measure for ``backend_name``: CUDA allocator peak for torch CUDA, process
    peak RSS delta on the CPU; no measure for cupy (its pool keeps no high-water mark)."""
    if backend_name == "torch_cuda":
        return peak_cuda_delta(fn)
    if backend_name == "cupy":
        raise SkipNotImplemented("cupy's memory pool records no peak")
    return peak_rss_delta(fn)


class _Timed:
    """asv settings of every timed benchmark: one call per sample, no warm-up (setup warms up),
    the suite's TIMER. (A leading underscore keeps asv from collecting a base class itself.)"""

    number = 1
    warmup_time = 0.0
    timer = TIMER
    timeout = 600


class _LibraryGradient(_Timed):
    """Time and peak memory of ``pu.gradient(self.model, self.xt, self.x, **self.kwargs)`` on
    backend ``self.be`` (a subclass's ``setup`` sets them), synchronised with the device."""

    def _run(self):
        res = pu.gradient(self.model, self.xt, self.x, **self.kwargs)
        self.be.sync()
        return res

    def time_gradient(self, *args):
        self._run()

    def track_peak_memory(self, *args):
        return peak_bytes(self.be.name, self._run)

    track_peak_memory.unit = "bytes"
