"""glibc malloc settings for training on the CPU, applied by both backends when they are imported.

Activations of the default configs are 8-34 MB each (a (64, 4, 8, 64, 64) attention map is 33.5 MB). glibc serves
blocks above its mmap threshold (at most 32 MB) with a fresh mmap and unmaps them on free, so every step faults in
and zeroes those pages again: on 2 cores the kernel time was ~1 s of a ~5 s TRAR train step, in both frameworks
(docs/benchmarks.md). With mmap off for the heap and a high trim threshold, freed blocks are reused instead; the peak
RSS stays the same (+2-6%), but the process keeps it until exit.

Skipped when the user chose an allocator: any MALLOC_* tunable in the environment, or an LD_PRELOADed jemalloc /
tcmalloc / mimalloc. TWINVQA_MALLOC_TUNING=0 turns it off.
"""
import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 1 << 30
_PRELOADED_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")
_applied = None


def _user_chose_allocator(environ):
    if environ.get("TWINVQA_MALLOC_TUNING", "1") == "0":
        return True
    if any(key.startswith("MALLOC_") for key in environ) or "GLIBC_TUNABLES" in environ:
        return True
    preload = environ.get("LD_PRELOAD", "")
    return any(name in preload for name in _PRELOADED_ALLOCATORS)


def tune_malloc(environ=None):
    """Apply the settings once per process; returns True when they are in effect (False elsewhere: not Linux
    glibc, or the user chose)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux") or _user_chose_allocator(os.environ if environ is None else environ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # glibc only (musl has no mallopt tunables)
    except (OSError, AttributeError):
        return False
    # mallopt returns 1 on success
    _applied = bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return _applied
