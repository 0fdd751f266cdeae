"""LSAT's fixed inputs: the local window mask and the rotary position tables (reference lsat.md section 3).

The image grid is flattened row-major (token p = row * IMG_SCALE + column) and cut into blocks of ``window``
consecutive tokens, blk(p) = p // window. Query p may attend key q iff -look_backward <= blk(q) - blk(p) <=
look_forward: its own block (intra-window attention) and the neighbouring blocks (inter-window attention). This is the
mask lucidrains' LocalAttention builds (non-causal, look-around windows), laid over the dense (N, N) scores. True means
masked, as in ``masked_fill``; the backends OR it with the padding mask. Built once with numpy; the backends register
the results as buffers.
"""
import numpy as np


def _positive_int(value, name, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def window_mask(n_tokens, window, look_backward=1, look_forward=1):
    """(n_tokens, n_tokens) bool, rows = queries, columns = keys; True where the key is outside the query's blocks."""
    _positive_int(n_tokens, "the number of image tokens", 1)
    _positive_int(window, "LSAT_WINDOW", 1)
    _positive_int(look_backward, "LSAT_LOOK_BACKWARD", 0)
    _positive_int(look_forward, "LSAT_LOOK_FORWARD", 0)
    if n_tokens % window:
        raise ValueError(f"LSAT_WINDOW {window} must divide the {n_tokens} image tokens (blocks of whole windows)")
    block = np.arange(n_tokens) // window
    offset = block[None, :] - block[:, None]          # blk(key) - blk(query)
    return (offset < -look_backward) | (offset > look_forward)


def rotary_tables(n_tokens, head_size, base=10000.0):
    """(cos, sin), each (n_tokens, head_size) float32: angle[p, j] = p * base ** (-2 i / head_size) with i = j mod
    head_size / 2 (the two halves repeat the frequencies; rotate_half pairs x[i] with x[i + head_size / 2])."""
    _positive_int(n_tokens, "the number of image tokens", 1)
    if head_size % 2:
        raise ValueError(f"rotary positions need an even head size (HIDDEN_SIZE / MULTI_HEAD), got {head_size}")
    inv_freq = (1.0 / base ** (np.arange(0, head_size, 2, dtype=np.float32) / np.float32(head_size)))
    angles = np.arange(n_tokens, dtype=np.float32)[:, None] * inv_freq[None, :].astype(np.float32)
    angles = np.concatenate([angles, angles], axis=-1)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
