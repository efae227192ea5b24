"""The scripts of experiments/ as modules, and the rows of the CSV files they write: what the
tests of the experiments share."""

import csv
import importlib
import sys
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def experiment(name: str):
    """The module of ``experiments/<name>.py`` (imported with experiments/ on the path, as the
    scripts import their ``_common``)."""
    sys.path.insert(0, str(EXPERIMENTS))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(EXPERIMENTS))


def csv_rows(path) -> list[dict]:
    """The rows of a CSV file as dicts of strings."""
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))
