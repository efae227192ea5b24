"""The measurement behind pdunroll.DEFAULT_OMEGA (docs, "Mathematics": "The default ω"): the
reconstruction quality of two untrained models for ω in {1, 3, 10, 30, 100}.

* speech: the 320×320 DCT, F = ‖·‖₁, G the ℓ∞ ball of the 4-bit quantizer, 2000 frames of the
  IEEE recordings in ``--speech`` (default /work/shared/data/ieee_speech/dev), L = 10, SNR;
* denoising: the 24 DCT filters of size 5×5 on 32×32 patches (periodic), G the ℓ2 ball of radius
  0.1·32, 200 patches of scikit-image's images with noise σ = 0.1, L = 30, PSNR.

    python benchmarks/default_omega.py [--speech FOLDER]
"""

from __future__ import annotations

import argparse

import numpy as np

import pdunroll as pu
from pdunroll.data import images, speech

OMEGAS = (1.0, 3.0, 10.0, 30.0, 100.0)


def snr(x_hat, x):
    return 10 * np.log10(np.sum(x * x) / np.sum((x_hat - x) ** 2))


def psnr(x_hat, x):
    return 10 * np.log10(1.0 / np.mean((x_hat - x) ** 2))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--speech", default="/work/shared/data/ieee_speech/dev")
    args = p.parse_args(argv)
    frames = speech.speech_frames(speech.read_wav_folder(args.speech)[0], n=320, bitrate=4,
                                  max_frames=2000, seed=0)
    model = pu.AnalysisModel(pu.DenseOperator(pu.dct_matrix(320)), pu.L1Norm(),
                             pu.LinfBall(frames.eta))
    quantized = snr(frames.x_tilde, frames.x_true)
    print(f"speech: {len(frames)} frames, quantized SNR {quantized:.2f} dB")
    for w in OMEGAS:
        x_hat = pu.chambolle_pock(model, frames.x_tilde, iterations=10, omega=w).x
        print(f"  omega {w:5g}: SNR at L = 10  {snr(x_hat, frames.x_true):.2f} dB")
    noisy, clean = images.image_patches(images.load_images(), size=32, sigma=0.1,
                                        max_patches=200, seed=0)
    model = pu.AnalysisModel(pu.Conv2dFilterBank(pu.dct_filters(5), (32, 32), "periodic"),
                             pu.L1Norm(), pu.L2Ball(0.1 * 32))
    print(f"denoising: {len(noisy)} patches, noisy PSNR {psnr(noisy, clean):.2f} dB")
    for w in OMEGAS:
        x_hat = pu.chambolle_pock(model, noisy, iterations=30, omega=w).x
        print(f"  omega {w:5g}: PSNR at L = 30  {psnr(x_hat, clean):.2f} dB")


if __name__ == "__main__":
    main()
