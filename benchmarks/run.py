"""Run the asv suite in the current environment and record how it ran, then write the report.

    python benchmarks/run.py                 # wall clock, default threads (all cores)
    python benchmarks/run.py --threads 1 --cpu-time   # 1 thread, CPU time: for a shared machine
    python benchmarks/run.py --quick -b SpeechGradient  # smoke test, results not saved

Runs ``asv run -E existing --set-commit-hash HEAD --record-samples`` from the repository
root (asv's "existing" environment: the Python running this script; nothing is built), with
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE removed (they select slower kernels) and, with
``--threads N``, OpenBLAS, MKL, OpenMP (torch) and XLA limited to N threads. The load average
before and after, the thread setting, the timer, library versions and the CPU are appended to
``results/run_info.json`` (asv merges the runs of one commit into one results file);
``report.py`` then writes docs/benchmarks.md and docs/_static/benchmarks.png.
"""

from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent  # asv.conf.json lives here


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _openblas_core() -> str:
    import numpy

    for lib in glob.glob(str(Path(numpy.__file__).parent.parent / "numpy.libs" / "*openblas*")):
        handle = ctypes.CDLL(lib)
        for name in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename",
                     "openblas_get_corename64_", "openblas_get_corename"):
            if hasattr(handle, name):
                fn = getattr(handle, name)
                fn.restype = ctypes.c_char_p
                return fn().decode()
    return "unknown"


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("numpy", "torch", "jax", "array_api_compat", "array_api_strict", "asv"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = None
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, help="threads for BLAS / torch / XLA")
    parser.add_argument("--cpu-time", action="store_true", help="time CPU, not wall clock")
    parser.add_argument("--quick", action="store_true", help="each benchmark once, no results")
    parser.add_argument("-b", "--bench", action="append", default=[], help="asv -b regex")
    parser.add_argument("--commit", help="record the results under this commit (default HEAD;"
                        " e.g. to add benchmarks to an earlier run's results)")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)

    env = dict(os.environ)
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(var, None)
    if args.threads:
        n = str(args.threads)
        env.update(OMP_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, MKL_NUM_THREADS=n)
        if args.threads == 1:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
                                " intra_op_parallelism_threads=1").strip()
    if args.cpu_time:
        env["PDUNROLL_BENCH_TIMER"] = "process"

    commit = subprocess.run(["git", "rev-parse", args.commit or "HEAD"], cwd=HERE,
                            capture_output=True, text=True, check=True).stdout.strip()
    if not (Path.home() / ".asv-machine.json").exists():
        subprocess.run(["asv", "machine", "--yes"], cwd=ROOT, env=env, check=True)
    cmd = ["asv", "run", "-E", "existing", "--show-stderr"]
    cmd += ["--quick"] if args.quick else ["--set-commit-hash", commit, "--record-samples"]
    for pattern in args.bench:
        cmd += ["-b", pattern]
    info = {"commit": commit, "command": " ".join(cmd), "threads": args.threads or os.cpu_count(),
            "timer": "process CPU time" if args.cpu_time else "wall clock",
            "cpu": _cpu_model(), "cores": os.cpu_count(), "openblas_core": _openblas_core(),
            "versions": _versions(), "loadavg_before": os.getloadavg(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    print("running:", info["command"], flush=True)
    rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
    info["loadavg_after"] = os.getloadavg()
    info["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    if args.quick:
        return rc
    path = HERE / "results" / "run_info.json"
    path.parent.mkdir(exist_ok=True)
    runs = json.loads(path.read_text()) if path.exists() else []
    runs = [r for r in runs if r["commit"] == commit] + [info]  # runs merged into one result
    path.write_text(json.dumps(runs, indent=1) + "\n")
    if rc == 0 and not args.no_report:
        rc = subprocess.run([sys.executable, str(HERE / "report.py")]).returncode
    return rc


if __name__ == "__main__":
    sys.exit(main())
