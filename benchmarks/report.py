"""Turn asv's results into docs/benchmarks.md (tables, targets) and docs/_static/benchmarks.png.

    python benchmarks/report.py [RESULTS_JSON]

Reads the results file of the commit of the last ``run.py`` run (or the file given), takes the
minimum over the recorded samples of every time (the least disturbed run on a shared machine),
and compares pdunroll's hand-written gradients with torch.autograd, jax.grad, the same recursion
in plain NumPy / torch and the matrix-product floor.
"""

from __future__ import annotations

import json
import math
import sys
from itertools import product
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent / "docs"
LS = (10, 100, 1000)
DTYPES = ("float32", "float64")
B = 30  # back-iterations of the truncated / asymptotic benchmarks (common.B_STEPS)
SPEECH = "bench_speech."
IMAGES = "bench_images."
THROUGHPUT = "bench_throughput."


def _unquote(v: str):
    v = v.strip("'\"")
    return int(v) if v.isdigit() else v


class Results:
    """asv results of one run: ``value(name, *params)`` (min of samples for times) or None."""

    def __init__(self, path: Path):
        data = json.loads(path.read_text())
        columns = data["result_columns"]
        self.data, self.params = {}, data.get("params", {})
        for name, row in data["results"].items():
            row = dict(zip(columns, row, strict=False))
            grid = [[_unquote(v) for v in values] for values in row["params"]]
            results = row["result"] or []
            samples = row.get("samples") or [None] * len(results)
            for key, res, smp in zip(product(*grid), results, samples, strict=False):
                if smp:
                    res = min(smp)
                if res is not None and not (isinstance(res, float) and math.isnan(res)):
                    self.data[(name, *key)] = res

    def value(self, name: str, *key):
        return self.data.get((name, *key))


def latest_results() -> tuple[Path, list]:
    runs = json.loads((HERE / "results" / "run_info.json").read_text())
    commit = runs[-1]["commit"]
    files = [p for p in (HERE / "results").glob(f"*/{commit[:8]}-*.json")]
    if not files:
        raise SystemExit(f"no asv results for commit {commit[:8]} under benchmarks/results")
    return max(files, key=lambda p: p.stat().st_mtime), runs


# --------------------------------------------------------------------------- formatting


def ms(t):
    return "–" if t is None else (f"{t * 1e3:.3g}" if t < 1 else f"{t * 1e3:,.0f}")


def mb(b):
    return "–" if b is None else (f"{b / 1e6:.3g}" if b < 1e9 else f"{b / 1e6:,.0f}")


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def rfmt(r, target=None, le=True):
    if r is None:
        return "–"
    mark = ""
    if target is not None:
        mark = " ✓" if (r <= target if le else r >= target) else " ✗"
    return f"{r:.2f}{mark}"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


# --------------------------------------------------------------------------- report


def collect(R: Results):
    """Every number the tables and the plot use, keyed by (what, dtype, L)."""
    g, bl, fw = (SPEECH + "SpeechGradient.", SPEECH + "SpeechBaselines.",
                 SPEECH + "SpeechForward.time_forward")
    d = {}
    for dt, L in product(DTYPES, LS):
        for be in ("numpy", "torch", "array_api_strict", "torch_cuda", "cupy"):
            for mode in ("full", "truncated", "asymptotic"):
                d[("t", be, mode, dt, L)] = R.value(g + "time_gradient", be, dt, mode, L)
                d[("m", be, mode, dt, L)] = R.value(g + "track_peak_memory", be, dt, mode, L)
            d[("fwd", be, dt, L)] = R.value(fw, be, dt, L)
        for impl in ("torch_autograd", "jax_grad", "plain_numpy", "plain_torch", "floor_numpy",
                     "floor_torch"):
            d[("t", impl, dt, L)] = R.value(bl + "time_gradient", impl, dt, L)
            d[("m", impl, dt, L)] = R.value(bl + "track_peak_memory", impl, dt, L)
        for impl in ("plain_numpy", "plain_torch", "floor_numpy", "floor_torch"):
            d[("fwd", impl, dt, L)] = R.value(fw, impl, dt, L)
        for mode in ("full", "truncated", "asymptotic"):
            d[("tape", mode, dt, L)] = R.value(SPEECH + "SpeechTape.track_tape_bytes", dt, mode, L)
        d[("saved", dt, L)] = R.value(SPEECH + "AutogradSaved.track_saved_bytes", dt, L)
    return d


