"""Signal files as a model reads and writes them: wav audio and images, keeping their format.

* Audio (:func:`read_audio`, :func:`write_audio`; ``scipy.io.wavfile``): mono or multi-channel
  wav files of 8-bit unsigned, 16- or 32-bit integer or 32/64-bit float samples, read at full
  scale (int16 / 2¹⁵, int32 / 2³¹, (uint8 − 128) / 2⁷, floats as they are) into float64 samples
  in [−1, 1], and written back in the same sample type and rate (rounded and clipped to its
  range). Full scale, not peak normalisation: a file quantized at b bits by
  :func:`pdunroll.quantize` and stored at full scale reads back as exactly those levels.
* Images (:func:`read_image`, :func:`write_image`; scikit-image, the ``images`` extra): png and
  tif files of 8- or 16-bit integers (grey or colour) read as float64 in [0, 1] (divided by
  255 or 65535) and written back in the same type; float tif files and ``.npy`` arrays are read
  and written as they are (float64 while in memory, their own dtype on disk).

:func:`collect_inputs` turns files and folders into the list of files to process, each with the
name it keeps under an output folder; anything else is refused naming it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["AUDIO_SUFFIXES", "IMAGE_SUFFIXES", "Audio", "Image", "collect_inputs",
           "read_audio", "read_image", "write_audio", "write_image"]

AUDIO_SUFFIXES = (".wav",)
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".npy")
_FULL_SCALE = {np.dtype(np.int16): 2.0 ** 15, np.dtype(np.int32): 2.0 ** 31,
               np.dtype(np.uint8): 2.0 ** 7}
_IMAGE_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


@dataclass(frozen=True)
class Audio:
    """Samples (float64, (n,) mono or (n, channels)) at full scale, the rate in Hz and the
    sample type of the file (what :func:`write_audio` writes back)."""

    samples: np.ndarray
    rate: int
    dtype: np.dtype


@dataclass(frozen=True)
class Image:
    """Pixels (float64, (H, W) grey or (H, W, C) colour; in [0, 1] for integer files) and the
    file's pixel type (what :func:`write_image` writes back)."""

    pixels: np.ndarray
    dtype: np.dtype


def read_audio(path) -> Audio:
    """The samples of a wav file at full scale, its rate and sample type. A file that is not a
    wav of a supported sample type, is cut short or holds non-finite samples is refused naming
    it."""
    from scipy.io import wavfile

    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", wavfile.WavFileWarning)  # e.g. a truncated file
            rate, data = wavfile.read(path)
    except (OSError, ValueError, EOFError, wavfile.WavFileWarning) as err:
        raise ValueError(f"{path} is not a readable wav file: {err}") from err
    dtype = data.dtype
    if dtype.kind == "f":
        samples = data.astype(np.float64)
    elif dtype in _FULL_SCALE:
        samples = data.astype(np.float64)
        if dtype == np.uint8:
            samples -= 128.0
        samples /= _FULL_SCALE[dtype]
    else:
        raise ValueError(f"{path} has samples of type {dtype}: expected 8-bit unsigned, 16- or "
                         "32-bit integer or float samples")
    if samples.size == 0:
        raise ValueError(f"{path} holds no samples")
    if not np.all(np.isfinite(samples)):
        raise ValueError(f"{path} contains non-finite samples (NaN or inf)")
    return Audio(samples, int(rate), dtype)


