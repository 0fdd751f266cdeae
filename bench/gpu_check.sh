#!/usr/bin/env bash
# GPU mode of docs/benchmarks.md as one short prepared run, for a machine with an NVIDIA GPU (none was available
# while this project was written). Measures every installed backend (CUDA builds of torch and/or paddle), fp32 and
# AMP, demo and default sizes, and writes RESULTS/<date>-gpu.json, RESULTS/<date>-gpu-amp.json and the report of
# both as RESULTS/<date>-gpu.md (copy its block into docs/benchmarks.md with `python -m bench report A.json B.json`).
#
#   bash bench/gpu_check.sh [RESULTS]          # RESULTS defaults to bench/results
#   PYTHON=/path/to/python bash bench/gpu_check.sh
#   BENCH_ARGS="--models trar --default-steps 5" bash bench/gpu_check.sh   # extra `python -m bench train` flags
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
results=${1:-bench/results}
day=$(date +%F)
backends=$("$py" -c 'import importlib.util as u; print(",".join(n for n in ("torch", "paddle") if u.find_spec(n)))')
if [ -z "$backends" ]; then
    echo "bench/gpu_check.sh: neither torch nor paddle is importable by $py" >&2
    exit 2
fi
if ! nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; then
    echo "bench/gpu_check.sh: no NVIDIA GPU here (nvidia-smi failed); python -m bench measures the CPU" >&2
    exit 2
fi
echo "backends: $backends"
common=(train --backends "$backends" --gpu "${GPU:-0}" --sizes demo,default --default-warmup 3 --default-steps 10
        --no-docs)
# shellcheck disable=SC2206  # BENCH_ARGS is split into flags on purpose
extra=(${BENCH_ARGS:-})
"$py" -m bench "${common[@]}" "${extra[@]}" --out "$results/$day-gpu.json"
"$py" -m bench "${common[@]}" "${extra[@]}" --amp --out "$results/$day-gpu-amp.json"
"$py" -m bench report "$results/$day-gpu.json" "$results/$day-gpu-amp.json" --docs "$results/$day-gpu.md"
