"""core/data/workers.py: how many DataLoader workers a run gets when NUM_WORKERS is unset, and that a given number
is kept (up to the cores)."""
import pytest

from core.data.workers import GPU_WORKERS, compute_threads, loader_workers


@pytest.mark.parametrize("cores, threads, expected", [
    (2, 2, 0),      # the threads take every core: load in the main process
    (16, 16, 0),
    (16, 4, 12),    # the cores the threads leave free
    (8, 12, 0),     # more threads than cores: still none
])
def test_unset_on_the_cpu_gives_the_cores_the_threads_leave(cores, threads, expected):
    assert loader_workers(None, on_gpu=False, cores=cores, threads=threads) == expected


@pytest.mark.parametrize("cores, expected", [(1, 1), (2, 1), (3, 2), (16, GPU_WORKERS)])
def test_unset_on_a_gpu_leaves_one_core_to_the_main_process(cores, expected):
    assert loader_workers(None, on_gpu=True, cores=cores, threads=cores) == expected


@pytest.mark.parametrize("on_gpu", [False, True])
def test_a_given_number_is_kept_up_to_the_cores(on_gpu):
    assert loader_workers(0, on_gpu, cores=16, threads=16) == 0
    assert loader_workers(3, on_gpu, cores=16, threads=16) == 3        # even where the threads take every core
    assert loader_workers(8, on_gpu, cores=2, threads=2) == 2


@pytest.mark.parametrize("value, expected", [("4", 4), ("4,2", 4), ("0", 1), ("many", 6), (None, 6)])
def test_compute_threads_reads_omp_num_threads(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert compute_threads(cores=6) == expected
    if value is not None and value[0].isdigit():
        assert loader_workers(None, on_gpu=False, cores=6) == 6 - expected    # the rule reads the same variable
