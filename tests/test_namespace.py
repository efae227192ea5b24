"""One namespace policy: NumPy arrays use NumPy's own namespace, so every array-API function the
package calls must exist there at the oldest NumPy that pyproject allows (the CI job on the
oldest versions runs this test there), and in the standard itself (array_api_strict)."""

import re
from pathlib import Path

import numpy as np
import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "pdunroll"
# xp.name, xp.linalg.name, _xp(x).name, xp_of(x).name
CALL = re.compile(r"\b(?:xp|_xp\([^()]*\)|xp_of\([^()]*\))\.((?:linalg\.)?[a-z_][a-z0-9_]*)")


def _used_names() -> set[str]:
    names = set()
    for path in SRC.rglob("*.py"):
        names |= set(CALL.findall(path.read_text()))
    return names


def _has(ns, dotted: str) -> bool:
    for part in dotted.split("."):
        if not hasattr(ns, part):
            return False
        ns = getattr(ns, part)
    return True


def test_the_scan_finds_the_calls():
    names = _used_names()
    assert {"cumulative_sum", "linalg.vector_norm", "where", "concat", "isdtype"} <= names


def test_numpy_own_namespace_has_every_function_the_package_calls():
    missing = sorted(n for n in _used_names() if not _has(np, n))
    assert not missing, f"NumPy {np.__version__} lacks {missing}: raise the floor in pyproject"


def test_every_call_is_in_the_array_api_standard():
    xps = pytest.importorskip("array_api_strict", reason="array_api_strict is not installed")
    missing = sorted(n for n in _used_names() if not _has(xps, n))
    assert not missing, f"not in the array API standard: {missing}"


def test_pyproject_floor_is_a_numpy_with_a_complete_namespace():
    """NumPy 2.1 added cumulative_sum (Simplex); 1.26 and 2.0 fail the test above."""
    text = (SRC.parents[1] / "pyproject.toml").read_text()
    floor = re.search(r'"numpy>=([0-9.]+)"', text).group(1)
    assert tuple(int(p) for p in floor.split(".")) >= (2, 1), floor
