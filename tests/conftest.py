"""The backend matrix: every test that takes ``backend`` runs on numpy, array_api_strict (with
its strictest flags, on its default device and on a second one, "device1"), torch CPU, and,
where installed and a GPU exists, torch CUDA, cupy and jax. A backend that is not there is
skipped with its reason. ``dtype`` runs float64 and float32 with per-dtype
tolerances (``tol``)."""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def pytest_collection_modifyitems(config, items):
    """The JAX row carries the marker ``jax``: every test whose id names JAX (the jax backend's
    parameters, the JAX layer's and the JAX-only tests). Eager JAX compiles each primitive once
    per shape and dtype: these 11 % of the tests take half the suite's time, so the README's
    command runs ``-m "not jax"`` and the JAX row is its own command (``-m jax``; CI runs
    both)."""
    for item in items:
        if "jax" in item.nodeid.lower():
            item.add_marker(pytest.mark.jax)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """After each test module: JAX's eager mode compiles every primitive once per shape and
    dtype, torch.compile every graph, and both keep it for the whole process (the suite grew to
    6 GB); compiled code is freed so the suite stays within its 2 GB memory budget."""
    yield
    if "jax" in sys.modules:
        sys.modules["jax"].clear_caches()
    if "torch._dynamo" in sys.modules:
        sys.modules["torch._dynamo"].reset()
SPEECH_DIR = Path(os.environ.get("PDUNROLL_SPEECH_DIR", SHARED / "data" / "ieee_speech"))


@pytest.fixture
def interrupt_training(monkeypatch):
    """``interrupt_training(step)``: from now on :func:`pdunroll.train` stops with
    ``KeyboardInterrupt`` (a Ctrl-C) after training step ``step``, as the command line sees it
    (``how``: another interruption, e.g. a signal sent to the process);
    ``interrupt_training(None)``: it trains to the end again (a resumed run)."""
    import pdunroll.learning.training as training

    real = training.train

    def ctrl_c():
        raise KeyboardInterrupt

    def interrupt_at(step: int | None, how=ctrl_c) -> None:
        def interrupted(*args, **kwargs):
            def stop(info):
                if info["step"] == step:
                    how()
            return real(*args, callback=stop, **kwargs)

        monkeypatch.setattr(training, "train", real if step is None else interrupted)

    return interrupt_at


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory) -> Path:
    """The IEEE speech corpus where it is (``PDUNROLL_SPEECH_DIR``), else a small synthetic
    corpus of the same layout, generated once per session: train/ 12 and dev/ 4 mono 16-bit
    16 kHz wav files of 1 s of synthetic speech, so that the corpus tests run everywhere."""
    if (SPEECH_DIR / "train").is_dir() and (SPEECH_DIR / "dev").is_dir():
        return SPEECH_DIR
    from scipy.io import wavfile

    from pdunroll.data.speech import synthetic_speech

    root = tmp_path_factory.mktemp("synthetic_speech_corpus")
    for part, count, seed in (("train", 12, 1), ("dev", 4, 2)):
        (root / part).mkdir()
        for i, s in enumerate(synthetic_speech(count, seconds=1.0, seed=seed)):
            wavfile.write(root / part / f"S_{part}_{i:02d}_16k.wav", 16000,
                          (s * 30000).astype(np.int16))
    return root


