"""Apply a learned model to files: wav files for a speech model, images for a denoising model,
of any length or size, written under an output folder with the same names and format (what
``pdunroll apply`` runs).

* Speech (a model of frames of n samples): each channel of a wav file (read at full scale,
  :mod:`pdunroll.data.files`) is the degraded signal x̃. It is cut into frames of n samples; a
  tail shorter than n is reconstructed as the last n samples of the signal (overlapping the
  frame before it) and only its new samples are kept; a signal shorter than n is extended by
  its mirror image to n samples and cut back. The reconstruction has exactly the input's
  length, rate and sample type.
* Images (a model of 2-D images: filter banks, TV): every image is reconstructed whole at its
  own size (:meth:`pdunroll.LearnedModel.at_shape`); the channels of a colour image are
  denoised as grey images (an alpha channel is kept as it is); pixels are written back in the
  file's type.
* Deblurring and inpainting models (``pdunroll train deblur`` / ``inpaint``): each image is
  the measurement f, restored at its own size by :func:`pdunroll.tasks.inverse.restore`; an
  inpainting model needs the mask of the observed pixels, an image file of the inputs' size
  (``mask=``, the command line's ``--mask``: white or nonzero = observed, black = missing),
  the same for every input.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..data.files import (
    AUDIO_SUFFIXES,
    IMAGE_SUFFIXES,
    collect_inputs,
    read_audio,
    read_image,
    write_audio,
    write_image,
)
from .checkpoint import to_numpy
from .learned import LearnedModel

__all__ = ["apply_files", "model_kind", "reconstruct_signal"]

INVERSE_TASKS = ("deblur", "inpaint")


def model_kind(model: LearnedModel) -> str:
    """``"speech"`` for a model of 1-D frames, ``"images"`` for one of 2-D images (its
    operator's input shape); anything else is refused."""
    if not isinstance(model, LearnedModel):
        raise TypeError(f"model must be a pdunroll LearnedModel (pu.load_model(path)), got "
                        f"{type(model).__name__}")
    d = len(model.operator.in_shape)
    if d == 1:
        return "speech"
    if d == 2:
        return "images"
    raise ValueError(f"apply_files handles models of 1-D frames (speech) and 2-D images; this "
                     f"operator takes signals of shape {tuple(model.operator.in_shape)}")


def _on_model(model: LearnedModel, x: np.ndarray):
    op = model.operator
    return op.xp.asarray(x, device=op.device)


def reconstruct_signal(model: LearnedModel, x: np.ndarray, *, iterations: int | None = None,
                       batch_size: int | None = None) -> np.ndarray:
    """A 1-D signal of any length reconstructed frame by frame by a speech model of frames of n
    samples (the framing of the module docstring); NumPy float64 in and out."""
    n = model.operator.in_shape[0]
    x = np.asarray(x, dtype=np.float64)
    length = x.shape[0]
    if length < n:
        frames = np.pad(x, (0, n - length), mode="symmetric")[None, :]
    else:
        full = length // n
        frames = x[: full * n].reshape(full, n)
        if length % n:
            frames = np.concatenate([frames, x[None, length - n:]])
    out = to_numpy(model.reconstruct(_on_model(model, frames), iterations=iterations,
                                     batch_size=batch_size)).astype(np.float64)
    if length < n:
        return out[0, :length]
    full = length // n
    body = out[:full].reshape(-1)
    return np.concatenate([body, out[full, n - length % n:]]) if length % n else body


def _denoiser(model, iterations, batch_size):
    """Grey images (C, H, W) in, reconstructed out (NumPy float64)."""
    def solve(stack):
        return to_numpy(model.reconstruct(_on_model(model, stack), iterations=iterations,
                                          batch_size=batch_size)).astype(np.float64)
    return solve


def _restorer(model, iterations, mask):
    """Deblurred or inpainted grey images (C, H, W) of a ``train deblur`` / ``inpaint``
    model (NumPy float64)."""
    from ..tasks.inverse import restore

    def solve(stack):
        return restore(model, stack, mask=mask, iterations=iterations)
    return solve


def _channels(solve, pixels) -> np.ndarray:
    """A grey (H, W) or colour (H, W, C) image: grey channels together as one batch."""
    if pixels.ndim == 2:
        return solve(pixels[None])[0]
    channels = pixels.shape[-1]
    colour = min(channels, 3) if channels != 2 else 1  # grey + alpha: one colour channel
    stack = np.moveaxis(pixels[..., :colour], -1, 0)
    out = solve(np.ascontiguousarray(stack))
    result = pixels.copy()  # alpha stays
    result[..., :colour] = np.moveaxis(out.astype(np.float64), 0, -1)
    return result


def apply_files(model: LearnedModel, inputs, out_dir, *, iterations: int | None = None,
                batch_size: int | None = None, progress: bool = True,
                mask=None) -> list[Path]:
    """Reconstruct every file of ``inputs`` (files or folders; wav for a speech model, png /
    tif / npy for an image model) with ``model`` as it was trained (``iterations`` overrides
    L; ``batch_size``: frames or channels per solver call) and write each under ``out_dir``
    with its name (a folder's files with their path inside it) and format: the same rate and
    sample type for audio, the same pixel type for images. Returns the written paths.

    Every input is checked before the first is processed (a missing file, one of another type,
    an output that would overwrite its input are named); a file that cannot be read is named
    when it is reached. ``mask``: an inpainting model's observed pixels, an image file or an
    array of the inputs' size (values above 0.5 of [0, 1] observed)."""
    kind = model_kind(model)
    task = model.metadata.get("task")
    if task in INVERSE_TASKS:
        if task == "inpaint" and mask is None:
            raise ValueError("an inpainting model needs the mask of the observed pixels: give "
                             "mask= (pdunroll apply: --mask FILE, white = observed, black = "
                             "missing)")
        if task == "deblur" and mask is not None:
            raise ValueError("mask (--mask) is for inpainting models; this one deblurs")
        if isinstance(mask, str | os.PathLike):
            from ..tasks.denoise import read_images

            if not Path(mask).is_file():
                raise ValueError(f"mask {mask}: there is no such image file")
            mask = read_images([mask])[0]
        solve = _restorer(model, iterations, mask)
    elif mask is not None:
        raise ValueError("mask (--mask) is for inpainting models (pdunroll train inpaint)")
    else:
        solve = _denoiser(model, iterations, batch_size)
    files = collect_inputs(inputs, AUDIO_SUFFIXES if kind == "speech" else IMAGE_SUFFIXES)
    if not isinstance(out_dir, str | os.PathLike):
        raise TypeError(f"out_dir must be a folder path, got {type(out_dir).__name__}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir {out_dir} is a file, expected a folder")
    targets = [(path, out_dir / name) for path, name in files]
    for path, target in targets:
        if target.resolve() == path.resolve():
            raise ValueError(f"the output for {path} would overwrite it: choose another out_dir")
    if progress:
        from tqdm.auto import tqdm

        targets = tqdm(targets, unit="file", desc="applying", dynamic_ncols=True)
    written = []
    for path, target in targets:
        if kind == "speech":
            audio = read_audio(path)
            x = audio.samples
            y = (reconstruct_signal(model, x, iterations=iterations, batch_size=batch_size)
                 if x.ndim == 1 else np.stack(
                     [reconstruct_signal(model, c, iterations=iterations,
                                         batch_size=batch_size) for c in x.T], axis=1))
            written.append(write_audio(target, y, rate=audio.rate, dtype=audio.dtype))
        else:
            image = read_image(path)
            y = _channels(solve, image.pixels)
            written.append(write_image(target, y, dtype=image.dtype))
    return written
