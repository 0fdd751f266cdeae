#!/usr/bin/env bash
# GPU mode of docs/benchmarks.md as one short prepared run, for a machine with an NVIDIA GPU (none was available
# while this project was written). Measures every backend that sees a CUDA device (CUDA builds of torch and/or
# paddle), fp32 and AMP, demo and default sizes, and writes RESULTS/<date>-gpu.json, RESULTS/<date>-gpu-amp.json and
# the report of both as RESULTS/<date>-gpu.md (copy its block into docs/benchmarks.md with
# `python -m bench report A.json B.json`).
#
#   bash bench/gpu_check.sh [RESULTS]          # RESULTS defaults to bench/results
#   PYTHON=/path/to/python bash bench/gpu_check.sh
#   BACKENDS=torch bash bench/gpu_check.sh     # these backends, without asking whether they see a GPU
#   BENCH_ARGS="--models trar --default-steps 5" bash bench/gpu_check.sh   # extra `python -m bench train` flags
#
# Exit status: 0 when everything was measured; 1 when a measurement failed (the report names it and why, and the
# other measurements are still run and reported); 2 when there is nothing to measure (no GPU, no backend sees one).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
results=${1:-bench/results}
day=$(date +%F)
if ! nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; then
    echo "bench/gpu_check.sh: no NVIDIA GPU here (nvidia-smi failed); python -m bench measures the CPU" >&2
    exit 2
fi
if [ -z "${BACKENDS:-}" ]; then
    # One process per framework: each asks its own build, and a CPU wheel beside a CUDA one is named, not measured.
    BACKENDS=""
    for name in torch paddle; do
        sees=$("$py" - "$name" <<'PY' 2>/dev/null || true
import importlib.util, sys
name = sys.argv[1]
if importlib.util.find_spec(name) is None:
    print("missing")
elif name == "torch":
    import torch
    print("yes" if torch.cuda.is_available() else "no")
else:
    import paddle
    print("yes" if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0 else "no")
PY
)
        case "$sees" in
            yes) BACKENDS="${BACKENDS:+$BACKENDS,}$name" ;;
            no) echo "bench/gpu_check.sh: $name is installed but sees no CUDA device (a CPU build?): not measured" >&2 ;;
        esac
    done
    if [ -z "$BACKENDS" ]; then
        echo "bench/gpu_check.sh: neither torch nor paddle, as installed for $py, sees a CUDA device" >&2
        exit 2
    fi
fi
echo "backends: $BACKENDS"
common=(train --backends "$BACKENDS" --gpu "${GPU:-0}" --sizes demo,default --default-warmup 3 --default-steps 10
        --no-docs)
# shellcheck disable=SC2206  # BENCH_ARGS is split into flags on purpose
extra=(${BENCH_ARGS:-})
status=0
"$py" -m bench "${common[@]}" "${extra[@]}" --out "$results/$day-gpu.json" || status=1
"$py" -m bench "${common[@]}" "${extra[@]}" --amp --out "$results/$day-gpu-amp.json" || status=1
"$py" -m bench report "$results/$day-gpu.json" "$results/$day-gpu-amp.json" --docs "$results/$day-gpu.md"
exit $status