def time_table(d):
    rows = []
    for dt, L in product(DTYPES, LS):
        tn, tt = d[("t", "numpy", "full", dt, L)], d[("t", "torch", "full", dt, L)]
        ag, jx = d[("t", "torch_autograd", dt, L)], d[("t", "jax_grad", dt, L)]
        rows.append([dt, L, ms(tn), ms(tt), ms(ag), ms(jx), ms(d[("t", "plain_numpy", dt, L)]),
                     ms(d[("t", "plain_torch", dt, L)]), ms(d[("t", "floor_numpy", dt, L)]),
                     ms(d[("t", "floor_torch", dt, L)]), rfmt(ratio(tt, ag), 0.5),
                     rfmt(ratio(tn, ag)), rfmt(ratio(tt, jx)),
                     rfmt(ratio(tn, d[("t", "floor_numpy", dt, L)]), 1.6),
                     rfmt(ratio(tt, d[("t", "floor_torch", dt, L)]), 1.6),
                     rfmt(ratio(tn, d[("t", "plain_numpy", dt, L)]), 1.15),
                     rfmt(ratio(tt, d[("t", "plain_torch", dt, L)]), 1.15)])
    return table(["dtype", "L", "pdunroll numpy", "pdunroll torch", "torch.autograd",
                  "jax.grad", "plain numpy", "plain torch", "floor numpy", "floor torch",
                  "torch / autograd (≤ 0.5)", "numpy / autograd", "torch / jax",
                  "numpy / floor (≤ 1.6)", "torch / floor (≤ 1.6)", "numpy / plain (≤ 1.15)",
                  "torch / plain (≤ 1.15)"], rows)


def memory_table(d):
    rows = []
    for dt, L in product(DTYPES, LS):
        tape, saved = d[("tape", "full", dt, L)], d[("saved", dt, L)]
        mn, mt = d[("m", "numpy", "full", dt, L)], d[("m", "torch", "full", dt, L)]
        ag, jx = d[("m", "torch_autograd", dt, L)], d[("m", "jax_grad", dt, L)]
        rows.append([dt, L, mb(tape), mb(saved), mb(mn), mb(mt), mb(d[("m", "plain_numpy", dt, L)]),
                     mb(d[("m", "plain_torch", dt, L)]), mb(ag), mb(jx),
                     rfmt(ratio(tape, saved), 0.6), rfmt(ratio(mn, ag), 0.35),
                     rfmt(ratio(mt, ag), 0.35), rfmt(ratio(mn, tape), 1.05),
                     rfmt(ratio(mt, tape), 1.05), rfmt(ratio(jx, ag))])
    return table(["dtype", "L", "tape", "autograd saves", "peak pdunroll numpy",
                  "peak pdunroll torch", "peak plain numpy", "peak plain torch",
                  "peak torch.autograd", "peak jax.grad", "tape / saved (≤ 0.6)",
                  "numpy / autograd (≤ 0.35)", "torch / autograd (≤ 0.35)",
                  "numpy / tape (≤ 1.05)", "torch / tape (≤ 1.05)", "jax / autograd"], rows)


