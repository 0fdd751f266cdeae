"""core.malloc_tuning: applied on Linux glibc unless the user chose an allocator (checked in fresh processes)."""
import json
import os
import subprocess
import sys

import pytest

from core.malloc_tuning import _user_chose_allocator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = ("import json, sys; from core.malloc_tuning import tune_malloc; "
         "print(json.dumps([tune_malloc(), tune_malloc()]))")


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
    assert _probe(_clean_env()) == [True, True]
    assert _probe(_clean_env(TWINVQA_MALLOC_TUNING="0")) == [False, False]
