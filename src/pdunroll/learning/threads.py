"""How many threads the BLAS and OpenMP libraries use while pdunroll trains.

The policy (docs, "Reliability and performance"): :func:`pdunroll.train` and
:class:`~pdunroll.OperatorLearner` run with **one** BLAS/OpenMP thread unless told otherwise
(``threads=``), like the command line (``--threads``, default 1) and the Dask workers. The
minibatch products of training are small: on a 2-core machine under load a small training
script took 27× longer with OpenBLAS's default threads than with one, as the threads of a
product wait for each other on busy cores. ``threads=None`` leaves the libraries' own setting;
``threads=k`` allows k. The limit holds for the call only (threadpoolctl, the field's tool for
it) and is lifted when it returns or raises.
"""

from __future__ import annotations

import contextlib
import functools
import inspect

from .._array import check_count

__all__ = ["check_threads", "thread_limit", "with_thread_limit"]


def check_threads(threads) -> int | None:
    """``threads`` as a count >= 1, or None."""
    return None if threads is None else check_count("threads", threads)


@contextlib.contextmanager
def thread_limit(threads):
    """Within the block, at most ``threads`` BLAS and OpenMP threads (None: unchanged)."""
    threads = check_threads(threads)
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        yield


def with_thread_limit(fn):
    """Run ``fn`` under :func:`thread_limit` of its ``threads`` keyword (its default when not
    given); ``fn`` declares ``threads`` so that it is documented and checked with the rest."""
    default = inspect.signature(fn).parameters["threads"].default

    @functools.wraps(fn)
    def limited(*args, **kwargs):
        with thread_limit(kwargs.get("threads", default)):
            return fn(*args, **kwargs)

    return limited
