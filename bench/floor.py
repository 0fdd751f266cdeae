"""The arithmetic floor of a train step on this machine, measured rather than assumed (torch, in a fresh process).

    python -m bench.floor '{"models": ["trar"], "sizes": ["default"]}'

prints one line ``BENCH_RESULT {json}``. Floor = the matmul FLOPs of one train step (forward + backward, counted by
torch.utils.flop_counter while ``trainer.train_step`` runs; elementwise work, softmax and Adam are not counted) /
the best single-precision matmul rate torch reaches here with the same threads (MKL's or oneDNN's). No step can
be faster than that without doing fewer multiplications, so ``step / floor`` says how much time goes to everything but
the matmuls.
"""
from bench.train_step import LR, MODELS, bench_config, child_main, framework_batch, model_facts, task_samples

# (m, k, n) of the products that dominate the default configs: FFN and projections over batch 64 x 64..100 rows,
# and a large square one. The floor takes the best rate of these.
MATMUL_SHAPES = ((4096, 512, 2048), (6400, 2048, 512), (2048, 2048, 2048))


def matmul_rate(shapes=MATMUL_SHAPES, repeats=7):
    """{'kernel m x k x n': GFLOP/s} for float32 products (median of ``repeats`` after one warm-up): torch.mm (MKL)
    and, where this torch build has it, the oneDNN linear the torch backend's Linear uses on AMD CPUs
    (backends/torch/cpu_ops.py)."""
    import torch

    from backends.torch import cpu_ops
    from deploy.timing import time_call
    gen = torch.Generator().manual_seed(0)
    kernels = {"mm": torch.mm}
    if cpu_ops._LINEAR_OP is not None:
        kernels["onednn"] = lambda a, b: cpu_ops._onednn(a, b.t())
    rates = {}
    for m, k, n in shapes:
        a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
        for name, kernel in kernels.items():
            median = time_call(lambda: kernel(a, b), warmup=1, repeats=repeats)["median_s"]
            rates[f"{name} {m}x{k}x{n}"] = round(2 * m * k * n / median / 1e9, 1)
    return rates


def step_flops(model, size):
    """Matmul FLOPs of one torch train step of (model, size), as the benchmark runs it."""
    from torch.utils.flop_counter import FlopCounterMode

    from backends import get_backend
    from backends.torch import cpu_ops
    cfg = bench_config(model, size)
    be = get_backend("torch")
    be.seed(0)
    facts = model_facts(model, size)
    net = be.build_model(cfg, **facts)
    batch = framework_batch(be, task_samples(cfg, cfg.BATCH_SIZE, facts))
    trainer = be.make_trainer(net, cfg)
    chosen, cpu_ops.ONEDNN_LINEAR = cpu_ops.ONEDNN_LINEAR, False  # the counter knows aten's products, not oneDNN's
    try:
        with FlopCounterMode(display=False) as counter:
            trainer.train_step(batch, LR)
    finally:
        cpu_ops.ONEDNN_LINEAR = chosen
    return counter.get_total_flops()


def measure(spec):
    rates = matmul_rate()
    best = max(rates.values())
    floors = {}
    for size in spec.get("sizes", ["default"]):
        for model in spec.get("models", list(MODELS[:1])):
            gflop = step_flops(model, size) / 1e9
            floors[f"{model}/{size}"] = {"gflop": round(gflop, 3), "floor_s": round(gflop / best, 6)}
    import torch
    return {"matmul_gflops_per_s": rates, "best_gflops_per_s": best, "threads": torch.get_num_threads(),
            "floors": floors}


if __name__ == "__main__":
    child_main("bench.floor", measure)