def modes_table(d):
    rows = []
    for be, dt, L in product(("numpy", "torch"), DTYPES, LS):
        fwd = d[("fwd", be, dt, L)]
        cells = [be, dt, L, ms(fwd)]
        for mode in ("full", "truncated", "asymptotic"):
            cells += [ms(d[("t", be, mode, dt, L)]), mb(d[("m", be, mode, dt, L)])]
        cells += [rfmt(ratio(d[("t", be, "asymptotic", dt, L)], fwd), (L + B) / L),
                  f"{(L + B) / L:.2f}"]
        rows.append(cells)
    return table(["backend", "dtype", "L", "forward ms", "full ms", "full MB", "truncated ms",
                  "truncated MB", "asymptotic ms", "asymptotic MB", "asymptotic / forward",
                  "(L + b) / L"], rows)


def forward_table(d):
    rows = []
    for dt, L in product(DTYPES, LS):
        row = [dt, L]
        for be in ("numpy", "torch"):
            f = d[("fwd", be, dt, L)]
            row += [ms(f), rfmt(ratio(f, d[("fwd", f"floor_{be}", dt, L)]), 1.3),
                    rfmt(ratio(f, d[("fwd", f"plain_{be}", dt, L)]), 1.15)]
        strict = d[("fwd", "array_api_strict", dt, L)]
        row += [ms(strict), rfmt(ratio(strict, d[("fwd", "numpy", dt, L)]))]
        rows.append(row)
    return table(["dtype", "L", "numpy ms", "numpy / 2L products (≤ 1.3)",
                  "numpy / plain (≤ 1.15)", "torch ms", "torch / 2L products (≤ 1.3)",
                  "torch / plain (≤ 1.15)", "array_api_strict ms", "strict / numpy"], rows)


def images_table(R: Results):
    rows = []
    for dt in DTYPES:
        ag_t = R.value(IMAGES + "FilterBankAutograd.time_gradient", "cpu", dt)
        ag_m = R.value(IMAGES + "FilterBankAutograd.track_peak_memory", "cpu", dt)
        for be, mode in product(("numpy", "torch"), ("full", "asymptotic")):
            t = R.value(IMAGES + "FilterBankGradient.time_gradient", be, dt, mode)
            m = R.value(IMAGES + "FilterBankGradient.track_peak_memory", be, dt, mode)
            if t is None and m is None:
                continue
            rows.append([dt, be, mode, ms(t), mb(m), ms(ag_t), mb(ag_m), rfmt(ratio(t, ag_t)),
                         rfmt(ratio(m, ag_m))])
    if not rows:
        return None
    return table(["dtype", "backend", "mode", "pdunroll ms", "pdunroll MB",
                  "torch.autograd (conv2d) ms", "torch.autograd MB", "time ratio",
                  "memory ratio"], rows)


def throughput_table(R: Results):
    """Full-mode gradient at batch 32 and 1024 per backend: time, TFLOP/s, fraction of the
    backend's matmul peak and, for the GPUs, the speed-up over the CPU backends."""
    g = THROUGHPUT + "SpeechThroughput."
    rows = []
    for be, dt, batch, L in product(("numpy", "torch", "torch_cuda", "cupy"), DTYPES, (32, 1024),
                                    (10, 100)):
        t = R.value(g + "time_gradient", be, dt, batch, L)
        if t is None:
            continue
        tf = R.value(g + "track_tflops", be, dt, batch, L)
        peak = R.value(THROUGHPUT + "MatmulPeak.track_tflops", be, dt)
        cpu = [R.value(g + "time_gradient", c, dt, batch, L) for c in ("numpy", "torch")]
        gpu = be in ("torch_cuda", "cupy")
        rows.append([be, dt, batch, L, ms(t), mb(R.value(g + "track_peak_memory", be, dt, batch,
                                                         L)),
                     "–" if tf is None else f"{tf:.3g}", "–" if peak is None else f"{peak:.3g}",
                     rfmt(ratio(tf, peak)),
                     *(rfmt(ratio(c, t)) if gpu else "–" for c in cpu)])
    if not rows:
        return None
    return table(["backend", "dtype", "batch", "L", "ms", "peak MB", "TFLOP/s",
                  "matmul peak TFLOP/s", "fraction of peak", "speed-up over numpy",
                  "speed-up over torch CPU"], rows)


