"""The arithmetic floor of a train step on this machine, measured rather than assumed (torch, in a fresh process).

    python -m bench.floor '{"models": ["trar"], "sizes": ["default"]}'

prints one line ``BENCH_RESULT {json}``. Floor = the matmul FLOPs of one train step (forward + backward, counted by
torch.utils.flop_counter while ``trainer.train_step`` runs; elementwise work, softmax and Adam are not counted) /
the best single-precision matmul rate torch reaches here with the same threads (MKL's or oneDNN's). No step can
be faster than that without doing fewer multiplications.

The best rate is that of the friendliest shape; the step's own products (the gradient products, the small batched
attention products) run slower. ``matmul_s`` therefore times every product of the step again outside it, one by one
at its own shapes and strides: step - matmul_s is the time that really goes to everything but the matmuls, and
matmul_s / floor_s what the shapes cost.
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


def _step_under(model, size, mode):
    """One torch train step of (model, size), as the benchmark runs it, inside the context manager ``mode``."""
    from backends import get_backend
    from backends.torch import cpu_ops
    cfg = bench_config(model, size)
    be = get_backend("torch")
    be.seed(0)
    facts = model_facts(model, size)
    net = be.build_model(cfg, **facts)
    batch = framework_batch(be, task_samples(cfg, cfg.BATCH_SIZE, facts))
    trainer = be.make_trainer(net, cfg)
    chosen, cpu_ops.ONEDNN_LINEAR = cpu_ops.ONEDNN_LINEAR, False  # aten's products, which the counter knows
    try:
        with mode:
            trainer.train_step(batch, LR)
    finally:
        cpu_ops.ONEDNN_LINEAR = chosen
    return mode


def step_flops(model, size):
    """Matmul FLOPs of one torch train step of (model, size), as the benchmark runs it."""
    from torch.utils.flop_counter import FlopCounterMode
    return _step_under(model, size, FlopCounterMode(display=False)).get_total_flops()


def _product_recorder():
    """A dispatch mode counting the step's products by (op, (shape, stride) of each tensor operand)."""
    import collections

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    ops = {torch.ops.aten.mm.default: "mm", torch.ops.aten.addmm.default: "addmm",
           torch.ops.aten.bmm.default: "bmm", torch.ops.aten.baddbmm.default: "baddbmm"}

    class Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.products = collections.Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in ops:
                operands = tuple((tuple(a.shape), tuple(a.stride())) for a in args if isinstance(a, torch.Tensor))
                self.products[(ops[func], operands)] += 1
            return func(*args, **(kwargs or {}))

    return Recorder()


def step_products(model, size):
    """{(op, ((shape, stride), ...)): calls} of every matmul one torch train step of (model, size) runs."""
    return dict(_step_under(model, size, _product_recorder()).products)


def product_seconds(products, repeats=5):
    """Seconds the products take run one by one outside the step, each at its own shapes and strides on fresh
    random operands (median of ``repeats`` after one warm-up), times its calls, summed."""
    import torch

    from deploy.timing import time_call
    gen = torch.Generator().manual_seed(0)
    kernels = {"mm": torch.mm, "addmm": torch.addmm, "bmm": torch.bmm, "baddbmm": torch.baddbmm}
    total = 0.0
    for (op, operands), calls in products.items():
        tensors = []
        for shape, stride in operands:
            t = torch.empty_strided(shape, stride)
            t.copy_(torch.randn(shape, generator=gen))
            tensors.append(t)
        total += calls * time_call(lambda: kernels[op](*tensors), warmup=1, repeats=repeats)["median_s"]
    return total


def measure(spec):
    rates = matmul_rate()
    best = max(rates.values())
    floors = {}
    for size in spec.get("sizes", ["default"]):
        for model in spec.get("models", list(MODELS[:1])):
            gflop = step_flops(model, size) / 1e9
            products = step_products(model, size)
            floors[f"{model}/{size}"] = {"gflop": round(gflop, 3), "floor_s": round(gflop / best, 6),
                                         "matmul_s": round(product_seconds(products), 6),
                                         "matmul_calls": sum(products.values())}
    import torch
    return {"matmul_gflops_per_s": rates, "best_gflops_per_s": best, "threads": torch.get_num_threads(),
            "floors": floors}


if __name__ == "__main__":
    child_main("bench.floor", measure)
