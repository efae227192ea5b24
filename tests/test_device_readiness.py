"""What GPUs (CuPy, CUDA torch, JAX on a GPU) need and a CPU run cannot show by itself:
namespaces of raw modules, the NumPy-only fast path, tracers and lazy arrays, host copies of
device arrays, and the ∇K product size per device. The CUDA and CuPy rows of the backend matrix
run these where a GPU is present."""

import pickle

import array_api_compat
import numpy as np
import pytest

import pdunroll as pu
from pdunroll import _array
from pdunroll.unroll import reverse


def test_a_raw_module_given_as_xp_becomes_its_compat_namespace():
    """Raw CuPy's creation functions take no device=; torch and CuPy given as their own
    modules are made into array-api-compat's namespaces, the ones their arrays get."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    assert _array.default_namespace(torch) is array_api_compat.torch
    assert _array.default_namespace(array_api_compat.torch) is array_api_compat.torch
    assert _array.default_namespace() is np and _array.default_namespace(np) is np
    K = pu.dct_matrix(8, xp=torch, dtype=torch.float64)
    np.testing.assert_allclose(K.numpy(), pu.dct_matrix(8), rtol=0, atol=1e-15)
    h = pu.dct_filters(3, xp=torch, dtype=torch.float64)
    np.testing.assert_allclose(h.numpy(), pu.dct_filters(3), rtol=0, atol=1e-15)
    op = pu.Gradient2d((4, 5), xp=torch, dtype=torch.float64)
    assert op.xp is array_api_compat.torch


def test_the_own_namespace_fast_path_is_numpys_only():
    """An array type that declares a namespace of its own but that array-api-compat wraps (as
    CuPy would were it to add __array_namespace__) keeps the wrapper."""
    torch = pytest.importorskip("torch", reason="torch is not installed")

    class OwnNamespace(torch.Tensor):
        def __array_namespace__(self, api_version=None):
            return torch  # the raw module: not the standard's functions

    t = torch.zeros(3, dtype=torch.float64).as_subclass(OwnNamespace)
    assert _array.xp_of(t) is array_api_compat.torch
    assert _array.xp_of(np.zeros(3)) is np


def test_finiteness_is_checked_on_concrete_jax_arrays_and_skipped_on_tracers():
    jax = pytest.importorskip("jax", reason="jax is not installed")
    import jax.numpy as jnp

    with pytest.raises(ValueError, match="matrix contains non-finite values"):
        pu.DenseOperator(jnp.asarray([[1.0, jnp.nan]]))

    @jax.jit
    def norm_of(K):
        return pu.DenseOperator(K).apply(jnp.ones((1, 2)))  # traced: no check, no error

    assert norm_of(jnp.asarray([[1.0, 2.0]])).shape == (1, 1)


def test_trusted_values_skip_the_finiteness_check():
    with _array.trusted_values():
        pu.DenseOperator(np.array([[np.nan]]))
    with pytest.raises(ValueError, match="non-finite"):
        pu.DenseOperator(np.array([[np.nan]]))


def test_host_copies_and_one_transfer(backend):
    a = backend.asarray(np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(_array.to_numpy(a), np.arange(6.0).reshape(2, 3))
    xp = backend.xp
    assert _array.to_host(xp, xp.sum(a), xp.max(a)) == (15.0, 5.0)


def test_param_product_is_one_product_off_the_cpu(backend):
    """The ∇K accumulation chunks its products on a CPU (measured for NumPy) and makes one
    product on any other device (array_api_strict's second device stands in for a GPU)."""
    op = pu.DenseOperator(backend.asarray(np.eye(3)))
    limit = reverse._numbers_per_product(op)
    assert (limit == reverse._NUMBERS_PER_PRODUCT) == _array.is_host_device(op.device)
    assert _array.is_host_device("cpu") and not _array.is_host_device("cuda:0")


def test_operators_look_up_their_namespace_once_and_still_pickle():
    op = pu.DenseOperator(np.eye(3))
    assert op.xp is np and op.__dict__["_namespace"] is np
    again = pickle.loads(pickle.dumps(op))
    np.testing.assert_array_equal(again.apply(np.ones((1, 3))), np.ones((1, 3)))


def test_checkpoint_copies_jax_arrays_that_dlpack_cannot_share(monkeypatch):
    """A JAX array on a GPU does not share its memory with NumPy; array-api-compat's
    to_device(a, "cpu") refuses the string "cpu" for JAX, so the copy goes through JAX's own
    host transfer (simulated on a CPU: NumPy's from_dlpack refuses the array)."""
    pytest.importorskip("jax", reason="jax is not installed")
    import jax.numpy as jnp

    from pdunroll.learning.checkpoint import to_numpy

    def refuse(a, *args, **kwargs):
        raise BufferError("not on the host")

    monkeypatch.setattr(np, "from_dlpack", refuse)
    out = to_numpy(jnp.arange(4.0))
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, np.arange(4.0))