def targets(d):
    """(target, met count, total, worst value) over dtype × L (× backend)."""
    out = []

    def check(name, values, limit):
        vals = [v for v in values if v is not None]
        if vals:
            met = sum(v <= limit for v in vals)
            out.append([name, f"{met}/{len(vals)}", f"{min(vals):.2f} – {max(vals):.2f}",
                        "met" if met == len(vals) else ("partly" if met else "missed")])

    grid = list(product(DTYPES, LS))
    check("full gradient time ≤ 0.5 × torch.autograd (torch backend)",
          [ratio(d[("t", "torch", "full", dt, L)], d[("t", "torch_autograd", dt, L)])
           for dt, L in grid], 0.5)
    check("full gradient time ≤ 1.6 × its matmul floor (numpy, torch)",
          [ratio(d[("t", be, "full", dt, L)], d[("t", f"floor_{be}", dt, L)])
           for be in ("numpy", "torch") for dt, L in grid], 1.6)
    check("full-mode peak memory ≤ 0.35 × torch.autograd's (numpy, torch)",
          [ratio(d[("m", be, "full", dt, L)], d[("m", "torch_autograd", dt, L)])
           for be in ("numpy", "torch") for dt, L in grid], 0.35)
    check("full-mode peak memory ≤ 1.05 × its tape (numpy)",
          [ratio(d[("m", "numpy", "full", dt, L)], d[("tape", "full", dt, L)])
           for dt, L in grid], 1.05)
    check("full-mode peak memory ≤ 1.05 × its tape (torch)",
          [ratio(d[("m", "torch", "full", dt, L)], d[("tape", "full", dt, L)])
           for dt, L in grid], 1.05)
    check("tape ≤ 0.6 × what torch.autograd saves",
          [ratio(d[("tape", "full", dt, L)], d[("saved", dt, L)]) for dt, L in grid], 0.6)
    for be in ("numpy", "torch"):
        check(f"asymptotic peak memory: largest / smallest over L ({be}; ≈ 1 = independent)",
              [ratio(max(ms_), min(ms_)) for dt in DTYPES
               if None not in (ms_ := [d[("m", be, "asymptotic", dt, L)] for L in LS])], 1.5)
    out_asym = []
    for be, dt, L in product(("numpy", "torch"), DTYPES, LS):
        r = ratio(d[("t", be, "asymptotic", dt, L)], d[("fwd", be, dt, L)])
        out_asym.append(None if r is None else r / ((L + B) / L))
    check("asymptotic time ≤ (L + b)/L × forward loop (value: ratio / ((L + b)/L))",
          out_asym, 1.0)
    check("pdunroll ≤ 1.15 × the same recursion in plain numpy / torch (full gradient)",
          [ratio(d[("t", be, "full", dt, L)], d[("t", f"plain_{be}", dt, L)])
           for be in ("numpy", "torch") for dt, L in grid], 1.15)
    check("forward loop ≤ 1.3 × its 2L matrix products (numpy, torch)",
          [ratio(d[("fwd", be, dt, L)], d[("fwd", f"floor_{be}", dt, L)])
           for be in ("numpy", "torch") for dt, L in grid], 1.3)
    return table(["target", "met", "range of the ratio", "verdict"], out)


def _range(values):
    vals = [v for v in values if v is not None]
    return f"{min(vals):.2f}–{max(vals):.2f}" if vals else "–"


