"""PaddlePaddle backend. Thread settings are made here, before anything imports paddle.

``import paddle`` sets OMP_NUM_THREADS=1 when it is unset. Paddle's bundled MKL (mklml 2019) picks a slow generic code
path on AMD CPUs; MKL_DEBUG_CPU_TYPE (core/cpu.py) makes it take the AVX-512 (7) or AVX2 (5) one the CPU has, 2-4x
faster matmuls. On Intel CPUs MKL's own choice is the fast one (type 5 there forces AVX2 on an AVX-512 CPU: matmuls
1.5-1.9x slower, docs/benchmarks.md), so nothing is set.

FLAGS_use_stride_kernel=0: with Paddle 3's default (1), transpose returns a strided view and the next matmul or reshape
copies it element by element, ~20 ns per element on the CPU; a multi-head attention's split / merge of heads then
costs more than its matmuls (paddle's TRAR train step: 1.5 s of 14 s). With 0, transpose is a real transpose kernel.
Values the user already set are kept. glibc malloc is tuned as core/malloc_tuning.py says.

All this must happen before paddle's own import (``get_backend('paddle')`` imports this module; ``import backends``
alone does not). Where paddle was imported first (a notebook's ``import paddle``), the stride flag is still set here
through paddle.set_flags (the same kernels as the variable), but Paddle's OpenMP and MKL threads are already fixed at
the 1 its import chose when OMP_NUM_THREADS was unset: a process without a visible GPU that did not start with
OMP_NUM_THREADS in its environment then gets a RuntimeWarning saying so, pointing at the user's line (the default
TRAR train step took 13 s instead of 6.5 s on 2 cores). Setting the threads afterwards (omp_set_num_threads and
MKL's through ctypes) gave 11 s: not a fix, so not tried here.

Paddle is then imported here, once, so that what its import does to the root logger can be undone: Paddle 3.3's
paddle.distributed.utils.log_utils gives the root logger a stderr handler at level INFO, which makes every library's
INFO records print (e.g. ~150 lines of onnxscript passes during an ONNX export). Two notes its import prints are
dropped, the rest of its output passes: "OMP_NUM_THREADS set to N, not 1 ... PLEASE USE OMP_NUM_THREADS WISELY" (the
threads are set here on purpose) and "No ccache found" (about compiling C++ extensions, which nothing here does).
"""
import contextlib
import io
import logging
import os
import sys
import warnings

from core.cpu import mkl_debug_cpu_type
from core.distributed import cores_per_process
from core.malloc_tuning import tune_malloc

_IMPORTED_BEFORE = "paddle" in sys.modules
_STRIDE_FLAG_SET_BY_USER = "FLAGS_use_stride_kernel" in os.environ
os.environ.setdefault("OMP_NUM_THREADS", str(cores_per_process()))   # split among a launcher's processes
os.environ.setdefault("MKL_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
_MKL_CPU_TYPE = mkl_debug_cpu_type()
if _MKL_CPU_TYPE:
    os.environ.setdefault("MKL_DEBUG_CPU_TYPE", _MKL_CPU_TYPE)
os.environ.setdefault("FLAGS_use_stride_kernel", "0")
tune_malloc()


_IMPORT_NOTES = ("WARNING: OMP_NUM_THREADS set to ", "PLEASE USE OMP_NUM_THREADS WISELY.")


def _import_paddle_quietly():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    printed = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(printed):
            warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
            import paddle  # noqa: F401
    except ImportError:
        return   # the backend module's own import reports it
    finally:
        sys.stderr.write("".join(line for line in printed.getvalue().splitlines(keepends=True)
                                 if not line.startswith(_IMPORT_NOTES)))
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)


def _in_initial_environment(name):
    """True when the process started with ``name`` in its environment (Linux: /proc/self/environ); True where that
    cannot be read, so that nothing is said about a setting that may be the user's."""
    try:
        with open("/proc/self/environ", "rb") as f:
            return any(entry.partition(b"=")[0] == name.encode() for entry in f.read().split(b"\0"))
    except OSError:
        return True


def _user_frame():
    """The innermost frame outside this package and the import machinery: the line that asked for the backend."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame = sys._getframe(1)
    while frame.f_back is not None and (frame.f_code.co_filename.startswith((package, "<frozen"))
                                        or os.sep + "importlib" + os.sep in frame.f_code.co_filename):
        frame = frame.f_back
    return frame


def _after_paddle_imported_first():
    """The stride flag through paddle's API; the warning when its import left its CPU kernels one thread."""
    import paddle

    if not _STRIDE_FLAG_SET_BY_USER:
        paddle.set_flags({"FLAGS_use_stride_kernel": False})
    threads, wanted = os.environ.get("OMP_NUM_THREADS"), cores_per_process()
    if (threads == "1" and wanted > 1 and not _in_initial_environment("OMP_NUM_THREADS")
            and paddle.device.cuda.device_count() == 0):
        frame = _user_frame()
        warnings.warn_explicit(
            f"paddle was imported before backends.paddle, with OMP_NUM_THREADS=1 (Paddle's import sets it when unset): "
            f"Paddle's CPU kernels use 1 of the {wanted} cores here (about 2x slower training); call "
            f"get_backend('paddle') (or import backends.paddle) before importing paddle, or set "
            f"OMP_NUM_THREADS={wanted} before it", RuntimeWarning, frame.f_code.co_filename, frame.f_lineno,
            module=frame.f_globals.get("__name__"), registry=frame.f_globals.setdefault("__warningregistry__", {}))


if _IMPORTED_BEFORE:
    _after_paddle_imported_first()
else:
    _import_paddle_quietly()
