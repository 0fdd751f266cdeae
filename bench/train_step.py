"""Train-step and eval timing of one (backend, model, size), run in a fresh process.

    python -m bench.train_step '{"kind": "train", "backend": "torch", "model": "trar", "size": "default"}'

prints one line ``BENCH_RESULT {json}``. The parent (bench.__main__) starts one such process per measurement, with
OMP_NUM_THREADS / MKL_NUM_THREADS set, so the peak RSS (getrusage high-water mark) belongs to that measurement alone.

A train step is the backend's ``trainer.train_step(batch, lr)``: forward, the loss and optimizer of the model's config
(VQA: summed BCE, Adam; classification: mean cross-entropy, SGD with momentum, gradient clipping), backward, the
update, as the engine calls it. The batch is synthetic (the task's sample format, with the shapes and padding of the
real data) and passes once through the backend's own DataLoader, so the step sees framework tensors exactly as in
training; the same batch is reused every step. Every registry model is measured; its task (core/registry.py) picks
the datasets, facts and synthetic samples of each size (TASK_SIZES).
"""
import json
import os
import resource
import statistics
import sys
import time

import numpy as np

from bench.devices import use_device
from bench.warm_up import run_until_stable
from core import registry

SIZES = ("demo", "default")
KINDS = ("train", "eval")
# Vocabulary sizes: the demo data's 36 tokens; VQA-v2 train+val+test+VG with GloVe (openvqa's token_size).
TOKEN_SIZE = {"demo": 36, "default": 20573}
ANSWER_SIZE = 3129  # core/data/answer_dict.json, for both sizes
# task -> size -> (dataset, config overrides, build_model facts). VQA: the generated demo data in the VQA format and
# the shipped VQA configs (batch 64, HIDDEN_SIZE 512, 6+6 layers; MMNasNet-small's 12+18 searched ops).
# Classification: the generated demo images (their configs: 32x32, batch 32; ten classes) and the ImageNet configs
# (ViT-B/16, 1000 classes) at 224 with a batch of 8 in one slice (the shipped recipe's 512 images at 384 in 128
# slices is a GPU's work).
TASK_SIZES = {
    "vqa": {"demo": (registry.generated_dataset("vqa"), {}, {"token_size": TOKEN_SIZE["demo"],
                                                             "answer_size": ANSWER_SIZE}),
            "default": ("vqa", {}, {"token_size": TOKEN_SIZE["default"], "answer_size": ANSWER_SIZE})},
    "classification": {
        "demo": (registry.generated_dataset("imagefolder"), {}, {"num_classes": 10}),
        "default": ("imagenet", {"IMG_SIZE": 224, "BATCH_SIZE": 8, "GRAD_ACCU_STEPS": 1}, {"num_classes": 1000})},
}


def measured_models(models):
    """({MODEL_USE: its first ModelSpec}, {(MODEL_USE, size): (config name, dataset)}) for a registry's MODELS: every
    model of a task in TASK_SIZES by MODEL_USE, measured in its first (smallest) registry size, at each size whose
    dataset it has a yml for."""
    first = {}
    for spec in models.values():
        if spec.task in TASK_SIZES:
            first.setdefault(spec.model_use, spec)
    configs = {(use, size): (spec.name, TASK_SIZES[spec.task][size][0]) for use, spec in first.items()
               for size in SIZES if TASK_SIZES[spec.task][size][0] in spec.datasets}
    return first, configs


_SMALLEST, CONFIGS = measured_models(registry.MODELS)   # CONFIGS: the arguments of core.config.load_config
MODELS = tuple(_SMALLEST)
RESULT_MARK = "BENCH_RESULT "
LR = 1e-4


def bench_config(model, size, **overrides):
    """The validated Config measured for (model, size). GloVe off: a random embedding of the same shape."""
    from core.config import load_config
    if (model, size) not in CONFIGS:
        raise ValueError(f"model/size: expected model in {MODELS} and size in {SIZES}, got {model!r}/{size!r}")
    name, dataset = CONFIGS[(model, size)]
    settings = {"USE_GLOVE": False, "SEED": 0, "VERSION": "bench", "VERBOSE": False}
    settings.update(TASK_SIZES[task_of(model)][size][1])
    settings.update(overrides)
    return load_config(name, dataset, overrides=settings)


