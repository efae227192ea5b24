"""The Results pages' tables come from the committed CSVs: the main page's fit its width (at most
six columns) and are on it as printed; the appendix has every table it lists."""

import importlib
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tables():
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        return importlib.import_module("results_tables")
    finally:
        sys.path.remove(str(ROOT / "experiments"))


def _cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


@pytest.mark.parametrize("page, which", [("results.md", "MAIN"),
                                         ("results-appendix.md", "APPENDIX")])
def test_tables_are_on_their_page(tables, page, which):
    text = (ROOT / "docs" / page).read_text()
    for title, fn in getattr(tables, which):
        header, rule, *body = fn().splitlines()
        assert body, f"{title}: no rows (CSV missing?)"
        width = len(_cells(header))
        assert all(len(_cells(r)) == width for r in [rule, *body]), title
        if which == "MAIN":
            assert width <= 6, f"{title}: {width} columns do not fit the page"
            assert fn() in text, (f"{title}: the page's table differs from the CSV's "
                                  "(python experiments/results_tables.py prints it)")
        else:
            assert header in text, f"{title}: not on {page}"


def test_main_fig3_gains_are_the_csvs(tables):
    """The exact convention's gain over the DCT at L_inference = 10⁴, computed here from the two
    CSVs, is the main table's fourth and fifth column."""
    linf = {r["operator"]: float(r["test_mse"])
            for r in tables.rows("eusipco_fig3/linf_1e4_all.csv")}
    run = "eusipco_fig3_n320_exact_lr5e-4"
    body = tables.fig3_main().splitlines()[2:]
    for line in body:
        L, _, _, full, asym, _ = _cells(line)
        for got, variant in ((full, "full"), (asym, "asymptotic")):
            want = 10 * math.log10(linf["DCT_exact"] / linf[f"{run}/K_L{L}_{variant}_exact"])
            assert float(got) == pytest.approx(want, abs=0.005)


def test_gains_over_seeds_are_mean_and_sample_std(tables):
    assert tables.mean_std([0.47]) == "+0.47"
    assert tables.mean_std([0.1, 0.2, 0.3]) == "+0.20 ± 0.10 (3)"
    assert tables.mean_std([-0.5, -0.3]) == "-0.40 ± 0.14 (2)"


def test_small_numbers_are_written_with_a_true_minus(tables):
    assert tables.sci(0.0) == "0"
    assert tables.sci(4.855e-03) == "4.9e−3"
    assert tables.sci(1.665e-16) == "1.7e−16"
    assert tables.db(2.0, 1.0) == "+3.01"


def test_speech_targets_gain_is_learned_minus_dct_and_decides_met(tables):
    """Each target row's gain is its learned minus its DCT SNR (the same test frames), and
    "met" says whether it reaches the target's least gain."""
    body = tables.speech_targets_main().splitlines()[2:]
    assert len(body) == len(tables.SPEECH_TARGETS)
    for line, (_, _, _, least) in zip(body, tables.SPEECH_TARGETS, strict=True):
        _, _, _, snrs, gain, met = _cells(line)
        learned, dct = (float(v) for v in snrs.split(" / "))
        assert float(gain) == pytest.approx(learned - dct, abs=0.011)
        assert met.startswith("**met**") == (float(gain) >= least)
