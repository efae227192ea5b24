"""The learning tasks of the command line, shared by :class:`~pdunroll.OperatorLearner`, the
tutorials and the experiments: each module holds one task's model factory, defaults, data sets
(with their splits and digests) and the rows its results table compares.

* :mod:`~pdunroll.tasks.speech`: speech dequantization (Brauer & Lorenz, EUSIPCO 2023);
* :mod:`~pdunroll.tasks.denoise`: image denoising with a filter bank;
* :mod:`~pdunroll.tasks.inverse`: deblurring and inpainting with a filter bank, the forward
  operator in the data term.
"""

from .base import TaskData

__all__ = ["TASKS", "TaskData"]

TASKS = ("speech", "denoise", "deblur", "inpaint")