def task_of(model):
    """The task name of a bench model (a MODEL_USE)."""
    return _SMALLEST[model].task


def model_facts(model, size):
    """build_model's dataset facts (keywords) for (model, size): vocabulary and answers, or classes."""
    return dict(TASK_SIZES[task_of(model)][size][2])


def task_samples(cfg, n, facts, seed=0):
    """``n`` synthetic sample dicts of cfg's task, for a net built with ``facts`` (model_facts)."""
    task = registry.model_of(cfg).task
    if task == "classification":
        return synthetic_images(cfg, n, facts["num_classes"], seed)
    return synthetic_samples(cfg, n, facts["token_size"], facts["answer_size"], seed)


def synthetic_images(cfg, n, num_classes, seed=0):
    """``n`` classification samples as the image datasets give them: 'image' float32 (3, IMG_SIZE, IMG_SIZE),
    normalised to [-1, 1] (mean = std = 0.5), and 'label' an int64 class index."""
    rng = np.random.default_rng(seed)
    size = int(cfg.IMG_SIZE)
    return [{"image": rng.uniform(-1.0, 1.0, (3, size, size)).astype(np.float32),
             "label": np.int64(rng.integers(num_classes))} for _ in range(n)]


def synthetic_samples(cfg, n, token_size, answer_size, seed=0):
    """``n`` sample dicts in the dataset format (docs/architecture.md) with the shapes and padding of real data.

    Grid features fill every row (TRAR's grids have no padding); region features have 10..rows boxes, the rest zero,
    with pixel boxes inside a 640x480 image; questions have 4..MAX_TOKEN tokens (14; RWSAN 16); answers are sparse
    soft scores.
    """
    rng = np.random.default_rng(seed)
    rows, dim = cfg.FEAT_SIZE["vqa"]["FRCN_FEAT_SIZE"]
    region = cfg.FEAT_TYPE == "region"
    bbox_rows = cfg.FEAT_SIZE["vqa"].get("BBOX_FEAT_SIZE", (rows, 5))[0]
    zeros = np.zeros(1, np.float32)
    samples = []
    for _ in range(n):
        frcn = rng.standard_normal((rows, dim)).astype(np.float32)
        bbox = zeros
        if region:
            boxes = int(rng.integers(min(10, rows), rows + 1))
            frcn[boxes:] = 0
            xy = rng.uniform(0, 400, (bbox_rows, 2))
            wh = rng.uniform(8, 240, (bbox_rows, 2))
            bbox = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
            if cfg.USE_BBOX_FEAT:
                area = (bbox[:, 2] - bbox[:, 0]) * (bbox[:, 3] - bbox[:, 1])
                bbox = np.concatenate([bbox, area[:, None]], axis=1)
            bbox[boxes:] = 0
        ques_ix = np.zeros(cfg.MAX_TOKEN, np.int64)
        length = int(rng.integers(4, cfg.MAX_TOKEN + 1))
        ques_ix[:length] = rng.integers(3, token_size, length)
        ans = np.zeros(answer_size, np.float32)
        picks = rng.choice(answer_size, size=int(rng.integers(1, 4)), replace=False)
        ans[picks] = rng.choice([0.3, 0.6, 0.9, 1.0], size=len(picks))
        samples.append({"frcn_feat": frcn, "grid_feat": zeros.copy(), "bbox_feat": bbox, "ques_ix": ques_ix,
                        "ans": ans})
    return samples


class _ListDataset:
    def __init__(self, samples):
        self.samples = samples

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        return self.samples[index]


def framework_batch(be, samples):
    """One batch of framework tensors from the backend's own loader (collate and conversion as in training)."""
    loader = be.make_loader(_ListDataset(samples), [list(range(len(samples)))], num_workers=0)
    return next(iter(loader))


