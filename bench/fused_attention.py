"""Fused attention kernels against the models' masked softmax, one framework per process.

    python -m bench.fused_attention torch|paddle [--backward] [--gpu N [--half]]

The models compute softmax(masked_fill(q k^T / sqrt(d), mask, -1e9)) v as three ops (backends/*/layers.py MHAtt).
A fused kernel (torch.nn.functional.scaled_dot_product_attention, paddle.nn.functional.scaled_dot_product_attention)
takes the mask as an additive -1e9, which gives the same probabilities wherever a row keeps at least one key (the
masked entries underflow to 0 either way); this measures whether it is faster and whether it returns the same bits,
in eval (forward, no grad) or with `--backward` (forward + the gradients of q, k and v). Training on the CPU cannot
use it in either case: the attention map's dropout mask would be the kernel's own, not core.dropout_masks' (the
masks both backends share). `--gpu N` measures on a CUDA device (bench/gpu_check.sh runs it), where each framework's
own dropout runs anyway; `--half` in float16 there. docs/benchmarks.md has the results.
"""
import argparse
import json
import math
import statistics
import time

import numpy as np

from bench.devices import use_device

# (batch, query rows, key rows): MCAN default image self-attention, image-to-question attention, TRAR's 8x8 grid
SHAPES = ((32, 100, 100), (32, 100, 14), (32, 64, 64))
HEADS, HEAD_DIM = 8, 64
MASK_FILL = -1e9


def _times_ms(fns, repeats, sync, blocks=5):
    """Median ms per call of each function, timed in ``blocks`` alternating blocks of ``repeats`` calls (a slow
    spell of a shared host then hits both). ``sync`` waits for the device's queued work (a no-op on the CPU)."""
    for fn in fns:
        for _ in range(3):
            fn()
    per_block = [[] for _ in fns]
    for _ in range(blocks):
        for i, fn in enumerate(fns):
            sync()
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn()
            sync()
            per_block[i].append((time.perf_counter() - t0) / repeats * 1e3)
    return [statistics.median(times) for times in per_block]


def _last_quarter_masked(full, batch, m):
    """(B, 1, 1, m) booleans: the last quarter of the keys is padding."""
    return full([batch, 1, 1, m], [False] * (m - m // 4) + [True] * (m // 4))


def _torch_pair(batch, n, m, seed, device, dtype, backward):
    import torch
    import torch.nn.functional as F
    dtype = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, HEADS, rows, HEAD_DIM, generator=gen).to(device, dtype).requires_grad_(backward)
               for rows in (n, m, m))
    upstream = torch.randn(batch, HEADS, n, HEAD_DIM, generator=gen).to(device, dtype)
    mask = _last_quarter_masked(lambda shape, row: torch.tensor(row).expand(shape), batch, m).to(device)
    fill = max(MASK_FILL, torch.finfo(dtype).min)
    additive = torch.zeros(batch, 1, 1, m, device=device, dtype=dtype).masked_fill(mask, fill)

    def run(attend):
        def call():
            out = attend()
            return (out, *torch.autograd.grad(out, (q, k, v), upstream)) if backward else (out,)
        return call

    def explicit():
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(HEAD_DIM)
        return torch.matmul(F.softmax(scores.masked_fill(mask, fill), dim=-1), v)

    def fused():
        return F.scaled_dot_product_attention(q, k, v, attn_mask=additive)

    def to_numpy(x):
        return x.detach().float().cpu().numpy()
    sync = torch.cuda.synchronize if q.is_cuda else (lambda: None)
    return run(explicit), run(fused), to_numpy, (torch.enable_grad if backward else torch.no_grad), sync


def _paddle_pair(batch, n, m, seed, device, dtype, backward):
    import paddle
    import paddle.nn.functional as F
    paddle.seed(seed)
    q, k, v = (paddle.randn([batch, HEADS, rows, HEAD_DIM]).astype(dtype) for rows in (n, m, m))
    for t in (q, k, v):
        t.stop_gradient = not backward
    upstream = paddle.randn([batch, HEADS, n, HEAD_DIM]).astype(dtype)
    mask = _last_quarter_masked(lambda shape, row: paddle.to_tensor(row).expand(shape), batch, m)
    fill = max(MASK_FILL, float(paddle.finfo(q.dtype).min))
    additive = paddle.where(mask, paddle.full([], fill, dtype), paddle.zeros([batch, 1, 1, m], dtype))

    def run(attend):
        def call():
            out = attend()
            return (out, *paddle.grad([out], [q, k, v], [upstream])) if backward else (out,)
        return call

    def explicit():
        scores = paddle.matmul(q, k, transpose_y=True) / math.sqrt(HEAD_DIM)
        return paddle.matmul(F.softmax(paddle.where(mask, paddle.full([], fill, dtype), scores), axis=-1), v)

    def fused():
        qt, kt, vt = (t.transpose([0, 2, 1, 3]) for t in (q, k, v))   # paddle's kernel takes (B, rows, heads, d)
        return F.scaled_dot_product_attention(qt, kt, vt, attn_mask=additive).transpose([0, 2, 1, 3])

    def to_numpy(x):
        return x.astype("float32").numpy()
    sync = paddle.device.synchronize if device != "cpu" else (lambda: None)
    return run(explicit), run(fused), to_numpy, (paddle.enable_grad if backward else paddle.no_grad), sync


