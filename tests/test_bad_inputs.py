"""Every bad input of docs/bad_inputs.py raises a TypeError or ValueError (FileNotFoundError
for a missing file) whose message names the argument; cases with a known defect are strict
expected failures with the defect as reason. The table the Reliability page includes is the one
the script writes now (regenerate it with ``python docs/bad_inputs.py``)."""

import importlib.util
import sys
import warnings
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "bad_inputs.py"
_spec = importlib.util.spec_from_file_location("docs_bad_inputs", SCRIPT)
bad_inputs = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bad_inputs  # dataclasses look their module up there
_spec.loader.exec_module(bad_inputs)


@pytest.fixture(scope="module")
def names(tmp_path_factory):
    """The script's names, built in a temporary folder; the cases run there too."""
    folder = tmp_path_factory.mktemp("bad_inputs")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ns = bad_inputs.namespace()
    return folder, ns


def _param(case):
    marks = [pytest.mark.xfail(strict=True, reason=case.finding)] if case.finding else []
    return pytest.param(case, id=f"{case.entry}: {case.call}", marks=marks)


def test_the_cases_cover_the_entry_points():
    entries = {case.entry for case in bad_inputs.CASES}
    assert {"chambolle_pock", "gradient", "vjp", "train", "step_sizes", "Full", "Truncated",
            "Asymptotic", "Implicit", "DenseOperator", "LinfBall", "quantize", "speech_frames",
            "load_operator", "save_operator", "estimate_norm"} <= entries
    assert len(bad_inputs.CASES) >= 40
    assert len({case.call for case in bad_inputs.CASES}) == len(bad_inputs.CASES)


@pytest.mark.parametrize("case", [_param(c) for c in bad_inputs.CASES])
def test_bad_input_gets_a_clear_error_naming_the_argument(case, names, monkeypatch):
    folder, ns = names
    monkeypatch.chdir(folder)
    err = bad_inputs.run(case, ns)
    assert err is not None, f"{case.call} raised nothing"
    assert isinstance(err, bad_inputs.CLEAR), f"{case.call}: {type(err).__name__}: {err}"
    assert bad_inputs.names_argument(case.argument, err), \
        f"{case.call}: the message does not name {case.argument!r}: {err}"


def test_the_generated_table_is_current():
    committed = bad_inputs.OUT.read_text()
    assert bad_inputs.table(bad_inputs.results()) == committed, \
        "docs/_generated/bad_inputs.md is stale: run python docs/bad_inputs.py"
