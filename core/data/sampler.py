"""Batch order shared by both backends: a numpy permutation seeded from (seed, epoch), so any epoch can be rebuilt."""
import numpy as np


def epoch_batches(n, batch_size, seed, epoch, shuffle=True, drop_last=True):
    """List of np.int64 index arrays for one epoch over ``n`` samples.

    The permutation depends only on (seed, epoch): a resumed run regenerates exactly the batches it would have seen.
    """
    n, batch_size = int(n), int(batch_size)
    if batch_size <= 0:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
    if n < 0:
        raise ValueError(f"n: expected a sample count >= 0, got {n}")
    if shuffle:
        if int(seed) < 0 or int(epoch) < 0:
            raise ValueError(f"seed and epoch must be >= 0, got seed={seed}, epoch={epoch}")
        order = np.random.default_rng([int(seed), int(epoch)]).permutation(n).astype(np.int64)
    else:
        order = np.arange(n, dtype=np.int64)
    stop = n - n % batch_size if drop_last else n
    return [order[i:i + batch_size] for i in range(0, stop, batch_size)]


def eval_batches(n, batch_size):
    """In order, the last (short) batch kept."""
    return epoch_batches(n, batch_size, 0, 0, shuffle=False, drop_last=False)
