"""core.malloc_tuning: applied on Linux glibc unless the user chose an allocator (checked in fresh processes)."""
import json
import os
import subprocess
import sys

import pytest

from core.malloc_tuning import _user_chose_allocator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# After tune_malloc(), a 64 MiB block (above glibc's largest mmap threshold, 32 MiB) is malloc'ed and freed; glibc's
# mallinfo2 tells whether it was mmapped (hblks, counted from before) and whether the heap kept its memory after the
# free (arena, the bytes of the main heap; a trim threshold of 1 GiB keeps them, glibc's default gives them back).
PROBE = """
import ctypes, json
from core.malloc_tuning import tune_malloc
applied = [tune_malloc(), tune_malloc()]
libc = ctypes.CDLL("libc.so.6")
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
size = 64 << 20
before = libc.mallinfo2()
block = libc.malloc(size)
assert block
mmapped = libc.mallinfo2().hblks - before.hblks
libc.free(block)
kept = libc.mallinfo2().arena >= before.arena + size
print(json.dumps({"applied": applied, "mmapped": mmapped, "heap_kept": kept}))
"""


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "LD_PRELOAD", "TWINVQA_MALLOC_TUNING")}
    env.update(extra)
    return env


def _probe(env):
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("env, chose", [
    ({}, False),
    ({"TWINVQA_MALLOC_TUNING": "0"}, True),
    ({"TWINVQA_MALLOC_TUNING": "1"}, False),
    ({"MALLOC_ARENA_MAX": "2"}, True),
    ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}, True),
    ({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}, True),
    ({"LD_PRELOAD": "/usr/lib/libfoo.so"}, False),
])
def test_user_choices_are_respected(env, chose):
    assert _user_chose_allocator(env) is chose


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux only")
def test_applied_once_on_linux_and_not_when_turned_off():
    assert _probe(_clean_env()) == {"applied": [True, True], "mmapped": 0, "heap_kept": True}
    untuned = {"applied": [False, False], "mmapped": 1, "heap_kept": False}
    assert _probe(_clean_env(TWINVQA_MALLOC_TUNING="0")) == untuned
