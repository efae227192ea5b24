"""The published speech experiments run end to end on the IEEE corpus, or without it on the
synthetic corpus of the ``speech_dir`` fixture (tiny settings)."""

import json

import numpy as np
import pytest
from experiment_scripts import csv_rows, experiment


def test_eusipco_fig3_tiny(tmp_path, speech_dir):
    fig3 = experiment("eusipco_fig3")
    argv = ["--quick", "--data", str(speech_dir), "--out", str(tmp_path), "--L", "2", "4",
            "--epochs", "1", "--max-train", "64", "--max-test", "16", "--l-inf", "8",
            "--l-inf2", "12", "--inf2-frames", "4", "--variants", "full", "asymptotic",
            "--quiet"]
    assert fig3.main(argv) == 0
    rows = csv_rows(tmp_path / "fig3.csv")
    assert [(r["L_train"], r["convention"], r["variant"]) for r in rows] == [
        (L, c, v) for L in ("2", "4") for c in ("exact", "released")
        for v in ("full", "asymptotic")]
    assert all(float(r["test_mse_Linf1"]) > 0 and int(r["steps"]) == 2 for r in rows)
    assert all(r["Linf2_frames"] == "4" and r["Linf1_frames"] == "16" for r in rows)
    # the released convention evaluates with its Frobenius-norm steps: a less converged DCT
    dct = {r["convention"]: float(r["dct_mse_L"]) for r in rows if r["L_train"] == "4"}
    assert dct["exact"] != dct["released"]
    assert (tmp_path / "fig3.png").stat().st_size > 0
    # a rerun resumes: nothing left to do, the CSV unchanged
    before = (tmp_path / "fig3.csv").read_text()
    assert fig3.main(argv) == 0
    assert (tmp_path / "fig3.csv").read_text() == before
    # the very large L_inference of the saved operators (here 20 steps on 3 frames)
    linf = experiment("eusipco_linf")
    assert linf.main([str(tmp_path), "--data", str(speech_dir), "--l-inf", "20",
                      "--frames", "3", "--n", "128"]) == 0
    got = csv_rows(tmp_path / "linf.csv")
    assert len(got) == 2 + 8 and all(float(r["test_mse"]) > 0 for r in got)
    assert {r["convention"] for r in got} == {"exact", "released"}
    # the released operators are evaluated with the released step sizes, like the DCT rows
    by_name = {r["operator"]: float(r["test_mse"]) for r in got}
    assert by_name["DCT_exact"] != by_name["DCT_released"]
    # the Results page lists them by convention, its DCT first, then by L_training and gradient
    order = [r["operator"].rpartition("/")[2]
             for r in sorted(got, key=experiment("results_tables")._linf_order)]
    assert order == ["DCT_exact"] + [f"K_L{L}_{v}_exact" for L in (2, 4)
                                     for v in ("asymptotic", "full")] + [
        "DCT_released"] + [f"K_L{L}_{v}_released" for L in (2, 4) for v in ("asymptotic", "full")]
    # all dev/ frames (--frames 0) for two operators, in the order given, to another CSV
    only = ["DCT_released", f"{tmp_path.name}/K_L2_full_exact"]
    assert linf.main([str(tmp_path), "--data", str(speech_dir), "--l-inf", "20", "--frames", "0",
                      "--n", "128", "--out", str(tmp_path / "all.csv"), "--only", *only]) == 0
    got = csv_rows(tmp_path / "all.csv")
    assert [r["operator"] for r in got] == only
    from pdunroll import read_wav_folder

    every = sum(len(s) // 128 for s in read_wav_folder(speech_dir / "dev")[0])  # n = 128
    assert {int(r["frames"]) for r in got} == {every}
    assert float(got[0]["test_mse"]) != by_name["DCT_released"]



def test_eusipco_fig3_seeds_share_the_dct(tmp_path, speech_dir):
    """Runs with other seeds add their rows and operators to the same folder and take the DCT's
    test errors from its dct_mse.json instead of computing them again (all test frames here: a
    seeded subset differs per seed and is scored again)."""
    fig3 = experiment("eusipco_fig3")
    argv = ["--quick", "--data", str(speech_dir), "--out", str(tmp_path), "--L", "2",
            "--epochs", "1", "--max-train", "64", "--max-test", "10000000", "--l-inf", "8",
            "--l-inf2", "0", "--variants", "full", "--conventions", "exact", "--quiet"]
    assert fig3.main(argv) == 0
    cache = tmp_path / "dct_mse.json"
    known = json.loads(cache.read_text())
    first = csv_rows(tmp_path / "fig3.csv")[0]
    assert sorted(known.values()) == sorted([float(first["dct_mse_L"]),
                                             float(first["dct_mse_Linf1"])])
    cache.write_text(json.dumps(dict.fromkeys(known, 1.0)))  # marks the values taken from it
    assert fig3.main([*argv, "--seed", "1"]) == 0
    rows = csv_rows(tmp_path / "fig3.csv")
    assert [r["seed"] for r in rows] == ["0", "1"]
    assert rows[1]["dct_mse_L"] == rows[1]["dct_mse_Linf1"] == "1.0"
    assert rows[1]["final_train_loss"] != rows[0]["final_train_loss"]
    assert sorted(p.name for p in tmp_path.glob("K_*.npy")) == [
        "K_L2_full_exact.npy", "K_L2_full_seed1_exact.npy"]
    assert fig3.main([*argv, "--seed", "1"]) == 0  # both seeds done: nothing added
    assert len(csv_rows(tmp_path / "fig3.csv")) == 2


def test_eusipco_fig3_resumes_from_its_checkpoint(tmp_path, speech_dir, monkeypatch):
    """A run stopped after training (here in its scoring) continues from its checkpoint: the
    same operator and row as a run without the stop, marked resumed; no checkpoint is left."""
    fig3 = experiment("eusipco_fig3")
    argv = ["--quick", "--data", str(speech_dir), "--L", "2", "--epochs", "2",
            "--max-train", "64", "--max-test", "16", "--l-inf", "4", "--l-inf2", "0",
            "--variants", "full", "--conventions", "exact", "--quiet"]
    assert fig3.main([*argv, "--out", str(tmp_path / "once")]) == 0
    scoring = fig3.test_mse

    def stop(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(fig3, "test_mse", stop)
    with pytest.raises(KeyboardInterrupt):
        fig3.main([*argv, "--out", str(tmp_path / "stopped")])
    assert [p.name for p in (tmp_path / "stopped").glob("checkpoint_*")] == [
        "checkpoint_L2_full_exact.npz"]
    monkeypatch.setattr(fig3, "test_mse", scoring)
    assert fig3.main([*argv, "--out", str(tmp_path / "stopped")]) == 0
    once, resumed = (csv_rows(tmp_path / d / "fig3.csv") for d in ("once", "stopped"))
    assert [r["resumed"] for r in once + resumed] == ["0", "1"]
    for key in ("final_train_loss", "test_mse_L", "test_mse_Linf1", "steps"):
        assert resumed[0][key] == once[0][key], key
    assert not list((tmp_path / "stopped").glob("checkpoint_*"))
    assert (np.load(tmp_path / "once" / "K_L2_full_exact.npy")
            == np.load(tmp_path / "stopped" / "K_L2_full_exact.npy")).all()

def test_ergodic_fig12_tiny(tmp_path, speech_dir):
    fig12 = experiment("ergodic_fig12")
    argv = ["--quick", "--data", str(speech_dir), "--out", str(tmp_path), "--d", "1", "2",
            "--epochs", "1", "--max-train", "64", "--max-test", "16", "--quiet"]
    assert fig12.main(argv) == 0
    runs = csv_rows(tmp_path / "fig12.csv")
    assert [(r["d"], r["weighting"]) for r in runs] == [
        ("1", "plain"), ("1", "ergodic"), ("2", "plain"), ("2", "ergodic")]
    # d = 1: α₁ = 1, plain and ergodic are the same run
    assert runs[0]["final_train_loss"] == runs[1]["final_train_loss"]
    assert runs[2]["final_train_loss"] != runs[3]["final_train_loss"]
    assert len(csv_rows(tmp_path / "fig12_steps.csv")) == 4 * 2
    assert (tmp_path / "fig12.png").stat().st_size > 0
    # resumed with one more d: the four runs are kept as they are, only d = 3 is added
    before = (tmp_path / "fig12_steps.csv").read_text().splitlines()
    d = argv.index("--d")
    assert fig12.main([*argv[:d + 3], "3", *argv[d + 3:]]) == 0
    runs = csv_rows(tmp_path / "fig12.csv")
    assert [(r["d"], r["weighting"]) for r in runs][4:] == [("3", "plain"), ("3", "ergodic")]
    after = (tmp_path / "fig12_steps.csv").read_text().splitlines()
    assert after[:len(before)] == before and len(after) == len(before) + 2 * 2
    # --steps-every 2: one row per run, the mean of its two steps, at the second step
    blocks = tmp_path / "blocks"
    out = argv.index("--out")
    assert fig12.main([*argv[:out + 1], str(blocks), *argv[out + 2:], "--steps-every",
                       "2"]) == 0
    every = csv_rows(tmp_path / "fig12_steps.csv")[:8]
    got = csv_rows(blocks / "fig12_steps.csv")
    assert [(r["d"], r["weighting"], r["step"]) for r in got] == [
        (r["d"], r["weighting"], "2") for r in runs[:4]]
    for i, r in enumerate(got):
        for key in ("loss", "grad_norm"):
            pair = [float(e[key]) for e in every[2 * i:2 * i + 2]]
            assert float(r[key]) == pytest.approx(sum(pair) / 2, rel=1e-12)
    assert ([r["final_train_loss"] for r in csv_rows(blocks / "fig12.csv")]
            == [r["final_train_loss"] for r in runs[:4]])  # the same runs
    with pytest.raises(SystemExit):
        fig12.main([*argv, "--steps-every", "0"])


def test_ergodic_losses_use_the_training_step_sizes(speech_dir):
    """The training losses of a row are the unrolled loss with the ω the operator was trained
    with (not the library's default ω), on all training frames."""
    import pdunroll as pu

    fig12 = experiment("ergodic_fig12")
    args, cfg = fig12.parse(["--quick", "--data", str(speech_dir), "--epochs", "1",
                             "--max-train", "64", "--max-test", "16"])
    train, test = fig12.frames_for(args, cfg)
    row, _ = fig12.run((2, "ergodic"), train=train, test=test, cfg=cfg, seed=0, progress=False)
    start = fig12.dct_model(cfg["n"], train.eta)

    def loss(omega):
        return pu.unrolled_loss(start, train.x_tilde, train.x_true, iterations=2,
                                weights="harmonic", steps=pu.StepRule(omega=omega))

    assert row["initial_train_loss"] == pytest.approx(loss(10.0), rel=1e-12)
    assert abs(loss(10.0) - loss(pu.DEFAULT_OMEGA)) > 1e-3 * loss(10.0)


def test_ergodic_blocks_average_the_steps_of_each_block():
    blocks = experiment("ergodic_fig12").blocks
    steps = [{"d": 2, "step": k, "loss": float(k), "grad_norm": 2.0 * k, "lr": 1.0}
             for k in range(1, 6)]
    assert blocks(steps, 1) is steps
    assert blocks(steps, 2) == [
        {"d": 2, "step": 2, "loss": 1.5, "grad_norm": 3.0, "lr": 1.0},
        {"d": 2, "step": 4, "loss": 3.5, "grad_norm": 7.0, "lr": 1.0},
        {"d": 2, "step": 5, "loss": 5.0, "grad_norm": 10.0, "lr": 1.0}]


def test_eusipco_fig3_torch_equals_numpy(tmp_path, speech_dir):
    """``--backend torch`` trains and scores the same operators as NumPy (float64), and its
    rows say which backend and dtype made them."""
    pytest.importorskip("torch")
    fig3 = experiment("eusipco_fig3")
    rows = {}
    for backend in ("numpy", "torch"):
        out = tmp_path / backend
        assert fig3.main(["--quick", "--data", str(speech_dir), "--out", str(out), "--L", "3",
                          "--epochs", "1", "--max-train", "64", "--max-test", "16",
                          "--l-inf", "8", "--l-inf2", "0", "--variants", "full", "asymptotic",
                          "--conventions", "exact", "released", "--dtype", "float64",
                          "--backend", backend, "--quiet"]) == 0
        rows[backend] = csv_rows(out / "fig3.csv")
    for a, b in zip(rows["numpy"], rows["torch"], strict=True):
        assert (a["backend"], b["backend"], b["dtype"]) == ("numpy", "torch", "float64")
        for key in ("final_train_loss", "test_mse_L", "test_mse_Linf1", "dct_mse_Linf1"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=1e-9), key
    with pytest.raises(SystemExit):
        fig3.main(["--quick", "--data", str(speech_dir), "--compile"])


def test_what_the_keep_steps_write_is_not_ignored_by_git():
    """``long_runs.sh``'s fig3_keep, runs_keep and ergodic_keep copy rows, DCT scores and the
    checkpoints of runs in progress to where they are committed: none of those places may be
    ignored (a checkpoint under experiments/progress/ once was, by the ``*.npz`` rule, and was
    lost)."""
    import shutil
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("needs git and a git checkout of the repository")
    script = (root / "experiments" / "long_runs.sh").read_text()
    kept = ["experiments/progress/fig3_paper_exact/checkpoint_L20_full_exact.npz",
            "experiments/progress/speech_fp_more2/checkpoint.npz",
            "docs/_static/results/eusipco_fig3/paper/fig3_exact.csv",
            "docs/_static/results/eusipco_fig3/paper/dct_mse.json",
            "docs/_static/results/ergodic_fig12/long/seed0/fig12.csv",
            "docs/_static/results/denoise/model_sigma25.npz"]
    assert "PROGRESS=experiments/progress\n" in script
    assert "FIG3_PROGRESS=$PROGRESS/fig3_paper_exact" in script
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *kept], cwd=root,
                             capture_output=True, text=True)
    assert ignored.stdout == "", f"ignored by git: {ignored.stdout}"