def write_audio(path, samples: np.ndarray, *, rate: int, dtype) -> Path:
    """Write full-scale float ``samples`` ((n,) or (n, channels)) as a wav file of sample type
    ``dtype`` (int16, int32, uint8 or a float type) at ``rate`` Hz; integers are rounded and
    clipped to their range. Returns the path."""
    from scipy.io import wavfile

    dtype = np.dtype(dtype)
    x = np.asarray(samples, dtype=np.float64)
    if dtype.kind == "f":
        data = x.astype(dtype)
    elif dtype in _FULL_SCALE:
        scale = _FULL_SCALE[dtype]
        y = np.rint(x * scale) + (128.0 if dtype == np.uint8 else 0.0)
        info = np.iinfo(dtype)
        data = np.clip(y, info.min, info.max).astype(dtype)
    else:
        raise ValueError(f"dtype must be int16, int32, uint8 or a float type, got {dtype}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wavfile.write(path, int(rate), data)
    return path


def _skimage_io():
    try:
        from skimage import io
    except ImportError as err:
        raise ImportError("image files need scikit-image: pip install scikit-image (from a "
                          "checkout also: pip install -e '.[images]')") from err
    return io


def read_image(path) -> Image:
    """The pixels of a png or tif file (integers scaled to [0, 1]) or of a ``.npy`` array (as
    it is), as float64, and the file's pixel type. Anything but a 2-D grey or 3-D colour image
    of a real or unsigned-integer type is refused naming the file."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            data = np.load(path, allow_pickle=False)
        else:
            data = _skimage_io().imread(path)
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise ValueError(f"{path} is not a readable image: {err}") from err
    data = np.asarray(data)
    if data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[-1] not in (1, 2, 3, 4)):
        raise ValueError(f"{path}: expected a grey (H, W) or colour (H, W, C) image, got an "
                         f"array of shape {data.shape}")
    if data.dtype.kind == "f":
        pixels = data.astype(np.float64)
    elif data.dtype in _IMAGE_SCALE and path.suffix.lower() != ".npy":
        pixels = data.astype(np.float64) / _IMAGE_SCALE[data.dtype]
    else:
        raise ValueError(f"{path} has pixels of type {data.dtype}: expected 8- or 16-bit "
                         "unsigned integers (png, tif) or floats (tif, npy)")
    if not np.all(np.isfinite(pixels)):
        raise ValueError(f"{path} contains non-finite pixels (NaN or inf)")
    return Image(pixels, data.dtype)


def write_image(path, pixels: np.ndarray, *, dtype) -> Path:
    """Write float ``pixels`` as an image file of pixel type ``dtype``: png/tif of uint8 or
    uint16 (clipped to [0, 1], scaled and rounded), tif of a float type, or ``.npy`` of any
    real type (values as they are). Returns the path."""
    dtype = np.dtype(dtype)
    path = Path(path)
    x = np.asarray(pixels, dtype=np.float64)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".npy":
        np.save(path, x.astype(dtype), allow_pickle=False)
        return path
    if dtype in _IMAGE_SCALE:
        data = np.rint(np.clip(x, 0.0, 1.0) * _IMAGE_SCALE[dtype]).astype(dtype)
    elif dtype.kind == "f" and path.suffix.lower() in (".tif", ".tiff"):
        data = x.astype(dtype)
    else:
        raise ValueError(f"cannot write pixels of type {dtype} to {path.name}: png and tif take "
                         "uint8 or uint16, tif also floats, npy any real type")
    _skimage_io().imsave(path, data, check_contrast=False)
    return path


def collect_inputs(inputs, suffixes: tuple[str, ...]) -> list[tuple[Path, Path]]:
    """The files of ``inputs`` (files, or folders searched recursively for ``suffixes``, sorted)
    as (path, name to keep): a file keeps its own name, a folder's files their path inside it.
    A missing path, a file of another type, a folder without such files or two inputs with
    the same output name are refused naming them."""
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    out: list[tuple[Path, Path]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file()
                           and p.suffix.lower() in suffixes)
            if not found:
                raise ValueError(f"input folder {path} holds no {'/'.join(suffixes)} files")
            out += [(p, p.relative_to(path)) for p in found]
        elif path.is_file():
            if path.suffix.lower() not in suffixes:
                raise ValueError(f"input {path} is not a {'/'.join(suffixes)} file")
            out.append((path, Path(path.name)))
        else:
            raise ValueError(f"input {path} does not exist")
    if not out:
        raise ValueError("no input files given")
    names: dict[Path, Path] = {}
    for path, name in out:
        if name in names:
            raise ValueError(f"inputs {names[name]} and {path} would both be written as {name}")
        names[name] = path
    return out