def notes(d) -> str:
    """What the numbers say about the targets that are not met."""
    grid = list(product(DTYPES, LS))
    floor_ag = _range(ratio(d[("t", "floor_torch", dt, L)], d[("t", "torch_autograd", dt, L)])
                      for dt, L in grid)
    lib_floor = _range(ratio(d[("t", be, "full", dt, L)], d[("t", f"floor_{be}", dt, L)])
                       for be in ("numpy", "torch") for dt, L in grid)
    torch_np = _range(ratio(d[("m", "plain_torch", dt, L)], d[("m", "plain_numpy", dt, L)])
                      for dt, L in grid)
    return "\n".join([
        "- **Time against torch.autograd.** Autograd computes the same six matrix products per "
        "step (K x̄, Kᵀ y forward; two products per matmul backward), so it cannot be beaten by "
        f"more than its distance to the matmul floor: floor / autograd = {floor_ag} here, while "
        f"pdunroll runs at {lib_floor} × the floor. A target of 0.5 × autograd asks for less "
        "than the floor's time; what pdunroll saves is autograd's per-step ∇_K accumulation "
        "(2L small products and 2L additions of an m×n matrix) and its graph bookkeeping.",
        "- **Tape against autograd's saved tensors.** pdunroll keeps x̄^{k−1}, y^k and one "
        "boolean mask per step (the dual clip's Jacobian is read off y^k itself: |y| < 1); "
        "autograd keeps x̄^{k−1}, z_D^k, y^k and z_P^k (clamp saves its input). The ratio is "
        "(2·8 + 1)/(4·8) = 0.53 in float64 and (2·4 + 1)/(4·4) = 0.56 in float32, independent "
        "of L.",
        "- **Peak memory on torch CPU.** The resident-set peak of torch runs exceeds the live "
        "bytes: freed 40–80 kB blocks of torch's aligned allocations stay fragmented in glibc's "
        "heap. The same recursion in plain torch shows it too (plain torch / plain numpy peak = "
        f"{torch_np}); in a one-off check at L = 300, float64, MALLOC_MMAP_THRESHOLD_=65536 "
        "(each block ≥ 64 kB its own mapping) brought pdunroll-on-torch from 1.59 × to 1.21 × "
        "its tape (NumPy: 1.16 ×). NumPy runs show the library's own peak.",
        "- **Peak against the tape** adds a fixed few MB (the pending ∇_K rows and their "
        "concatenation, 2 × 2^18 numbers; ∇_K itself; the working vectors), so the 1.05 × "
        "target is reachable only where the tape is large (L = 1000).",
        "- **Asymptotic mode** runs L forward steps plus b = 30 reverse steps (each about one "
        "forward step) plus the final ∇_K products, so its ratio to the forward loop is "
        "(L + b)/L plus a few steps' worth: the target holds up to that overhead.",
    ])