def test_omega_sweep_scores_validation_frames_at_each_omega(tmp_path, speech_dir):
    """experiments/omega_sweep.py: one row per model and ω, each the SNR of L Chambolle-Pock
    steps with σ = ω·0.99/‖K‖₂, τ = 0.99/(ω‖K‖₂) on the validation frames of the command
    line's split, computed here with the steps made by hand."""
    import pdunroll as pu
    from pdunroll.tasks import speech

    sweep = experiment("omega_sweep")
    data = speech.datasets(speech.SpeechOptions(data=speech_dir, n=32, m=64).resolved())
    start = data.start
    K = np.asarray(start.operator.params) + 0.01 * np.random.default_rng(0).standard_normal(
        (64, 32))
    learned = start.with_params(K)
    path = pu.LearnedModel(learned, 3, omega=10.0, metadata={"n": 32, "m": 64}).save(
        tmp_path / "op.npz")
    out = tmp_path / "omega.csv"
    assert sweep.main([str(path), "-L", "3", "--omega", "1", "20", "--data", str(speech_dir),
                       "--backend", "numpy", "--dtype", "float64", "--out", str(out)]) == 0
    rows = csv_rows(out)
    assert [(r["model"], r["omega"]) for r in rows] == [
        (name, w) for w in ("1.0", "20.0") for name in ("DCT frame start", "op")]
    x_tilde, x_true = data.sets[1]
    for r in rows:
        model = start if r["model"] == "DCT frame start" else learned
        norm = np.linalg.norm(np.asarray(model.operator.params), 2)
        w = float(r["omega"])
        steps = pu.StepSizes(sigma=w * 0.99 / norm, tau=0.99 / (w * norm), theta=1.0,
                             op_norm=norm)
        x = pu.chambolle_pock(model, x_tilde, iterations=3, steps=steps).x
        assert float(r["snr_db"]) == pytest.approx(pu.snr(x, x_true), abs=1e-3)
        assert int(r["frames"]) == x_tilde.shape[0]
    assert rows[1]["snr_db"] != rows[3]["snr_db"]
