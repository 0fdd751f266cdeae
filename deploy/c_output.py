"""Lines Paddle's C++ prints on its own, straight to the process's stdout or stderr, held back and filtered.

Python's print goes through sys.stdout / sys.stderr, C++ through file descriptors 1 and 2, so only a descriptor-level
redirect catches the latter. What is not noise is passed on, in order; nothing else printed meanwhile is lost.
"""
import contextlib
import ctypes
import io
import os
import sys
import tempfile

# 'ReduceMeanCheckIfOneDNNSupport' (stdout) comes from Paddle's oneDNN kernels, once per reduce_mean op on a
# predictor's first run (13 times for TRAR); the PIR warning (stderr, glog) once per static export.
STDOUT_NOISE = ("ReduceMeanCheckIfOneDNNSupport",)
STDERR_NOISE = ("Paddle static graph(PIR) not support input out tensor for now",)


@contextlib.contextmanager
def filtered(fd, noise, to=None):
    """Hold what is written to file descriptor ``fd`` (1 or 2) in a temp file, then write its lines that contain
    none of the ``noise`` strings to ``to`` (a text stream; default sys.stderr)."""
    stream = sys.stdout if fd == 1 else sys.stderr
    try:
        stream.flush()
        saved = os.dup(fd)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        yield
        return
    libc = ctypes.CDLL(None)
    with tempfile.TemporaryFile() as held:
        try:
            os.dup2(held.fileno(), fd)
            yield
        finally:
            stream.flush()
            libc.fflush(None)   # what C++ buffered goes to the temp file, not to the restored descriptor
            os.dup2(saved, fd)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode("utf-8", errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not any(n in line for n in noise))
            out = sys.stderr if to is None else to
            if kept:
                out.write(kept)
                out.flush()
