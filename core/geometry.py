"""MMNasNet relative box geometry (numpy), the input of the relation self-attention (RSA).

For pixel boxes (x1, y1, x2, y2): cx = (x1 + x2) / 2, cy = (y1 + y2) / 2, w = x2 - x1 + 1, h = y2 - y1 + 1.
For the ordered pair (i = query row, j = key column):
    g0 = log(max(|(cx_i - cx_j) / w_i|, 1e-3))
    g1 = log(max(|(cy_i - cy_j) / h_i|, 1e-3))
    g2 = log(w_i / w_j)
    g3 = log(h_i / h_j)
The operations follow openvqa's order in float32 (divide, then abs, then clamp, then log), so a framework computing
the same formula agrees to the last few ulps. Padded (all-zero) boxes give w = h = 1 and cx = cy = 0, so every value
stays finite; those rows and columns are masked later by the network, exactly as in openvqa.
"""
import numpy as np

DELTA_MIN = 1e-3  # clamp before the log of the normalised centre offsets


def _geometry(boxes):
    """(..., N, 4) float32 -> (..., N, N, 4) float32."""
    x1, y1, x2, y2 = (boxes[..., k:k + 1] for k in range(4))  # each (..., N, 1)
    half = np.float32(0.5)
    one = np.float32(1.0)
    cx = (x1 + x2) * half
    cy = (y1 + y2) * half
    w = (x2 - x1) + one
    h = (y2 - y1) + one

    def swap(a):  # (..., N, 1) -> (..., 1, N): the key axis
        return np.swapaxes(a, -1, -2)

    lo = np.float32(DELTA_MIN)
    g0 = np.log(np.maximum(np.abs((cx - swap(cx)) / w), lo))
    g1 = np.log(np.maximum(np.abs((cy - swap(cy)) / h), lo))
    g2 = np.log(w / swap(w))
    g3 = np.log(h / swap(h))
    return np.stack((g0, g1, g2, g3), axis=-1).astype(np.float32, copy=False)


def _as_boxes(boxes, ndim, name):
    arr = np.asarray(boxes)
    if arr.ndim != ndim or arr.shape[-1] != 4:
        want = "(N, 4)" if ndim == 2 else "(B, N, 4)"
        raise ValueError(f"{name}: expected pixel boxes of shape {want} (x1, y1, x2, y2), got shape {arr.shape}")
    return arr.astype(np.float32, copy=False)


def relation_geometry(boxes):
    """Relative geometry of one image's boxes: (N, 4) pixel boxes -> (N, N, 4) float32."""
    return _geometry(_as_boxes(boxes, 2, "relation_geometry"))


def relation_geometry_batch(boxes):
    """Batched :func:`relation_geometry`: (B, N, 4) -> (B, N, N, 4) float32."""
    return _geometry(_as_boxes(boxes, 3, "relation_geometry_batch"))
