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

Within a training step the masks are keyed by the rows' place in the step's global batch (``step_parts``): a
sub-batch starting at row o draws the k-th mask of the step as the rows o.. of the mask a whole batch would draw
(masks are batch-major: row o starts at element o x elements-per-row), and every sub-batch of the step numbers its
masks from the step's first index. A gradient-accumulation sub-batch and a data-parallel rank's slice
(core/distributed.py) holding the same rows of the same step therefore drop the same elements, so 2 processes with
GRAD_ACCU_STEPS=1 train bit for bit as 1 process with GRAD_ACCU_STEPS=2. A step over a whole batch (row 0, no
accumulation, one process) draws exactly the masks of the counter-only keying before it. What the keying changed:
runs with GRAD_ACCU_STEPS > 1 draw other masks than before (sub-batch 2 of a step took the indices after sub-batch
1's, and the next step's indices followed those), so their losses and weights differ from those of earlier versions
(the same distribution; the same in both backends).
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
            self.seed, self.count, self.first_row = int(seed) % (1 << 64), 0, 0

    def step_parts(self, parts, row_offset=0):
        """Iterate over a training step's sub-batch slices ``parts`` (contiguous, in order), keying the masks drawn
        while each is processed by its rows' place in the global batch: ``row_offset`` (this rank's first row) +
        the slice's start. Each part numbers its masks from the step's first index; after the step the stream goes
        on after the most masks a part drew."""
        with self._lock:
            base = high = self.count
        try:
            for part in parts:
                with self._lock:
                    self.count, self.first_row = base, row_offset + (part.start or 0)
                yield part
                with self._lock:
                    high = max(high, self.count)
        finally:
            with self._lock:
                self.count, self.first_row = max(high, self.count), 0

    def _next_index(self):
        """(seed, index, first row) of the next mask; the count advances under the lock, so threads never share an
        index."""
        with self._lock:
            index = self.count
            self.count += 1
        return self.seed, index, self.first_row

    def keep_mask(self, shape, p, scale=None, dtype=np.float32):
        """The next mask of the stream, of ``shape``: bool (True = keep), or with ``scale`` an array of ``dtype``
        holding ``scale`` where kept and 0 where dropped (a multiplier; the same draws as the bool mask)."""
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        seed, index, first_row = self._next_index()
        n = int(np.prod(shape, dtype=np.int64))
        threshold = np.uint32(min(round(p * _UINT32_RANGE), _UINT32_RANGE - 1))
        out = np.empty(n, dtype=np.bool_ if scale is None else dtype)
        if scale is not None:   # in the mask's dtype: a Python float would make numpy multiply in float64, 2x slower
            scale = out.dtype.type(scale)
        # This mask is elements [begin, begin + n) of the whole batch's mask; chunk c of that mask is generator c.
        begin = first_row * (n // shape[0]) if first_row and len(shape) and shape[0] else 0
        for chunk in range(begin // CHUNK, -(-(begin + n) // CHUNK)):
            lo, hi = max(begin, chunk * CHUNK), min(begin + n, (chunk + 1) * CHUNK)
            skip = lo - chunk * CHUNK   # draws before this mask's first element: generated and dropped
            bits = np.random.SFC64(np.random.SeedSequence(seed, spawn_key=(index, chunk)))
            draws = bits.random_raw((skip + hi - lo + 1) // 2).view(np.uint32)[skip:skip + hi - lo]
            dest = out[lo - begin:hi - begin]
            if scale is None:
                np.greater_equal(draws, threshold, out=dest)
            else:
                np.multiply(draws >= threshold, scale, out=dest)
        return out.reshape(shape)


STREAM = MaskStream()
