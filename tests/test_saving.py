"""Every operator and function saves and loads through the description it gives of itself
(pdunroll.registry), composites included; files of format version 1 still load; a model with a
Stack or Composition operator trains with a checkpoint and continues from it."""

import shutil
from pathlib import Path

import numpy as np
import pytest

import pdunroll as pu
from pdunroll.registry import Writer, registered

DATA = Path(__file__).parent / "data"


def _parts(backend, dtype):
    """One model per operator type and one per function type (F and G), on ``backend``."""
    rng = np.random.default_rng(3)

    def arr(*shape):
        return backend.asarray(rng.standard_normal(shape), dtype)

    grad = pu.Gradient2d((4, 5), xp=backend.xp, dtype=backend.dtype(dtype),
                         device=backend.device)
    grad3 = pu.Gradient2d((2, 4, 5), xp=backend.xp, dtype=backend.dtype(dtype),
                          device=backend.device)
    image_ops = [
        pu.Conv2dFilterBank(arr(3, 2, 3), (4, 5), "zero"),
        pu.Diagonal(arr(4, 5)),
        grad,
        pu.Composition(pu.Diagonal(arr(2, 4, 5)), grad),
        pu.Stack(pu.Conv2dFilterBank(arr(2, 3, 3), (4, 5), "periodic"),
                 pu.Composition(pu.Diagonal(arr(2, 4, 5)), grad)),
    ]
    vector_ops = [pu.DenseOperator(arr(7, 6)), pu.Conv1dFilterBank(arr(3, 4), 6, "valid"),
                  pu.Stack(pu.DenseOperator(arr(2, 6)), pu.Diagonal(arr(6)))]
    models = [pu.AnalysisModel(op, pu.L1Norm(0.5), pu.L2Ball(2.0)) for op in image_ops]
    models[0] = pu.AnalysisModel(models[0].operator, models[0].f, pu.NoiseL2Ball(0.1, c=1.2))
    models += [pu.AnalysisModel(op, pu.SquaredL2(1.5), pu.LinfBall(0.25)) for op in vector_ops]
    dense = pu.DenseOperator(arr(6, 6))
    functions = [pu.Zero(), pu.NonNegative(), pu.BoxBregmanL1Norm(0.75),
                 pu.BoxBregmanLinfBall(1.5), pu.EntropicOrthant(start_value=0.5),
                 pu.LinearTerm(arr(6), pu.EntropicOrthant()), pu.LinearTerm(arr(6))]
    models += [pu.AnalysisModel(dense, fn, pu.SquaredL2()) for fn in functions]
    models.append(pu.AnalysisModel(grad3, pu.L21Norm(0.5, group_axis=2),
                                   pu.LinearTerm(arr(2, 4, 5), pu.EntropicSimplex(axis=1))))
    models.append(pu.AnalysisModel(grad3, pu.L1Norm(), pu.Simplex(axis=1)))
    # inverse problems: Stack(K, A) with BlockSeparable(F, Translated(H, f)), each forward A
    kw = {"xp": backend.xp, "dtype": backend.dtype(dtype), "device": backend.device}
    mask = backend.asarray((rng.random((4, 5)) < 0.5).astype(float), dtype)
    forward = [pu.Blur(arr(3, 2), (4, 5), "valid"), pu.Mask(mask),
               pu.Composition(pu.Subsample((4, 5), 2, **kw), pu.Blur(arr(2, 2), (4, 5), "zero"))]
    for A in forward:
        models.append(pu.inverse_problem(image_ops[0], A, arr(2, *A.out_shape),
                                         h=pu.L2Ball(1.0)))
    beam = pu.ParallelBeam(4, 3, **kw)
    models.append(pu.inverse_problem(pu.Conv2dFilterBank(arr(2, 3, 3), (4, 4), "zero"), beam,
                                     arr(2, *beam.out_shape)))
    return models


def test_every_built_in_type_is_covered(numpy_backend):
    """The round trip below holds a model with each registered operator and function."""
    seen = set()

    def walk(part):
        seen.add(type(part).__name__)
        for sub in getattr(part, "operators", ()):
            walk(sub)
        if isinstance(part, pu.LinearTerm | pu.Translated):
            walk(part.base)
        for sub in getattr(part, "parts", ()):
            walk(sub)

    for model in _parts(numpy_backend, "float64"):
        for part in (model.operator, model.f, model.g):
            walk(part)
    own = {name for name, cls in registered().items() if cls.__module__.startswith("pdunroll.")}
    assert own <= seen, f"add a model with {own - seen} to _parts"


def _assert_same_part(backend, a, b):
    """Same type, same description, same arrays."""
    wa, wb = Writer(), Writer()
    assert wa.part(a) == wb.part(b)
    for key, array in wa.arrays.items():
        np.testing.assert_array_equal(backend.to_numpy(wb.arrays[key]), backend.to_numpy(array))


