"""tools/fuzz_inputs.py stays honest: it builds its 800-odd cases, and a tenth of them (every
tenth, API and command line) end as a clear error or a documented acceptance, none unclear,
silent, hanging or unexpectedly failing. The whole run: ``python tools/fuzz_inputs.py``."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "fuzz_inputs.py"
_spec = importlib.util.spec_from_file_location("fuzz_inputs", TOOL)
fuzz = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = fuzz  # dataclasses look their module up there
_spec.loader.exec_module(fuzz)


@pytest.fixture(scope="module")
def names(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    here = Path.cwd()
    try:
        yield fuzz.namespace(folder), folder
    finally:
        os.chdir(here)
        os.chmod(folder / "readonly", 0o700)


def test_the_cases_cover_arrays_scalars_files_and_the_command_line():
    cases = fuzz.cases()
    assert len(cases) >= 800
    assert sum(c.call.startswith("cli: ") for c in cases) >= 60
    assert sum(c.accept for c in cases) >= 50
    assert len({c.call for c in cases}) == len(cases)


@pytest.mark.parametrize("case", fuzz.cases()[::10], ids=lambda c: c.call[:60])
def test_a_sample_ends_clear_or_accepted(case, names, monkeypatch):
    ns, folder = names
    monkeypatch.chdir(folder)
    if "torch" in case.call and "torch" not in ns:
        pytest.skip("torch is not installed")
    if "readonly/" in case.call and os.geteuid() == 0:
        pytest.skip("root writes into a read-only folder")
    outcome, message = fuzz.run(case, ns, 60.0)
    assert outcome in ("clear", "accepted"), f"{outcome}: {message}"
