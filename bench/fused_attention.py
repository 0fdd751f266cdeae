"""Fused attention kernels against the models' masked softmax, eval (no grad), one framework per process.

    python -m bench.fused_attention torch|paddle

The models compute softmax(masked_fill(q k^T / sqrt(d), mask, -1e9)) v as three ops (backends/*/layers.py MHAtt).
A fused kernel (torch.nn.functional.scaled_dot_product_attention, paddle.nn.functional.scaled_dot_product_attention)
takes the mask as an additive -1e9, which gives the same probabilities wherever a row keeps at least one key (the
masked entries underflow to 0 either way); this measures whether it is faster on the CPU and whether it returns the
same bits. Training cannot use it in either case: the attention map's dropout mask would be the kernel's own, not
core.dropout_masks' (the masks both backends share). docs/benchmarks.md has the results.
"""
import json
import math
import statistics
import sys
import time

# (batch, query rows, key rows): MCAN default image self-attention, image-to-question attention, TRAR's 8x8 grid
SHAPES = ((32, 100, 100), (32, 100, 14), (32, 64, 64))
HEADS, HEAD_DIM = 8, 64


def _times_ms(fns, repeats, blocks=5):
    """Median ms per call of each function, timed in ``blocks`` alternating blocks of ``repeats`` calls (a slow
    spell of a shared host then hits both)."""
    for fn in fns:
        for _ in range(3):
            fn()
    per_block = [[] for _ in fns]
    for _ in range(blocks):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn()
            per_block[i].append((time.perf_counter() - t0) / repeats * 1e3)
    return [statistics.median(times) for times in per_block]


def _torch_pair(batch, n, m, seed):
    import torch
    import torch.nn.functional as F
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, HEADS, rows, HEAD_DIM, generator=gen) for rows in (n, m, m))
    mask = torch.zeros(batch, 1, 1, m, dtype=torch.bool)
    mask[..., m - m // 4:] = True                                     # the last quarter of the keys is padding
    additive = torch.zeros(batch, 1, 1, m).masked_fill(mask, -1e9)

    def explicit():
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(HEAD_DIM)
        return torch.matmul(F.softmax(scores.masked_fill(mask, -1e9), dim=-1), v)

    def fused():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=additive)
    return explicit, fused, lambda a, b: (float((a - b).abs().max()), bool(torch.equal(a, b))), torch.no_grad


def _paddle_pair(batch, n, m, seed):
    import paddle
    import paddle.nn.functional as F
    paddle.seed(seed)
    q, k, v = (paddle.randn([batch, HEADS, rows, HEAD_DIM]) for rows in (n, m, m))
    mask = paddle.concat([paddle.zeros([batch, 1, 1, m - m // 4], "bool"), paddle.ones([batch, 1, 1, m // 4], "bool")],
                         axis=-1)
    additive = paddle.where(mask, paddle.full([], -1e9), paddle.zeros([batch, 1, 1, m]))
    qt, kt, vt = (t.transpose([0, 2, 1, 3]) for t in (q, k, v))       # paddle's kernel takes (B, rows, heads, d)

    def explicit():
        scores = paddle.matmul(q, k, transpose_y=True) / math.sqrt(HEAD_DIM)
        return paddle.matmul(F.softmax(paddle.where(mask, paddle.full([], -1e9), scores), axis=-1), v)

    def fused():
        return F.scaled_dot_product_attention(qt, kt, vt, attn_mask=additive).transpose([0, 2, 1, 3])
    return explicit, fused, lambda a, b: (float((a - b).abs().max()), bool(paddle.equal_all(a, b))), paddle.no_grad


def measure(spec):
    """{'backend': 'torch' | 'paddle', 'shapes': [[B, n, m], ...], 'repeats': 10} -> one row per shape."""
    name = spec["backend"]
    if name not in ("torch", "paddle"):
        raise ValueError(f"backend: expected 'torch' or 'paddle', got {name!r}")
    from backends import get_backend
    get_backend(name)                  # the backend's thread and allocator settings, as in training
    pair = _torch_pair if name == "torch" else _paddle_pair
    rows = []
    for batch, n, m in spec.get("shapes", SHAPES):
        explicit, fused, compare, no_grad = pair(batch, n, m, seed=0)
        with no_grad():
            max_diff, equal = compare(explicit(), fused())
            explicit_ms, fused_ms = _times_ms((explicit, fused), int(spec.get("repeats", 10)))
        rows.append({"backend": name, "shape": [batch, HEADS, n, m, HEAD_DIM], "explicit_ms": round(explicit_ms, 3),
                     "fused_ms": round(fused_ms, 3), "fused_over_explicit": round(fused_ms / explicit_ms, 3),
                     "max_abs_diff": max_diff, "bit_identical": equal})
    return rows


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m bench.fused_attention torch|paddle")
    for row in measure({"backend": sys.argv[1]}):
        print(json.dumps(row))