def test_round_trip_of_every_type(backend, dtype, tmp_path):
    rng = np.random.default_rng(4)
    for i, model in enumerate(_parts(backend, dtype)):
        path = pu.save_operator(tmp_path / f"m{i}.npz", model, iterations=3, omega=2.0)
        loaded, settings = pu.load_operator(path, xp=backend.xp, device=backend.device)
        assert settings["version"] == 2 and settings["dtype"] == dtype
        for a, b in ((model.operator, loaded.operator), (model.f, loaded.f),
                     (model.g, loaded.g)):
            _assert_same_part(backend, a, b)
        assert loaded.operator.dtype == model.operator.dtype
        assert loaded.operator.device == model.operator.device
        if backend.name != "numpy":
            # same configuration and arrays on every backend (above); the values computed from
            # them once, on NumPy (eager JAX compiled ~800 kernels for these models: 5 minutes)
            continue
        x = backend.asarray(rng.uniform(0.1, 0.9, (2, *model.operator.in_shape)), dtype)
        np.testing.assert_array_equal(backend.to_numpy(loaded.operator.apply(x)),
                                      backend.to_numpy(model.operator.apply(x)))
        if not isinstance(model.g, pu.LinearTerm):  # simplex models: value checks only
            # steps from a bound of ‖K‖ (power iterations to convergence are slow on eager JAX
            # and torch; both models run with the same steps)
            steps = pu.step_sizes(model.operator, omega=2.0, op_norm=1e3)
            a = pu.chambolle_pock(model, x, iterations=3, steps=steps).x
            b = pu.chambolle_pock(loaded, x, iterations=3, steps=steps).x
            np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(b))


def _v1_models():
    """The models tests/data/README.md wrote in format version 1 (same random numbers)."""
    rng = np.random.default_rng(0)
    K = (pu.dct_matrix(8, 12) + 0.01 * rng.standard_normal((12, 8))).astype(np.float32)
    speech = pu.AnalysisModel(pu.DenseOperator(K), f=pu.L1Norm(), g=pu.LinfBall(0.0625))
    h = pu.dct_filters(3) + 0.01 * rng.standard_normal((8, 3, 3))
    denoise = pu.AnalysisModel(pu.Conv2dFilterBank(h, (10, 10), "periodic"), f=pu.L1Norm(0.5),
                               g=pu.L2Ball(1.0))
    conv1d = pu.AnalysisModel(pu.Conv1dFilterBank(rng.standard_normal((4, 5)), 16, "zero"),
                              f=pu.L1Norm(), g=pu.SquaredL2(2.0))
    return {"speech": speech, "denoise": denoise, "conv1d": conv1d}


def test_version_1_operator_files_load_to_the_same_model(numpy_backend):
    for name, model in _v1_models().items():
        loaded, settings = pu.load_operator(DATA / f"v1_{name}_operator.npz")
        assert settings["version"] == 1
        _assert_same_part(numpy_backend, loaded.operator, model.operator)
        for part in ("f", "g"):
            _assert_same_part(numpy_backend, getattr(loaded, part), getattr(model, part))
    settings = pu.load_operator(DATA / "v1_speech_operator.npz")[1]
    assert settings["solver"] == {"iterations": 7, "omega": 30.0, "weights": "harmonic"}
    assert settings["metadata"]["bitrate"] == 4


def test_version_1_checkpoint_resumes(numpy_backend, tmp_path):
    """The v1 checkpoint of a finished one-epoch run: resuming with the same settings accepts
    it and returns its operator; another G is refused naming the model part."""
    rng = np.random.default_rng(0)
    for shape in ((12, 8), (8, 3, 3), (4, 5)):  # drawn first, for the operator files
        rng.standard_normal(shape)
    x_true = rng.standard_normal((12, 8))
    x_tilde = x_true + 0.05 * rng.standard_normal((12, 8))
    path = tmp_path / "checkpoint.npz"
    shutil.copy(DATA / "v1_checkpoint.npz", path)
    model = pu.AnalysisModel(pu.DenseOperator(pu.dct_matrix(8)), f=pu.L1Norm(), g=pu.LinfBall(0.1))
    res = pu.train(model, x_tilde, x_true, iterations=3, epochs=1, batch_size=4, omega=2.0,
                   progress=False, checkpoint=path, resume=True)
    state, _ = pu.load_checkpoint(DATA / "v1_checkpoint.npz", model.operator.params)
    assert res.steps == 3
    np.testing.assert_array_equal(res.model.operator.matrix, state.best_params)
    with pytest.raises(ValueError, match="model g"):
        pu.train(model.__class__(model.operator, model.f, pu.LinfBall(0.2)), x_tilde, x_true,
                 iterations=3, epochs=1, batch_size=4, omega=2.0, progress=False,
                 checkpoint=path, resume=True)


