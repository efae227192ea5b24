#!/usr/bin/env bash
# The GPU part of the tests and the benchmark suite, for a session lent a device machine
# (NVIDIA H100 / H200 with torch, cupy and jax installed, no package registry):
#
#   bash benchmarks/gpu.sh fetch   # here: the wheels that image lacks, into .whl/ (git-ignored)
#   bash benchmarks/gpu.sh run     # there, through the device tool with carry [".whl"]
#
# "run" installs the wheels into /tmp/site, prints the GPU, runs the test suite on the GPU
# backends (torch CUDA, cupy) and then the benchmarks that have GPU rows (SpeechGradient,
# SpeechThroughput at batch 32 and 1024, MatmulPeak, FilterBankGradient / FilterBankAutograd),
# wall clock, all threads; the asv results, the run record and the regenerated report land in
# $OUT (default ./gpu-out). Merge the results file into benchmarks/results/ here and re-run
# `python benchmarks/report.py` to put the GPU rows into docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(array-api-compat==1.16.0 asv==0.6.6 asv_runner==0.3.2 json5 pympler virtualenv distlib
        platformdirs build pyproject_hooks importlib_metadata lazy-importer python-discovery)

case "${1:-}" in
fetch)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "${WHEELS[@]}"
    ls .whl
    ;;
run)
    OUT=${OUT:-$PWD/gpu-out}
    mkdir -p "$OUT"
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site \
        .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
    export PATH=/tmp/site/bin:$PATH
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
    PDUNROLL_BACKENDS=torch_cuda,cupy python3 -m pytest -q -p no:cacheprovider tests \
        2>&1 | tee "$OUT/tests.log" | tail -n 5
    [ -d .git ] || { git init -q && git add -A && git -c user.name=device -c user.email=device@localhost commit -qm "device copy"; }
    python3 benchmarks/run.py -b "SpeechThroughput|MatmulPeak|SpeechGradient|FilterBank" \
        2>&1 | tee "$OUT/bench.log" | tail -n 40
    cp benchmarks/results/run_info.json docs/benchmarks.md "$OUT"/
    cp benchmarks/results/*/"$(git rev-parse --short=8 HEAD)"-*.json "$OUT"/
    ;;
*)
    echo "usage: bash benchmarks/gpu.sh fetch|run" >&2
    exit 2
    ;;
esac
