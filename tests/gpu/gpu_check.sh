#!/usr/bin/env bash
# GPU mode of docs/benchmarks.md as one short prepared run, for a machine with an NVIDIA GPU (none was available
# while this project was written). Measures every backend that sees a CUDA device (CUDA builds of torch and/or
# paddle), fp32 and AMP, demo and default sizes, and writes RESULTS/<date>-gpu.json, RESULTS/<date>-gpu-amp.json and
# the report of both as RESULTS/<date>-gpu.md; to put them in docs/benchmarks.md, add the two JSON files to the end
# of the `python -m bench report ...` command on the generated block's "reproduce" line (naming only the GPU files
# would replace the CPU tables). Then tests/gpu/smoke.py runs run.py end to end on the GPU (two demo epochs: TRAR in
# fp32, MMNasNet-small with AMP), evaluates the checkpoint on the CPU and compares the answers:
# RESULTS/<date>-gpu-smoke.jsonl (the `gpu` tests, `pytest -m gpu tests/gpu`, check the same under pytest). Last, as
# the least needed, eval (be.predict, float32) on the device: RESULTS/<date>-gpu-eval.json, after which the report is
# written again with all three JSON files (add those three to the docs' report command). Everything it prints is also
# in RESULTS/<date>-gpu-check.log. Each `python -m bench` keeps its measurements so far in <name>.partial.json,
# replaced by <name>.json when it ends, so a run cut off (a time limit) keeps what it measured. Every process it starts
# is stopped after BENCH_TIMEOUT seconds (240; a smoke run's training and its evaluation each).
#
#   bash tests/gpu/gpu_check.sh [RESULTS]          # RESULTS defaults to results/bench (not tracked by git)
#   PYTHON=/path/to/python bash tests/gpu/gpu_check.sh
#   BACKENDS=torch bash tests/gpu/gpu_check.sh     # these backends, without asking whether they see a GPU
#   BENCH_ARGS="--models trar --default-steps 5" bash tests/gpu/gpu_check.sh   # extra train/eval flags
#
# Exit status: 0 when everything was measured; 1 when a measurement failed (the report names it and why, and the
# other measurements are still run and reported); 2 when there is nothing to measure (no GPU, no backend sees one).
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${PYTHON:-python3}
results=${1:-results/bench}
day=$(date +%F)
mkdir -p "$results"
log="$results/$day-gpu-check.log"
# tee -i: on Ctrl-C the logs outlive the measurement, which still prints what it was doing
exec > >(tee -ia "$log")
out_tee=$!
exec 2> >(tee -ia "$log" >&2)
err_tee=$!
trap 'exec >&- 2>&-; wait "$out_tee" "$err_tee" || true' EXIT   # the log is complete when the script returns
if ! nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; then
    echo "tests/gpu/gpu_check.sh: no NVIDIA GPU here (nvidia-smi failed); python -m bench measures the CPU" >&2
    exit 2
fi
if [ -z "${BACKENDS:-}" ]; then
    # One process per framework; a CPU wheel beside a CUDA one is named, not measured.
    BACKENDS=""
    probe_err=$(mktemp)
    for name in torch paddle; do
        # The backend's own device choice, the one `python -m bench --gpu` checks (it falls back to the CPU).
        sees=$("$py" -m tests.gpu.device_probe "$name" "${GPU:-0}" 2>"$probe_err" || true)
        case "$sees" in
            yes) BACKENDS="${BACKENDS:+$BACKENDS,}$name" ;;
            no) echo "tests/gpu/gpu_check.sh: $name is installed but sees no CUDA device (a CPU build?):" \
                     "not measured" >&2 ;;
            missing) echo "tests/gpu/gpu_check.sh: not measured: $(tail -n 1 "$probe_err")" >&2 ;;
            *) echo "tests/gpu/gpu_check.sh: asking $name for a GPU failed ($py):" >&2
               tail -n 5 "$probe_err" >&2 ;;
        esac
    done
    rm -f "$probe_err"
    if [ -z "$BACKENDS" ]; then
        echo "tests/gpu/gpu_check.sh: neither torch nor paddle, as installed for $py, sees a CUDA device" >&2
        exit 2
    fi
fi
echo "backends: $BACKENDS"
limit=${BENCH_TIMEOUT:-240}
common=(--backends "$BACKENDS" --gpu "${GPU:-0}" --sizes demo,default --rounds 1 --default-warmup 3 --default-steps 10
        --timeout "$limit" --no-docs)
# shellcheck disable=SC2206  # BENCH_ARGS is split into flags on purpose
extra=(${BENCH_ARGS:-})
status=0
"$py" -m bench train "${common[@]}" "${extra[@]}" --out "$results/$day-gpu.json" || status=1
"$py" -m bench train "${common[@]}" "${extra[@]}" --amp --out "$results/$day-gpu-amp.json" || status=1
"$py" -m bench report "$results/$day-gpu.json" "$results/$day-gpu-amp.json" --docs "$results/$day-gpu.md" \
    || status=1
smoke="$results/$day-gpu-smoke.jsonl"
: > "$smoke"
for name in ${BACKENDS//,/ }; do
    for flags in "--model trar" "--model mmnasnet_small --amp"; do
        # shellcheck disable=SC2086  # flags is split on purpose
        "$py" -m tests.gpu.smoke --backend "$name" --gpu "${GPU:-0}" --timeout "$limit" $flags | tee -a "$smoke" \
            || status=1
    done
done
"$py" -m bench eval "${common[@]}" "${extra[@]}" --out "$results/$day-gpu-eval.json" || status=1
"$py" -m bench report "$results/$day-gpu.json" "$results/$day-gpu-amp.json" "$results/$day-gpu-eval.json" \
    --docs "$results/$day-gpu.md" || status=1
exit $status
