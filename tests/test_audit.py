"""The gradient audit: check_gradients on the tutorials' models and `pdunroll audit` end to end
(the CLI as a user runs it), and that an approximation passed as exact makes it fail."""

import math
import subprocess
import sys

import pytest

import pdunroll as pu
from pdunroll.audit import check_gradients
from pdunroll.problems.tutorials import PROBLEMS, tutorial_problem


def test_every_exact_method_agrees_on_the_speech_model():
    model, x_tilde, x_true, options = tutorial_problem("speech")
    res = check_gradients(model, x_tilde, x_true, iterations=10, **options)
    assert res.ok, res.table()
    rows = {(r.method, r.reference): r for r in res.rows}
    assert rows[("Full()", "finite differences (operator)")].error <= 1e-5
    assert rows[("Truncated(10)", "Full()")].error <= 1e-10
    assert rows[("Full(segments=3)", "Full()")].error <= 1e-10
    for lib in ("torch", "jax"):  # where installed, autodiff of the same loop is a row
        label = "torch.autograd" if lib == "torch" else "jax.grad"
        row = rows[("Full()", label)]
        assert row.note.startswith("skipped") or row.error <= 1e-10
    assert "all agree" in str(res)


def test_an_approximation_given_as_exact_is_a_disagreement():
    model, x_tilde, x_true, options = tutorial_problem("speech")
    res = check_gradients(model, x_tilde, x_true, iterations=10, autodiff=False,
                          methods=[pu.Full(relax_primal=True)], **options)
    assert not res.ok
    (bad,) = res.failures
    assert bad.method == "Full(relax_primal=True)" and bad.error > bad.tolerance
    assert "1 disagreement" in res.table() and "FAIL" in res.table()


@pytest.mark.parametrize("name", PROBLEMS)
def test_finite_differences_rows_cover_every_parameter_group(name):
    model, x_tilde, x_true, options = tutorial_problem(name)
    res = check_gradients(model, x_tilde, x_true, iterations=6, autodiff=False,
                          methods=[], **options)
    groups = {r.reference for r in res.rows}
    want = {"finite differences (x_tilde)",
            "finite differences (G)" if name == "segmentation" else
            "finite differences (operator)"}
    assert want <= groups and res.ok, res.table()
    assert all(not math.isnan(r.error) for r in res.rows)


def test_float32_is_refused():
    model, x_tilde, x_true, options = tutorial_problem("speech")
    m32 = pu.AnalysisModel(pu.DenseOperator(model.operator.matrix.astype("float32")), model.f,
                           model.g)
    with pytest.raises(TypeError, match="float64"):
        check_gradients(m32, x_tilde.astype("float32"), x_true.astype("float32"), iterations=3)


def test_pdunroll_audit_command_runs_and_exits_zero():
    out = subprocess.run([sys.executable, "-m", "pdunroll.cli", "audit", "--problem", "speech",
                          "--iterations", "6"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "finite differences (operator)" in out.stdout and "L = 6: all agree" in out.stdout
