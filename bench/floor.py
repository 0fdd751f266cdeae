"""The arithmetic floor of a train step on this machine, measured rather than assumed (torch, in a fresh process).

    python -m bench.floor '{"models": ["trar"], "sizes": ["default"]}'

prints one line ``BENCH_RESULT {json}``. Floor = the matmul FLOPs of one train step (forward + backward, counted by
torch.utils.flop_counter while ``trainer.train_step`` runs; elementwise work, softmax and Adam are not counted) /
the best single-precision matmul rate torch reaches here with the same threads (MKL's or oneDNN's). No step can
be faster than that without doing fewer multiplications.

The best rate is that of the friendliest shape, and the host's speed drifts: at the default size each torch measuring
process therefore measures the rate again right after its steps and times the step's own products one by one
(bench.train_step.floor_here, bench/matmuls.py), and the report's torch / floor is per round; this process gives the
FLOP count.
"""
from bench.matmuls import aten_products, matmul_rate
from bench.train_step import LR, MODELS, bench_config, child_main, framework_batch, model_facts, task_samples


def torch_step(model, size):
    """A callable running one torch train step of (model, size), as the benchmark runs it, on a fresh model."""
    from backends import get_backend
    cfg = bench_config(model, size)
    be = get_backend("torch")
    be.seed(0)
    facts = model_facts(model, size)
    net = be.build_model(cfg, **facts)
    batch = framework_batch(be, task_samples(cfg, cfg.BATCH_SIZE, facts))
    trainer = be.make_trainer(net, cfg)
    return lambda: trainer.train_step(batch, LR)


def step_flops(model, size):
    """Matmul FLOPs of one torch train step of (model, size), as the benchmark runs it."""
    from torch.utils.flop_counter import FlopCounterMode
    step = torch_step(model, size)
    with aten_products(), FlopCounterMode(display=False) as counter:
        step()
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