@dataclass
class Backend:
    """One array backend: its namespace ``xp``, the device to create arrays on, converters."""

    name: str
    xp: object
    device: object = None

    def asarray(self, a, dtype=None):
        """A NumPy array (or nested list) moved to this backend and device."""
        a = np.asarray(a)
        if dtype is not None:
            a = a.astype(np.dtype(dtype))
        if self.name.startswith("array_api_strict"):
            return self.xp.asarray(a.tolist(), dtype=getattr(self.xp, str(a.dtype)),
                                   device=self.device)
        return self.xp.asarray(a, device=self.device)

    def to_numpy(self, a) -> np.ndarray:
        if isinstance(a, tuple):
            return tuple(self.to_numpy(p) for p in a)
        if self.name.startswith("torch"):
            return a.detach().cpu().numpy()
        if self.name == "cupy":
            return a.get()
        if self.name.startswith("array_api_strict"):
            if self.device is not None:
                a = self.xp.asarray(a, device=self.xp.Device("CPU_DEVICE"), copy=True)
            return np.asarray(a.__array__()) if hasattr(a, "__array__") else np.from_dlpack(a)
        return np.asarray(a)

    def dtype(self, name: str):
        return getattr(self.xp, name)


def _make(name: str) -> Backend:
    """Build a backend or skip with the reason it is not available."""
    if name == "numpy":
        import array_api_compat.numpy as xp

        return Backend(name, xp)
    if name in ("array_api_strict", "array_api_strict_device1"):
        xp = pytest.importorskip("array_api_strict", reason="array_api_strict is not installed")
        # the strictest flags: the standard's version pdunroll is written against (2023.12),
        # no boolean indexing, no data-dependent shapes, only the extensions it uses
        xp.set_array_api_strict_flags(api_version="2023.12", boolean_indexing=False,
                                      data_dependent_shapes=False,
                                      enabled_extensions=("linalg", "fft"))
        if name == "array_api_strict":
            return Backend(name, xp)
        if not hasattr(xp, "Device"):
            pytest.skip("array_api_strict < 2.2 has no second device")
        return Backend(name, xp, xp.Device("device1"))  # not the default device
    if name in ("torch", "torch_cuda"):
        pytest.importorskip("torch", reason="torch is not installed (pip install torch)")
        import array_api_compat.torch as xp
        import torch

        if name == "torch_cuda":
            if not torch.cuda.is_available():
                pytest.skip("torch CUDA: no GPU on this machine")
            torch.backends.cuda.matmul.allow_tf32 = False  # TF32 would hide float32 errors
            return Backend(name, xp, "cuda")
        return Backend(name, xp, "cpu")
    if name == "cupy":
        cp = pytest.importorskip("cupy", reason="cupy is not installed (needs a CUDA GPU)")
        try:
            cp.cuda.runtime.getDeviceCount()
        except Exception as err:  # noqa: BLE001 - any CUDA failure means: no usable GPU
            pytest.skip(f"cupy: no usable GPU ({err})")
        import array_api_compat.cupy as xp

        return Backend(name, xp)
    if name == "jax":
        pytest.importorskip("jax", reason="jax is not installed (pip install jax)")
        import jax

        jax.config.update("jax_enable_x64", True)
        return Backend(name, importlib.import_module("jax.numpy"))
    raise ValueError(name)


ALL_BACKENDS = ["numpy", "array_api_strict", "array_api_strict_device1", "torch", "torch_cuda",
                "cupy", "jax"]
# PDUNROLL_BACKENDS=numpy,torch restricts the matrix (the nox sessions use it); default: all
BACKENDS = [b for b in os.environ.get("PDUNROLL_BACKENDS", ",".join(ALL_BACKENDS)).split(",") if b]


@pytest.fixture(params=BACKENDS)
def backend(request) -> Backend:
    return _make(request.param)


@pytest.fixture
def numpy_backend() -> Backend:
    return _make("numpy")


@pytest.fixture
def torch_backend() -> Backend:
    return _make("torch")


@pytest.fixture(params=["float64", "float32"])
def dtype(request) -> str:
    return request.param


TOLERANCES = {"float64": {"rtol": 1e-10, "atol": 1e-12}, "float32": {"rtol": 2e-4, "atol": 1e-5}}


@pytest.fixture
def tol(dtype) -> dict:
    """Relative/absolute tolerance for comparing results computed in ``dtype``."""
    return TOLERANCES[dtype]


def relative_error(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))
