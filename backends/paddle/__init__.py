"""PaddlePaddle backend. Thread settings are made here, before anything imports paddle.

``import paddle`` sets OMP_NUM_THREADS=1 when it is unset, and Paddle's bundled MKL picks a slow code path on AMD CPUs
unless MKL_DEBUG_CPU_TYPE=5. Values the user already set are kept.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
os.environ.setdefault("MKL_DEBUG_CPU_TYPE", "5")