def _compare(a, b, to_numpy):
    """(max |a - b| over the outputs and gradients, whether every bit agrees), in numpy: paddle.equal_all called
    gradients equal that differed by 1e-27."""
    pairs = [(to_numpy(x), to_numpy(y)) for x, y in zip(a, b)]
    return (max(float(np.abs(x - y).max()) for x, y in pairs),
            all(np.array_equal(x, y) for x, y in pairs))


def measure(spec, on_row=None):
    """{'backend': 'torch' | 'paddle', 'shapes': [[B, n, m], ...], 'repeats': 10, 'backward': False, 'gpu': None,
    'dtype': 'float32'} -> one row per shape. A shape whose fused kernel fails gets its error instead of times.
    ``on_row(row)``, when given, gets each row as soon as it is measured."""
    name = spec["backend"]
    if name not in ("torch", "paddle"):
        raise ValueError(f"backend: expected 'torch' or 'paddle', got {name!r}")
    dtype = spec.get("dtype", "float32")
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype: expected 'float32' or 'float16', got {dtype!r}")
    backward = bool(spec.get("backward", False))
    from backends import get_backend
    backend = get_backend(name)         # the backend's thread and allocator settings, as in training
    device = use_device(backend, spec.get("gpu"))
    pair = _torch_pair if name == "torch" else _paddle_pair
    rows = []
    for batch, n, m in spec.get("shapes", SHAPES):
        row = {"backend": name, "device": device, "dtype": dtype, "backward": backward,
               "shape": [batch, HEADS, n, m, HEAD_DIM]}
        try:   # building the inputs may fail too (out of memory): one error row, the other shapes still run
            explicit, fused, to_numpy, grad_mode, sync = pair(batch, n, m, 0, device, dtype, backward)
            with grad_mode():
                max_diff, equal = _compare(explicit(), fused(), to_numpy)
                explicit_ms, fused_ms = _times_ms((explicit, fused), int(spec.get("repeats", 10)), sync)
        except (RuntimeError, ValueError, NotImplementedError, MemoryError) as exc:   # no kernel for a dtype; OOM
            # (torch's out of memory is a RuntimeError, Paddle's a MemoryError)
            first = (str(exc).strip().splitlines() or [repr(exc)])[0]
            rows.append({**row, "error": f"{type(exc).__name__}: {first}"})
        else:
            rows.append({**row, "explicit_ms": round(explicit_ms, 3), "fused_ms": round(fused_ms, 3),
                         "fused_over_explicit": round(fused_ms / explicit_ms, 3), "max_abs_diff": max_diff,
                         "bit_identical": equal})
        if on_row:
            on_row(rows[-1])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.fused_attention", description=__doc__.split("\n\n")[0])
    parser.add_argument("backend", choices=("torch", "paddle"))
    parser.add_argument("--backward", action="store_true", help="forward + gradients of q, k, v (default: eval)")
    parser.add_argument("--gpu", metavar="N", help="CUDA device N (default: the CPU)")
    parser.add_argument("--half", action="store_true", help="float16 (with --gpu)")
    parser.add_argument("--repeats", type=int, default=10, metavar="N", help="calls per timed block (default 10)")
    args = parser.parse_args(argv)
    if args.half and args.gpu is None:
        parser.error("--half needs --gpu (float16 attention is a GPU measurement)")
    try:   # each row printed when measured: a run stopped midway keeps the shapes it finished
        rows = measure({"backend": args.backend, "backward": args.backward, "gpu": args.gpu, "repeats": args.repeats,
                        "dtype": "float16" if args.half else "float32"},
                       on_row=lambda row: print(json.dumps(row), flush=True))
    except RuntimeError as exc:
        parser.exit(2, f"{parser.prog}: {exc}\n")
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
