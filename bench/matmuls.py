"""Timing torch's float32 matmuls: the best rate this machine reaches, and the products a step runs, recorded and
timed again one by one outside it. Used by bench/floor.py (the floor process) and bench/train_step.py (each torch
measuring process, right after its timed steps)."""
import collections
import contextlib

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


@contextlib.contextmanager
def aten_products():
    """The torch backend's oneDNN Linear off: aten's products, which torch's FLOP counter and the recorder know."""
    from backends.torch import cpu_ops
    chosen, cpu_ops.ONEDNN_LINEAR = cpu_ops.ONEDNN_LINEAR, False
    try:
        yield
    finally:
        cpu_ops.ONEDNN_LINEAR = chosen


def record_products(step):
    """{(op, ((shape, stride), ...)): calls} of every matmul ``step()`` runs in torch (aten's products)."""
    recorder = _product_recorder()
    with aten_products(), recorder:
        step()
    return dict(recorder.products)


def _product_recorder():
    """A dispatch mode counting the step's products by (op, (shape, stride) of each tensor operand)."""
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
