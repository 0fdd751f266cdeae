"""Dropout keep-masks drawn with numpy, for the CPU dropout of both backends.

Why: on the CPU, torch and paddle draw dropout masks one element at a time from a serial Mersenne Twister, ~10 ns per
element on this kind of machine: 1.7 s of torch's 8 s default TRAR train step (62 dropout calls, 146M elements),
2.5 s of paddle's. numpy's SFC64 generator draws them ~4x faster in one thread (docs/benchmarks.md). A thread pool
was tried and fights the frameworks' OpenMP threads for the cores (20x slower steps). The distribution is dropout's:
each element is kept independently with probability 1 - p, p rounded to a multiple of 2**-32 (0.1 -> 0.1 + 9e-11);
the backends scale the kept elements by 1 / (1 - p).

The stream is counter-based: the k-th mask after ``reset(seed)`` depends on (seed, k, shape, p) only, not on the
framework. Two backends seeded alike and calling dropout in the same order therefore drop the same elements
(cross-framework gradient and training parity with dropout on), and a run reseeded per epoch is reproducible. Each
backend's ``seed()`` resets the stream.
"""
import threading

import numpy as np

CHUNK = 1 << 18          # elements per generator (bounds the temporary draws; part of the mask's definition)
_UINT32_RANGE = 1 << 32


class MaskStream:
    """Keep-masks numbered from 0 after each ``reset(seed)``."""

    def __init__(self, seed=0):
        self._lock = threading.Lock()
        self.reset(seed)

    def reset(self, seed):
        with self._lock:
            self.seed, self.count = int(seed) % (1 << 64), 0

    def _next_index(self):
        """(seed, index) of the next mask; the count advances under the lock, so threads never share an index."""
        with self._lock:
            index = self.count
            self.count += 1
        return self.seed, index

    def keep_mask(self, shape, p, scale=None, dtype=np.float32):
        """The next mask of the stream, of ``shape``: bool (True = keep), or with ``scale`` an array of ``dtype``
        holding ``scale`` where kept and 0 where dropped (a multiplier; the same draws as the bool mask)."""
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        seed, index = self._next_index()
        n = int(np.prod(shape, dtype=np.int64))
        threshold = np.uint32(min(round(p * _UINT32_RANGE), _UINT32_RANGE - 1))
        out = np.empty(n, dtype=np.bool_ if scale is None else dtype)
        if scale is not None:   # in the mask's dtype: a Python float would make numpy multiply in float64, 2x slower
            scale = out.dtype.type(scale)
        for start in range(0, n, CHUNK):
            size = min(CHUNK, n - start)
            bits = np.random.SFC64(np.random.SeedSequence(seed, spawn_key=(index, start // CHUNK)))
            draws = bits.random_raw((size + 1) // 2).view(np.uint32)[:size]
            if scale is None:
                np.greater_equal(draws, threshold, out=out[start:start + size])
            else:
                np.multiply(draws >= threshold, scale, out=out[start:start + size])
        return out.reshape(shape)


STREAM = MaskStream()
