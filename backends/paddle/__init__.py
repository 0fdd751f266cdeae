"""PaddlePaddle backend. Thread settings are made here, before anything imports paddle.

``import paddle`` sets OMP_NUM_THREADS=1 when it is unset. Paddle's bundled MKL (mklml 2019) picks a slow code path on
AMD CPUs unless MKL_DEBUG_CPU_TYPE=5 (AVX2); on Intel CPUs with AVX-512 the same setting forces that AVX2 path too and
makes its matmuls 1.5-1.9x slower (measured: docs/benchmarks.md), so it is set on AMD CPUs only.

FLAGS_use_stride_kernel=0: with Paddle 3's default (1), transpose returns a strided view and the next matmul or reshape
copies it element by element, ~20 ns per element on the CPU; a multi-head attention's split / merge of heads then
costs more than its matmuls (paddle's TRAR train step: 1.5 s of 14 s). With 0, transpose is a real transpose kernel.
Values the user already set are kept. glibc malloc is tuned as core/malloc_tuning.py says.
"""
import os

from core.malloc_tuning import tune_malloc


def _amd_cpu():
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return "AuthenticAMD" in line
    except OSError:
        pass
    return False


os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
if _amd_cpu():
    os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")
os.environ.setdefault("FLAGS_use_stride_kernel", "0")
tune_malloc()
