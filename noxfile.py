"""nox sessions: one test session per backend, lint, docs, benchmarks.

    nox -s tests-numpy      numpy + array_api_strict
    nox -s tests-torch      torch CPU (and CUDA when a GPU is present)
    nox -s tests-jax
    nox -s tests-cupy       needs a CUDA GPU
    nox -s oldest           the oldest versions pyproject allows (numpy + array_api_strict)
    nox -s lint docs bench
"""

import re
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "docs"]
nox.options.default_venv_backend = "venv"

BACKEND_PACKAGES = {
    "numpy": [],
    "torch": ["torch==2.13.0"],
    "jax": ["jax"],
    "cupy": ["cupy-cuda12x"],
}
BACKEND_MATRIX = {
    "numpy": "numpy,array_api_strict,array_api_strict_device1",
    "torch": "torch,torch_cuda",
    "jax": "jax",
    "cupy": "cupy",
}


@nox.session
@nox.parametrize("backend", list(BACKEND_PACKAGES))
def tests(session, backend):
    """The test suite restricted to one backend (PDUNROLL_BACKENDS selects the matrix rows)."""
    if BACKEND_PACKAGES[backend]:
        session.install(*BACKEND_PACKAGES[backend])
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs, env={"PDUNROLL_BACKENDS": BACKEND_MATRIX[backend]})


def oldest_requirements() -> list[str]:
    """The floors of pyproject's dependencies and test extra, pinned (``>=`` becomes ``==``)."""
    text = Path(__file__).with_name("pyproject.toml").read_text()
    block = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    test = re.search(r"^test = \[(.*?)\]", text, re.M).group(1)
    floors = re.findall(r'"([A-Za-z0-9_.-]+)>=([0-9.]+)[^"]*"', block + test)
    return [f"{name}=={version}" for name, version in floors]


@nox.session
def oldest(session):
    """The test suite on the oldest versions pyproject allows (NumPy and array_api_strict rows;
    torch and JAX are not pinned down here: their floors need wheels of other builds)."""
    session.install(*oldest_requirements())
    session.install("--no-deps", "-e", ".")
    session.run("pytest", "-q", *session.posargs,
                env={"PDUNROLL_BACKENDS": BACKEND_MATRIX["numpy"]})


@nox.session
def lint(session):
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "benchmarks", "experiments", "noxfile.py")


@nox.session
def docs(session):
    """Build the documentation with warnings as errors and run its doctests."""
    session.install("-e", ".[docs]")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")
    session.run("sphinx-build", "-W", "-b", "doctest", "docs", "docs/_build/doctest")


@nox.session
def bench(session):
    """asv benchmarks in the current environment (quick run)."""
    session.install("torch==2.13.0")
    session.install("-e", ".[bench,jax]")
    session.run("asv", "run", "--quick", "-E", "existing", "--show-stderr", *session.posargs)
