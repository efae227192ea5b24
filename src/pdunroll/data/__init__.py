"""Training data and quality measures: speech frames and quantization (:mod:`.speech`), images
and patches (:mod:`.images`), MSE and SNR (:mod:`.metrics`). NumPy in, NumPy out."""