@pytest.mark.parametrize("kind", ["stack", "composition"])
def test_composite_model_trains_with_a_checkpoint_and_resumes(numpy_backend, kind, tmp_path):
    """Before: ``TypeError: cannot save operator Stack``. A run interrupted after its first
    epoch and resumed ends with the parameters of an uninterrupted run, bit for bit."""
    rng = np.random.default_rng(5)
    if kind == "stack":
        op = pu.Stack(pu.DenseOperator(pu.dct_matrix(6)), pu.Diagonal(np.full(6, 0.5)))
    else:
        op = pu.Composition(pu.Diagonal(np.full(6, 0.9)), pu.DenseOperator(pu.dct_matrix(6)))
    model = pu.AnalysisModel(op, pu.L1Norm(), pu.LinfBall(0.1))
    x_true = rng.standard_normal((16, 6))
    x_tilde = x_true + 0.05 * rng.standard_normal((16, 6))
    kw = dict(iterations=3, batch_size=8, epochs=2, omega=2.0, progress=False)
    full = pu.train(model, x_tilde, x_true, **kw)

    path = tmp_path / "checkpoint.npz"

    def stop(info):
        if info["step"] == 2:  # the end of epoch 1
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pu.train(model, x_tilde, x_true, checkpoint=path, callback=stop, **kw)
    resumed = pu.train(model, x_tilde, x_true, checkpoint=path, resume=True, **kw)
    for a, b in zip(pu.tree.flatten(resumed.final_model.operator.params),
                    pu.tree.flatten(full.final_model.operator.params), strict=True):
        np.testing.assert_array_equal(a, b)
    # and the trained composite saves and loads
    saved = pu.save_operator(tmp_path / "op.npz", resumed.model, iterations=3, omega=2.0)
    loaded, _ = pu.load_operator(saved)
    np.testing.assert_array_equal(pu.chambolle_pock(loaded, x_tilde, iterations=3, omega=2.0).x,
                                  pu.chambolle_pock(resumed.model, x_tilde, iterations=3,
                                                    omega=2.0).x)


def test_own_types_join_by_the_decorator(numpy_backend, tmp_path):
    class Scaled(pu.L1Norm):  # attributes are numbers: the decorator is enough
        pass

    class Plain(pu.DenseOperator):  # a subclass of a saveable class is not saveable by itself
        pass

    model = pu.AnalysisModel(Plain(np.eye(3)), pu.L1Norm(), pu.Zero())
    with pytest.raises(TypeError, match=r"model's operator: cannot save .*Plain: .*"
                                        r"@pdunroll.saveable"):
        pu.save_operator(tmp_path / "x.npz", model, iterations=1, omega=1.0)
    assert not (tmp_path / "x.npz").exists()

    pu.saveable(Scaled)

    @pu.saveable(name="test-saving.Shifted")
    class Shifted(pu.DenseOperator):
        def __init__(self, matrix, shift):
            super().__init__(matrix)
            self.shift = shift

        def to_config(self, writer):
            return {"matrix": writer.array(self.params), "shift": self.shift}

        @classmethod
        def from_config(cls, config, reader):
            return cls(reader.array(config["matrix"]), config["shift"])

    model = pu.AnalysisModel(Shifted(np.eye(3) * 2, 0.5), Scaled(3.0), pu.Zero())
    loaded, settings = pu.load_operator(pu.save_operator(tmp_path / "y.npz", model,
                                                         iterations=1, omega=1.0))
    assert settings["model"]["operator"]["type"] == "test-saving.Shifted"
    assert type(loaded.operator) is Shifted and loaded.operator.shift == 0.5
    assert type(loaded.f) is Scaled and loaded.f.weight == 3.0
    np.testing.assert_array_equal(loaded.operator.matrix, np.eye(3) * 2)

    with pytest.raises(ValueError, match="taken by"):
        pu.saveable(name="DenseOperator")(Plain)


def test_unknown_types_in_a_file_are_named(numpy_backend, tmp_path):
    import json

    path = pu.save_operator(tmp_path / "op.npz", pu.AnalysisModel(
        pu.DenseOperator(np.eye(2)), pu.L1Norm(), pu.Zero()), iterations=1, omega=1.0)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    settings = json.loads(str(arrays.pop("settings")))
    settings["model"]["f"]["type"] = "mypackage.MyNorm"
    np.savez(path, settings=np.array(json.dumps(settings)), **arrays)
    with pytest.raises(ValueError, match=r"unknown type 'mypackage.MyNorm': import the module"):
        pu.load_operator(path)


def test_function_with_params_default(numpy_backend):
    f = pu.L1Norm()
    assert f.with_params(()) is f
    with pytest.raises(ValueError, match="L1Norm has no parameters: params must be"):
        f.with_params(np.ones(3))
