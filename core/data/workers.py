"""How many DataLoader worker processes a run gets (NUM_WORKERS; None = sized to the machine).

On the CPU the model's threads (OMP_NUM_THREADS, all cores by default in both backends) and the loader's workers
share the cores. Measured on 2 cores with 2 threads (docs/benchmarks.md): loading in the main process costs 24 ms
of a 2.9 s default TRAR step, while 2 workers made every step 3-5% slower (the workers take cores the threads
spin-wait on) and the first step after each fork 2-5x slower (the parent writes every page it shares with the
forked workers: copy-on-write); demo epochs ran 8-15% slower. So by default workers get only the cores the threads
leave free. On a GPU the main process mostly waits for the device, and workers overlap loading with it.
"""
import os

from core.distributed import cores_per_process

GPU_WORKERS = 4   # by default on a GPU, at most this many, one core left to the main process


def compute_threads(cores=None):
    """The intra-op threads the backends run on the CPU: OMP_NUM_THREADS when set, else every core (this process's
    share of them under a launcher)."""
    cores = cores or cores_per_process()
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0]))
    except ValueError:
        return cores


def loader_workers(requested, on_gpu, cores=None, threads=None):
    """DataLoader workers: ``requested`` (NUM_WORKERS) up to the number of cores, or when None: on a GPU up to
    GPU_WORKERS leaving one core to the main process, on the CPU the cores the compute threads leave free. The
    cores are this process's share under a launcher (core/distributed.py)."""
    cores = cores or cores_per_process()
    if requested is not None:
        return max(0, min(int(requested), cores))
    if on_gpu:
        return max(1, min(GPU_WORKERS, cores - 1))
    return max(0, cores - (threads or compute_threads(cores)))