def plot(d, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    styles = {"float32": "--", "float64": "-"}
    series = [
        (axes[0], "pdunroll torch / torch.autograd", lambda dt, L: ratio(
            d[("t", "torch", "full", dt, L)], d[("t", "torch_autograd", dt, L)]), "C0"),
        (axes[0], "pdunroll numpy / torch.autograd", lambda dt, L: ratio(
            d[("t", "numpy", "full", dt, L)], d[("t", "torch_autograd", dt, L)]), "C1"),
        (axes[0], "jax.grad / torch.autograd", lambda dt, L: ratio(
            d[("t", "jax_grad", dt, L)], d[("t", "torch_autograd", dt, L)]), "C2"),
        (axes[0], "matmul floor (torch) / torch.autograd", lambda dt, L: ratio(
            d[("t", "floor_torch", dt, L)], d[("t", "torch_autograd", dt, L)]), "C7"),
        (axes[1], "pdunroll numpy / torch.autograd", lambda dt, L: ratio(
            d[("m", "numpy", "full", dt, L)], d[("m", "torch_autograd", dt, L)]), "C1"),
        (axes[1], "pdunroll torch / torch.autograd", lambda dt, L: ratio(
            d[("m", "torch", "full", dt, L)], d[("m", "torch_autograd", dt, L)]), "C0"),
        (axes[1], "jax.grad / torch.autograd", lambda dt, L: ratio(
            d[("m", "jax_grad", dt, L)], d[("m", "torch_autograd", dt, L)]), "C2"),
        (axes[1], "tape / autograd's saved tensors", lambda dt, L: ratio(
            d[("tape", "full", dt, L)], d[("saved", dt, L)]), "C3"),
        (axes[2], "numpy / floor", lambda dt, L: ratio(
            d[("t", "numpy", "full", dt, L)], d[("t", "floor_numpy", dt, L)]), "C1"),
        (axes[2], "torch / floor", lambda dt, L: ratio(
            d[("t", "torch", "full", dt, L)], d[("t", "floor_torch", dt, L)]), "C0"),
        (axes[2], "numpy / plain numpy", lambda dt, L: ratio(
            d[("t", "numpy", "full", dt, L)], d[("t", "plain_numpy", dt, L)]), "C4"),
        (axes[2], "torch / plain torch", lambda dt, L: ratio(
            d[("t", "torch", "full", dt, L)], d[("t", "plain_torch", dt, L)]), "C5"),
    ]
    for ax, label, fn, color in series:
        for dt in DTYPES:  # one legend entry per series: the line style tells the dtype
            pts = [(L, fn(dt, L)) for L in LS if fn(dt, L) is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), styles[dt], marker="o", ms=4, color=color,
                        label=label if dt == "float64" else None)
    for ax, title, lines in ((axes[0], "full-gradient time ratio", (0.5,)),
                             (axes[1], "full-gradient peak memory ratio", (0.35, 0.6)),
                             (axes[2], "overhead: time / reference", (1.15, 1.6))):
        ax.set_xscale("log")
        ax.set_xlabel("L (unrolled iterations)")
        ax.set_title(title)
        for y in lines:
            ax.axhline(y, color="grey", lw=0.8, ls=":")
        ax.set_ylim(bottom=0)
        if ax.get_legend_handles_labels()[0]:  # below the axes: it covers no data
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18),
                      frameon=False)
        ax.grid(alpha=0.3)
    fig.suptitle("Speech size (batch 32, n = m = 320): pdunroll's hand-written reverse mode vs "
                 "autodiff (solid: float64, dashed: float32, dotted: targets)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, bbox_inches="tight")


def machine_text(results_path: Path, runs: list) -> str:
    machine = json.loads((results_path.parent / "machine.json").read_text())
    first = runs[0]
    v = first["versions"]
    lines = [
        f"- CPU: {first['cpu']}, {first['cores']} cores, {int(machine['ram']) / 2**30:.0f} GiB "
        f"RAM, {machine.get('os', '')}; OpenBLAS kernel {first['openblas_core']} "
        "(OPENBLAS_CORETYPE unset); torch uses MKL.",
        f"- Python {v['python']}, numpy {v['numpy']}, torch {v['torch']} (CPU), jax {v['jax']}, "
        f"array-api-compat {v['array_api_compat']}, array-api-strict {v['array_api_strict']}, "
        f"asv {v['asv']}; commit {first['commit'][:10]}.",
        f"- Threads: {first['threads']} (BLAS, torch, XLA); timer: {first['timer']}. Each time "
        "is the minimum over asv's repeats.",
    ]
    for r in runs:
        lines.append(f"- Run {r['started']} → {r['finished']}: load average "
                     f"{r['loadavg_before'][0]:.1f} before, {r['loadavg_after'][0]:.1f} after "
                     f"(`{r['command']}`).")
    return "\n".join(lines)


INTRO = """# Benchmarks

Measured speed and memory of pdunroll's hand-written reverse-mode gradients against automatic
differentiation of the same unrolled Chambolle-Pock loop. Generated by `benchmarks/report.py`
from the asv results of `benchmarks/run.py`; re-run with

    python benchmarks/run.py --threads 1 --cpu-time    # or without options: wall clock, all cores

(a smoke test of every benchmark: `asv run --quick -E existing` from the repository root, about
3 minutes on this machine; GPU backends are skipped where there is no GPU).

GPU rows (torch CUDA and CuPy in the gradient tables; the throughput table at batch 32 and 1024
with the speed-up over the CPU and the fraction of the GPU's matrix-product peak) come from
`bash benchmarks/gpu.sh run` on a GPU machine (`bash benchmarks/gpu.sh fetch` first gathers the
wheels it needs where a package index is reachable). No GPU run has been recorded yet: the
benchmarks and tests of the GPU backends have not run on a GPU, and their rows are absent below.

Problem (the published speech setting): batch 32, n = m = 320, `DenseOperator`, F = ‖·‖₁,
G = indicator of {‖r‖_∞ ≤ 1/16}, ω = 10, the loss ½‖x̂ − x†‖²; every implementation returns the
loss, ∇_K and ∇_x̃. Compared:

- **pdunroll numpy / torch**: `pdunroll.gradient` (array-API code) on NumPy and torch CPU;
- **torch.autograd**: a plain torch loop differentiated by `torch.autograd.grad`;
- **jax.grad**: `jax.jit(jax.value_and_grad(...))` of a `lax.scan` loop (compiled beforehand);
- **plain numpy / torch**: pdunroll's recursion written directly in NumPy / torch (same tape,
  same chunked ∇_K products): the cost of the array-API layer is pdunroll / plain;
- **floor**: only the matrix products of a full gradient: per step K x̄ and Kᵀ y forward, K δ_P
  and Kᵀ δ̄_D backward, plus the ∇_K outer products batched as the recursion batches them.

Memory: *peak* = the process's peak resident memory during the call above what it held before
(`/proc/self/clear_refs` resets the high-water mark; counts NumPy, torch and XLA allocations
alike, at page granularity). *Tape* = bytes of the arrays pdunroll keeps per step (x̄^{k−1}, y^k
and the primal prox's boolean mask); *autograd saves* = bytes of the distinct tensors
torch.autograd saves for backward (recorded with `saved_tensors_hooks`, K excluded).
The truncated and asymptotic methods use b = 30 back-iterations (`pu.Truncated(min(30, L))`,
`pu.Asymptotic(30)`); the full gradient is `pu.Full()`.
"""


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv:
        results_path = Path(argv[0])
        runs = json.loads((HERE / "results" / "run_info.json").read_text())
    else:
        results_path, runs = latest_results()
    R = Results(results_path)
    d = collect(R)
    parts = [INTRO, "## Machine\n", machine_text(results_path, runs),
             "\n## Targets\n", targets(d), "\n" + notes(d),
             "\n## Full-mode gradient time (ms)\n", time_table(d),
             "\n## Full-mode memory (MB)\n", memory_table(d),
             "\n## Gradient modes (b = 30) against the forward loop\n", modes_table(d),
             "\n## Forward loop (L steps, nothing stored)\n", forward_table(d)]
    images = images_table(R)
    if images:
        parts += ["\n## Filter bank: 48 filters 7×7 on a 256×256 image (L = 10; asymptotic: b = 30 "
                  "reverse steps, so more than full mode's 10)\n", images]
    throughput = throughput_table(R)
    if throughput:
        parts += ["\n## Throughput: batch 32 and 1024 (full mode; the GPU rows need a GPU "
                  "machine, see benchmarks/gpu.sh)\n", throughput]
    parts += ["\n![ratios](_static/benchmarks.png)\n"]
    DOCS.mkdir(exist_ok=True)
    (DOCS / "benchmarks.md").write_text("\n".join(parts) + "\n")
    plot(d, DOCS / "_static" / "benchmarks.png")
    print(f"wrote {DOCS / 'benchmarks.md'} and {DOCS / '_static' / 'benchmarks.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