def rss_mib():
    """(current RSS, high-water mark) of this process in MiB, from /proc/self/status (Linux)."""
    values = {}
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    values[line.split(":")[0]] = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    peak = values.get("VmHWM", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
    return values.get("VmRSS", peak), peak


def framework_info(name):
    """Version and intra-op thread count of the framework behind backend ``name`` (already imported); with CUDA,
    whether float32 matmuls may use TF32 (off by default in both: torch since 1.12, Paddle since 3.3) and, for torch,
    whether cuDNN may (on by default: its LSTM, so 'fp32' GPU rows run the LSTM in TF32)."""
    if name == "torch":
        import torch

        from backends.torch import cpu_ops
        info = {"version": torch.__version__, "threads": torch.get_num_threads(),
                "cpu_linear": "oneDNN" if cpu_ops.ONEDNN_LINEAR else "MKL"}
        if torch.cuda.is_available():
            info["tf32_matmul"] = bool(torch.backends.cuda.matmul.allow_tf32)
            info["tf32_cudnn"] = bool(torch.backends.cudnn.allow_tf32)   # on by default: the LSTM's matmuls
        return info
    import paddle
    cpu_type = os.environ.get("MKL_DEBUG_CPU_TYPE")
    info = {"version": paddle.__version__, "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None,
            "cpu_linear": f"MKL, MKL_DEBUG_CPU_TYPE={cpu_type}" if cpu_type else "MKL"}
    if paddle.is_compiled_with_cuda():
        try:
            info["tf32_matmul"] = bool(paddle.get_flags(["FLAGS_cublas_allow_tf32"])["FLAGS_cublas_allow_tf32"])
        except (ValueError, KeyError):   # a Paddle without the flag
            info["tf32_matmul"] = None
    return info


def _sync_and_gpu_peak(be_name, device):
    """Peak GPU memory in MiB since the start (None on the CPU)."""
    if device == "cpu":
        return None
    if be_name == "torch":
        import torch
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2 ** 20
    import paddle
    paddle.device.synchronize()
    return paddle.device.cuda.max_memory_allocated() / 2 ** 20


def loss_scale(trainer):
    """The AMP loss scale of ``trainer`` now (None without AMP): torch's GradScaler.get_scale(), Paddle's state."""
    scaler = getattr(trainer, "scaler", None)
    if scaler is None:
        return None
    if hasattr(scaler, "get_scale"):
        return float(scaler.get_scale())
    state = scaler.state_dict()
    return float(np.asarray(state["scale"]).reshape(-1)[0]) if "scale" in state else None


def settle_loss_scale(step, trainer, stable=3, limit=64):
    """Run AMP train steps until the loss scale has stayed the same for ``stable`` steps (at most ``limit``); returns
    (steps run, whether it settled). Why: the scalers start at 2**16, and the summed loss gives gradients of ~1e3
    (float16 overflows at 65504 after scaling), so the first dozen or so steps only halve the scale and skip Adam;
    timed, they would not be whole train steps."""
    if loss_scale(trainer) is None:
        return 0, True
    ran, same, scale = 0, 0, loss_scale(trainer)
    while same < stable and ran < limit:
        step()
        ran += 1
        new = loss_scale(trainer)
        same = same + 1 if new == scale else 0
        scale = new
    return ran, same >= stable


def measure(spec):
    """Run one measurement described by ``spec`` (see run_spec's keys) in this process; returns a result dict."""
    from backends import get_backend
    kind, model, size = spec["kind"], spec["model"], spec["size"]
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    steps, warmup = int(spec.get("steps", 3)), warmup_count(spec)
    if steps < 1 or (warmup is not None and warmup < 0):
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}")
    overrides = {"AMP": bool(spec.get("amp", False))}
    if spec.get("batch_size"):
        overrides["BATCH_SIZE"] = int(spec["batch_size"])
    cfg = bench_config(model, size, **overrides)
    t0 = time.perf_counter()
    be = get_backend(spec["backend"])
    import_s = time.perf_counter() - t0
    device = use_device(be, spec.get("gpu"))
    be.seed(0)
    rss_start, _ = rss_mib()
    facts = model_facts(model, size)
    t0 = time.perf_counter()
    net = be.build_model(cfg, **facts)
    build_s = time.perf_counter() - t0
    batch_size = cfg.BATCH_SIZE if kind == "train" else cfg.EVAL_BATCH_SIZE
    batch = framework_batch(be, task_samples(cfg, batch_size, facts))
    rss_built, _ = rss_mib()
    trainer = be.make_trainer(net, cfg) if kind == "train" else None     # loss_scale(None) is None: no AMP
    if trainer:
        step = lambda: trainer.train_step(batch, LR)  # noqa: E731
    else:
        step = lambda: be.predict(net, batch)  # noqa: E731
    warm_times, warm_settled = warm_up(lambda: (step(), _sync_and_gpu_peak(be.name, device)), warmup)
    settle, settled = settle_loss_scale(step, trainer)
    scale_before = loss_scale(trainer)
    times, cpu_times, windows, scales = [], [], [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        last = step()
        _sync_and_gpu_peak(be.name, device)
        t1 = time.perf_counter()
        times.append(t1 - t0)
        cpu_times.append(time.process_time() - c0)
        windows.append((t0, t1))  # CLOCK_MONOTONIC: the parent matches its load samples to these
        scales.append(loss_scale(trainer))
    _, peak = rss_mib()
    median = statistics.median(times)
    result = {
        "kind": kind, "backend": be.name, "model": model, "size": size, "device": device, "amp": overrides["AMP"],
        "batch_size": batch_size, "hidden_size": cfg.HIDDEN_SIZE, "steps": steps, "warmup": len(warm_times),
        "warmup_rule": spec.get("warmup", 1), "warmup_times_s": warm_times, "warmup_settled": warm_settled,
        "times_s": [round(t, 5) for t in times], "median_s": round(median, 5),
        "cpu_times_s": [round(t, 5) for t in cpu_times], "step_windows": windows,
        "samples_per_s": round(batch_size / median, 2),
        "peak_rss_mib": round(peak, 1), "rss_before_build_mib": round(rss_start, 1),
        "rss_after_build_mib": round(rss_built, 1), "step_peak_over_build_mib": round(peak - rss_built, 1),
        "gpu_peak_mib": _sync_and_gpu_peak(be.name, device), "import_s": round(import_s, 3),
        "build_s": round(build_s, 3), "framework": framework_info(be.name),
        "parameters": int(sum(int(np.prod(p.shape)) for p in net.parameters())),
        "load_avg": list(os.getloadavg()),
    }
    if spec.get("floor_here") and be.name == "torch" and kind == "train" and device == "cpu":
        result.update(floor_here(step))
    if kind == "train":
        result["loss"] = float(last)
        if scales and scales[0] is not None:   # AMP: a timed step whose scale fell skipped Adam (an overflow)
            result["loss_scale"] = {"settle_steps": settle, "settled": settled, "after_each_step": scales,
                                    "fell": sum(b < a for a, b in zip([scale_before] + scales, scales))}
    return result


def floor_here(step):
    """What bench.floor measures that depends on the moment, measured in the torch measuring process right after its
    timed steps (the host's speed drifts between processes and minutes): the best matmul rate, and the seconds the
    products of one more ``step()`` take run one by one."""
    from bench import matmuls
    rates = matmuls.matmul_rate()
    products = matmuls.record_products(step)
    return {"matmul_gflops_per_s": rates, "best_gflops_per_s": max(rates.values()),
            "matmul_s": round(matmuls.product_seconds(products), 6)}


def warmup_count(spec):
    """The spec's fixed warm-up step count, or None for "stable" (bench.warm_up's rule)."""
    warmup = spec.get("warmup", 1)
    return None if warmup == "stable" else int(warmup)


def warm_up(step, count):
    """``count`` warm-up steps, or with None bench.warm_up's rule; returns (rounded step times, settled)."""
    if count is None:
        times, settled = run_until_stable(step)
    else:
        times, settled = [], True
        for _ in range(count):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    return [round(t, 5) for t in times], settled


def child_main(module, measure_fn, argv=None):
    """The entry point of every measurement module: one JSON spec argument in, one ``BENCH_RESULT {json}`` line out."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit(f"usage: python -m {module} '<json spec>'")
    try:
        spec = json.loads(argv[0])
    except json.JSONDecodeError as exc:
        raise SystemExit(f"{module}: the argument is not a JSON object ({exc})") from None
    print(RESULT_MARK + json.dumps(measure_fn(spec)), flush=True)


if __name__ == "__main__":
    child_main("bench.train_step", measure)
