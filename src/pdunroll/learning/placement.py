"""Where a run computes: an array library (NumPy, torch, JAX, CuPy), a dtype and a device; the
data sets (read as NumPy float64) and the models are moved there before training (docs,
"Backends and devices": the arrays choose where the library computes)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BACKENDS", "Placement"]

BACKENDS = ("numpy", "torch", "jax", "cupy")


@dataclass(frozen=True)
class Placement:
    """``backend`` (one of :data:`BACKENDS`), ``dtype`` ("float32" or "float64") and
    ``device`` (e.g. "cuda:1"; None: the library's default)."""

    backend: str = "numpy"
    dtype: str = "float64"
    device: str | None = None

    def check(self) -> Placement:
        """Refuse a device that the backend cannot have, before any work."""
        if self.backend == "numpy" and self.device not in (None, "cpu"):
            raise ValueError(f"--device {self.device}: --backend numpy runs on the cpu only")
        return self

    def mover(self):
        """A function moving a NumPy array to this backend, dtype and device."""
        import numpy as np

        name, device, dtype = self.backend, self.device, self.dtype
        self.check()
        try:
            if name == "numpy":
                def move(a):
                    return np.asarray(a, dtype=dtype)
            elif name == "torch":
                import torch

                dev = torch.device(device) if device else None
                torch.empty(0, device=dev)  # a device torch cannot reach fails here, not later

                def move(a):
                    return torch.asarray(np.asarray(a, dtype=dtype), device=dev)
            elif name == "jax":
                import jax

                if dtype == "float64":
                    jax.config.update("jax_enable_x64", True)
                dev = jax.devices(device)[0] if device else None

                def move(a):
                    return jax.device_put(jax.numpy.asarray(np.asarray(a, dtype=dtype)), dev)
            else:
                import cupy

                if device:
                    cupy.cuda.Device(int(device.removeprefix("cuda:"))).use()

                def move(a):
                    return cupy.asarray(np.asarray(a, dtype=dtype))
        except ImportError as err:
            raise ImportError(f"--backend {name} needs the {name} package (pip install "
                              f"{name}): {err}") from err
        # torch without CUDA raises AssertionError; a missing device may dump its dispatcher
        # table: the first line says it
        except (RuntimeError, ValueError, TypeError, AssertionError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"--backend {name} --device {device}: this machine cannot run "
                             f"there ({first})") from err
        return move

    def place(self, model, sets=()):
        """``model`` and the (degraded, clean) pairs of ``sets`` moved here: every array of the
        model's parts (K's parameters, a forward operator's kernel or mask, F's measurements),
        by describing the parts and building them again from the moved arrays
        (:mod:`pdunroll.registry`)."""
        import numpy as np

        from .._array import array_device, to_numpy, xp_of
        from ..model import AnalysisModel
        from ..registry import Reader, Writer, describe, rebuild

        move = self.mover()
        try:
            writer = Writer()
            parts = [describe(part, writer) for part in (model.operator, model.f, model.g)]
            arrays = {key: move(to_numpy(a)) for key, a in writer.arrays.items()}
            probe = move(np.zeros(1)) if not arrays else next(iter(arrays.values()))
            reader = Reader(arrays, lambda a: a, xp_of(probe), array_device(probe))
            moved = AnalysisModel(*(rebuild(part, reader) for part in parts))
            return moved, [tuple(move(a) for a in pair) for pair in sets]
        except (RuntimeError, ValueError, TypeError) as err:
            raise ValueError(f"--backend {self.backend} --device {self.device}: {err}") from err
