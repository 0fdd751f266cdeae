"""TRAR span masks: which image cells a query cell may attend to, for each routing order.

The image is a row-major ``img_scale x img_scale`` grid of N = img_scale**2 cells; cell p = i * img_scale + j.
Order k allows the keys q = (x, y) with max(|x - i|, |y - j|) <= k (a (2k+1) x (2k+1) window clipped at the border,
Chebyshev radius k). True means masked, as in ``masked_fill``. Order 0 is global attention: only the padding mask
applies, so it has no span mask (None). Built once with numpy; the backends register the result as a buffer.
ViT+TRAR masks only the patch-to-patch scores: token_span_mask_stack leaves the CLS row and column open.
"""
import numpy as np


def _check(img_scale, order):
    if isinstance(img_scale, bool) or not isinstance(img_scale, (int, np.integer)) or img_scale < 1:
        raise ValueError(f"IMG_SCALE must be a positive integer, got {img_scale!r}")
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 0:
        raise ValueError(f"ORDERS entries must be non-negative integers, got {order!r}")
    if order >= img_scale:
        raise ValueError(f"ORDERS entry {order} must be smaller than IMG_SCALE {img_scale} "
                         f"(a window of radius {order} covers the whole {img_scale}x{img_scale} grid)")


def span_mask(img_scale, order):
    """(N, N) bool mask for one order (rows = queries, columns = keys); None for order 0."""
    _check(img_scale, order)
    if order == 0:
        return None
    rows, cols = np.divmod(np.arange(img_scale * img_scale), img_scale)
    distance = np.maximum(np.abs(rows[:, None] - rows[None, :]), np.abs(cols[:, None] - cols[None, :]))
    return distance > order


def span_masks(img_scale, orders):
    """One ``span_mask`` per entry of ``orders``, in order (None for order 0)."""
    return [span_mask(img_scale, order) for order in orders]


def span_mask_stack(img_scale, orders):
    """(len(orders), N, N) bool array; the layer of order 0 is all False (padding mask only)."""
    n = img_scale * img_scale
    masks = span_masks(img_scale, orders)
    if not masks:
        raise ValueError("ORDERS must list at least one order")
    return np.stack([np.zeros((n, n), dtype=bool) if m is None else m for m in masks])


def token_span_mask_stack(img_scale, orders, open_tokens=1):
    """(len(orders), T, T) bool with T = open_tokens + N: ``span_mask_stack`` on the patch-to-patch block, after
    ``open_tokens`` leading tokens (ViT's CLS) whose rows and columns are never masked (ViT+TRAR)."""
    patches = span_mask_stack(img_scale, orders)
    out = np.zeros((patches.shape[0],) + tuple(n + open_tokens for n in patches.shape[1:]), dtype=bool)
    out[:, open_tokens:, open_tokens:] = patches
    return out
