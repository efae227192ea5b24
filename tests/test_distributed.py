"""Training, reconstruction and evaluation on a Dask distributed LocalCluster (2 worker
processes, 1 thread each) match the single-process runs; a killed worker is survived and a
lost client leaves the checkpoint of the last step."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("distributed", reason="Dask distributed not installed (pdunroll[distributed])")

from distributed import Client  # noqa: E402
from experiment_scripts import csv_rows, experiment  # noqa: E402
from problems import sparse_quantized  # noqa: E402

import pdunroll as pu  # noqa: E402
from pdunroll.learning.distributed import DaskGradient, local_cluster  # noqa: E402
from pdunroll.learning.training import LocalGradient  # noqa: E402
from pdunroll.unroll.plan import make_plan  # noqa: E402

N = 8
FULL5 = make_plan(pu.Full(), 5, x_wanted=False)  # a training step's plan, L = 5


def _data(n_signals, seed=0):
    return sparse_quantized(n_signals, N, seed)


def _model(eta, xp=np):
    return pu.AnalysisModel(pu.DenseOperator(xp.asarray(pu.dct_matrix(N))), f=pu.L1Norm(),
                            g=pu.LinfBall(eta))


OPTIONS = dict(iterations=5, omega=10.0, lr=pu.LearningRate(1e-2, "linear"), epochs=2,
               batch_size=12, seed=3, progress=False)


@pytest.fixture(scope="module")
def cluster():
    trim = os.environ.get("MALLOC_TRIM_THRESHOLD_")  # before a nanny sets it here
    # JAX workers unpickle float64 arrays as float32 unless x64 is on (conftest turns it on here)
    with local_cluster(2, env={"JAX_ENABLE_X64": "1"}) as c:
        c.parent_trim = trim
        yield c


@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster) as cl:
        cl.wait_for_workers(2, timeout=60)
        yield cl


@pytest.mark.parametrize(("method", "iterations"),
                         [(pu.Full(), 5), (pu.Truncated(3), 5), (pu.Asymptotic(4), 5),
                          (pu.Implicit(tol=1e-9), 400)],
                         ids=["full", "truncated", "asymptotic", "implicit"])
def test_minibatch_gradient_matches_in_process(client, method, iterations):
    xt, x, eta = _data(40)
    model = _model(eta)
    steps = pu.step_sizes(model.operator, omega=10.0)
    idx = np.random.default_rng(0).permutation(40)[:25]  # pairs from every shard
    args = (xt, x, make_plan(method, iterations, x_wanted=False))
    loss, grad = LocalGradient(*args)(model, idx, steps)
    dist = DaskGradient(client, *args, shards=3)
    assert dist.shards == 3
    d_loss, d_grad = dist(model, idx, steps)
    assert float(d_loss) == pytest.approx(float(loss), rel=1e-13)  # 0-d arrays: no sync
    np.testing.assert_allclose(d_grad, grad, rtol=1e-12, atol=1e-14 * np.abs(grad).max())
    # a minibatch inside one shard: one part, the same numbers
    one = np.array([2, 0, 5])
    np.testing.assert_allclose(dist(model, one, steps)[1],
                               LocalGradient(*args)(model, one, steps)[1], rtol=1e-12)


def test_workers_compute_with_the_backend_of_the_data(client, backend):
    xt, x, eta = _data(30)
    model = pu.AnalysisModel(pu.DenseOperator(backend.asarray(pu.dct_matrix(N), "float64")),
                             f=pu.L1Norm(), g=pu.LinfBall(eta))
    steps = pu.step_sizes(model.operator, omega=10.0)
    t = (backend.asarray(xt, "float64"), backend.asarray(x, "float64"))
    idx = np.arange(0, 30, 2)
    d_loss, d_grad = DaskGradient(client, *t, FULL5)(model, idx, steps)
    loss, grad = LocalGradient(*t, FULL5)(model, idx, steps)
    assert type(d_grad) is type(grad)  # e.g. a torch.Tensor back from the workers
    assert float(d_loss) == pytest.approx(float(loss), rel=1e-13)  # 0-d arrays: no sync
    np.testing.assert_allclose(backend.to_numpy(d_grad), backend.to_numpy(grad), rtol=1e-12,
                               atol=1e-15)


def _run(xt, x, eta, val, **kw):
    return pu.train(_model(eta), xt, x, validation=val, **{**OPTIONS, **kw})


def test_training_on_two_workers_matches_the_single_process_run(client):
    xt, x, eta = _data(48)
    val = (xt[36:], x[36:])
    local = _run(xt[:36], x[:36], eta, val)
    dist = _run(xt[:36], x[:36], eta, val, client=client)
    assert dist.steps == local.steps == 6
    # same seed, same minibatches: only the order of the sums differs (rounding, float64)
    np.testing.assert_allclose(dist.history.step_loss, local.history.step_loss, rtol=1e-12)
    np.testing.assert_allclose(dist.history.epoch_val_loss, local.history.epoch_val_loss,
                               rtol=1e-12)
    np.testing.assert_allclose(dist.final_model.operator.matrix,
                               local.final_model.operator.matrix, rtol=1e-10, atol=1e-12)
    assert dist.best_epoch == local.best_epoch


def test_sharded_reconstruction_and_loss_match_in_process(cluster, client):
    xt, x, eta = _data(50)
    model = _model(eta)
    for weights in (None, "harmonic"):
        kw = dict(iterations=6, omega=10.0, weights=weights)
        here = pu.reconstruct(model, xt, **kw)
        there = pu.reconstruct(model, xt, client=client, **kw)
        np.testing.assert_allclose(there, here, rtol=1e-13, atol=1e-15)
        assert pu.unrolled_loss(model, xt, x, client=client, **kw) == pytest.approx(
            pu.unrolled_loss(model, xt, x, **kw), rel=1e-12)
    # one task per chunk of 7 signals (8 chunks, the last one short): the same result
    from pdunroll.learning.distributed import reconstruct_parts

    steps = pu.step_sizes(model.operator, omega=10.0)
    np.testing.assert_allclose(reconstruct_parts(client, model, xt, 6, steps, None, chunk=7),
                               pu.reconstruct(model, xt, iterations=6, steps=steps), rtol=1e-13,
                               atol=1e-15)
    with pytest.raises(ValueError, match="chunk must be a positive integer"):
        reconstruct_parts(client, model, xt, 6, steps, None, chunk=0)


def test_the_learner_trains_and_predicts_on_a_client_or_an_address(cluster, client):
    xt, x, eta = _data(30)
    options = dict(eta=eta, iterations=4, epochs=1, batch_size=10, progress=False)
    here = pu.OperatorLearner(**options).fit(xt, x)
    there = pu.OperatorLearner(**options, client=client).fit(xt, x)
    np.testing.assert_allclose(there.history_.step_loss, here.history_.step_loss, rtol=1e-12)
    np.testing.assert_allclose(there.predict(xt), pu.reconstruct(
        there.model_, xt, iterations=4), rtol=1e-13, atol=1e-15)
    # an address (connected for each call) survives scikit-learn's clone, a Client does not
    by_address = pu.OperatorLearner(**options, client=cluster.scheduler_address)
    sklearn = pytest.importorskip("sklearn", reason="scikit-learn not installed")
    fitted = sklearn.base.clone(by_address).fit(xt, x)
    assert fitted.history_.step_loss == there.history_.step_loss  # same shards: bit for bit
    assert fitted.score(xt, x) == pytest.approx(there.score(xt, x), rel=1e-12)
    with pytest.raises(TypeError, match="client must be a dask.distributed Client or a "
                                        "scheduler address, got int"):
        pu.OperatorLearner(**options, client=8786).fit(xt, x)


def test_a_killed_worker_is_survived_with_the_same_result(client, tmp_path):
    xt, x, eta = _data(36)
    pids = client.run(os.getpid)
    killed = []

    def kill_one(info):
        if info["step"] == 2:  # between steps: the next one finds a shard lost
            addr = sorted(pids)[0]
            os.kill(pids[addr], signal.SIGKILL)
            killed.append(addr)

    local = _run(xt, x, eta, None)
    dist = _run(xt, x, eta, None, client=client, callback=kill_one,
                checkpoint=tmp_path / "ck.npz")
    assert killed and dist.steps == local.steps
    np.testing.assert_allclose(dist.history.step_loss, local.history.step_loss, rtol=1e-12)
    np.testing.assert_allclose(dist.final_model.operator.matrix,
                               local.final_model.operator.matrix, rtol=1e-10, atol=1e-12)
    client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed worker

    # the lost shard goes to the least loaded worker: the parts stay spread over both
    grad = DaskGradient(client, xt, x, FULL5)
    holders = client.who_has(grad._parts.futures)
    victim = holders[grad._parts.futures[0].key][0]
    os.kill(client.run(os.getpid)[victim], signal.SIGKILL)
    model, idx = _model(eta), np.arange(36)
    steps = pu.step_sizes(model.operator, omega=10.0)
    assert float(grad(model, idx, steps)[0]) == pytest.approx(
        float(LocalGradient(xt, x, FULL5)(model, idx, steps)[0]), rel=1e-13)
    holders = client.who_has(grad._parts.futures)
    assert len({h[0] for h in holders.values()}) == 2


def test_a_lost_client_ends_with_the_checkpoint_saved(cluster, client, tmp_path):
    xt, x, eta = _data(36)
    ck = tmp_path / "ck.npz"
    doomed = Client(cluster)

    def close_at_step_4(info):
        if info["step"] == 4:
            doomed.close()

    with pytest.raises(ConnectionError):
        _run(xt, x, eta, None, client=doomed, callback=close_at_step_4, checkpoint=ck)
    state, _ = pu.load_checkpoint(ck, _model(eta).operator.params)
    assert state.step == 4
    # nothing trained is lost: resuming on another client ends bit for bit where an
    # uninterrupted run on the same number of workers ends
    resumed = _run(xt, x, eta, None, client=client, checkpoint=ck, resume=True)
    whole = _run(xt, x, eta, None, client=client)
    assert resumed.history.step_loss == whole.history.step_loss
    assert np.array_equal(resumed.final_model.operator.matrix, whole.final_model.operator.matrix)


def test_local_cluster_workers_are_single_threaded_and_untrimmed(cluster, client):
    info = client.scheduler_info()["workers"].values()
    assert [w["nthreads"] for w in info] == [1, 1]
    trims = client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_")
    assert set(trims.values()) == {cluster.parent_trim}  # Dask's default would be "65536"
    with pytest.raises(ValueError, match="n_workers must be a positive integer"):
        local_cluster(0)


def test_bad_client_arguments_are_named(client):
    xt, x, eta = _data(12)
    with pytest.raises(TypeError, match="client must be a dask.distributed Client"):
        _run(xt, x, eta, None, client="tcp://127.0.0.1:8786")
    with pytest.raises(ValueError, match="client or minibatch_gradient"):
        _run(xt, x, eta, None, client=client, minibatch_gradient=LocalGradient)
    with pytest.raises(ValueError, match="shards must be a positive integer"):
        DaskGradient(client, xt, x, FULL5, shards=0)


def test_a_missing_dask_is_named_with_its_install_command(client, monkeypatch):
    xt, x, eta = _data(12)
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    with pytest.raises(ImportError, match=r"client= needs Dask distributed: pip install dask "
                                          r"distributed \(from a checkout also: pip install -e "):
        _run(xt, x, eta, None, client=client)


def test_a_missing_dask_is_named_by_the_command_line(tmp_path, monkeypatch, capsys):
    from pdunroll import cli

    monkeypatch.setitem(sys.modules, "distributed", None)
    assert cli.main(["evaluate", str(tmp_path / "operator.npz"), "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "--workers needs Dask distributed: pip install dask distributed (from a checkout " \
           "also: pip install -e" in err, err


TINY = ["--signals", "6", "--seconds", "0.25", "--n", "32", "--iterations", "4", "--epochs", "2",
        "--batch-size", "16", "--quiet"]


def _learned_mse(text):
    """The test MSE of the result's row ("learned operator", or its start when no epoch
    improved)."""
    return float([ln for ln in text.splitlines()
                  if "learned operator" in ln or "no epoch improved" in ln][0].split()[-2])


def test_cli_trains_and_evaluates_on_a_scheduler_as_in_process(cluster, tmp_path, capsys):
    from pdunroll import cli

    assert cli.main(["train", "speech", "--out", str(tmp_path / "here"), *TINY]) == 0
    here = json.loads((tmp_path / "here" / "results.json").read_text())["test"]
    assert cli.main(["train", "speech", "--out", str(tmp_path / "there"), *TINY,
                     "--scheduler", cluster.scheduler_address]) == 0
    there = json.loads((tmp_path / "there" / "results.json").read_text())["test"]
    # the same training; the test set is reconstructed in other chunks on the workers, which
    # float32 products (the speech default) round differently: float32's precision
    assert [r["mse"] for r in there] == pytest.approx([r["mse"] for r in here], rel=1e-6)
    capsys.readouterr()
    op = str(tmp_path / "there" / "operator.npz")
    assert cli.main(["evaluate", op, "--workers", "2"]) == 0
    assert _learned_mse(capsys.readouterr().out) == pytest.approx(there[2]["mse"], rel=1e-4)
    assert cli.main(["evaluate", op, "--scheduler", "nonsense://x"]) == 2
    assert "--scheduler nonsense://x: cannot connect" in capsys.readouterr().err


def test_importing_pdunroll_and_training_does_not_import_dask():
    code = ("import sys, pdunroll, pdunroll.learning.training, pdunroll.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def _csv(path):
    # timings (train_seconds, Linf1_seconds, ...) differ from run to run
    return [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in csv_rows(path)]


def _same_rows(a, b):
    assert [list(r) for r in a] == [list(r) for r in b]
    for ra, rb in zip(a, b, strict=True):
        for k in ra:
            try:
                assert float(ra[k]) == pytest.approx(float(rb[k]), rel=1e-9), k
            except ValueError:
                assert ra[k] == rb[k], k


@pytest.mark.parametrize(("script", "argv", "csv"), [
    ("eusipco_fig3", ["--L", "2", "4", "--l-inf", "8", "--l-inf2", "0", "--variants", "full",
                      "asymptotic", "--conventions", "exact", "--dtype", "float64"],
     "fig3.csv"),
    ("ergodic_fig12", ["--d", "1", "2"], "fig12.csv"),
])
def test_experiment_sweeps_on_a_scheduler_write_the_same_csv(cluster, tmp_path, script, argv,
                                                             csv, speech_dir):
    """On the IEEE corpus, or on the synthetic corpus of the ``speech_dir`` fixture."""
    module, data = experiment(script), speech_dir
    common = ["--quick", "--data", str(data), "--epochs", "1", "--max-train", "64",
              "--max-test", "16", "--quiet", *argv]
    assert module.main([*common, "--out", str(tmp_path / "here")]) == 0
    assert module.main([*common, "--out", str(tmp_path / "there"),
                        "--scheduler", cluster.scheduler_address]) == 0
    here, there = _csv(tmp_path / "here" / csv), _csv(tmp_path / "there" / csv)
    assert len(here) == 4
    _same_rows(there, here)
    if script == "ergodic_fig12":
        _same_rows(_csv(tmp_path / "there" / "fig12_steps.csv"),
                   _csv(tmp_path / "here" / "fig12_steps.csv"))


def test_workers_in_another_precision_are_refused():
    jnp = pytest.importorskip("jax.numpy", reason="jax not installed")
    import jax

    jax.config.update("jax_enable_x64", True)  # here, as the conftest's jax backend does
    xt, x, eta = _data(12)
    model = pu.AnalysisModel(pu.DenseOperator(jnp.asarray(pu.dct_matrix(N))), f=pu.L1Norm(),
                             g=pu.LinfBall(eta))
    steps = pu.step_sizes(model.operator, omega=10.0)
    with local_cluster(1) as c, Client(c) as cl:  # workers without JAX_ENABLE_X64: float32
        with pytest.raises(TypeError, match="workers computed in float32.*JAX_ENABLE_X64"):
            DaskGradient(cl, jnp.asarray(xt), jnp.asarray(x), FULL5)(
                model, np.arange(6), steps)
        with pytest.raises(TypeError, match="workers computed in float32"):
            pu.reconstruct(model, jnp.asarray(xt), iterations=3, client=cl)
