"""The original TRAR-VQA code's train step, timed like ours (``python -m bench train --original PATH``).

    python -m bench.original '{"path": "../TRAR-VQA", "model": "trar", "size": "default", "steps": 5}'

prints one line ``BENCH_RESULT {json}`` with the keys of bench.train_step's results and backend "original". PATH is a
user's checkout of github.com/rentainhe/TRAR-VQA. Its modules are loaded from their source text into this process only
(an import hook serving the ``openvqa`` package from PATH, removed again after building the model), with the two
changes the 2021 code needs on a CPU with numpy 2, applied in memory (the checkout is only read):

- ``np.bool`` -> ``bool`` (numpy 2 removed the alias);
- ``.cuda()`` -> ``.to(<mask>.device)`` inside TRAR's ``getMasks`` (the image-window masks go to the input's device).

The rest is the original's own code: its Net, its LayerNorm / dropout / attention, torch's BCEWithLogitsLoss with the
config's reduction (sum) and torch.optim.Adam with the config's OPT_PARAMS, as its train engine builds them. The
config is ours for the measured size (bench.train_step.bench_config) copied onto the original's Cfgs; the batch is
bench.train_step.synthetic_samples with the same seed, stacked as torch's default collate would; the warm-up is the
spec's, the same rule as the backends' (bench.warm_up).
"""
import ast
import contextlib
import importlib.abc
import importlib.util
import os
import re
import statistics
import sys
import tempfile
import time

import numpy as np

from bench.train_step import (
    ANSWER_SIZE,
    LR,
    TOKEN_SIZE,
    bench_config,
    child_main,
    rss_mib,
    synthetic_samples,
    warm_up,
    warmup_count,
)
from core import registry

# The registry's routed model: the one TRAR-VQA's code implements (as bench/report.py's GOAL_MODEL).
ROUTED_MODEL = next(spec.model_use for spec in registry.MODELS.values() if spec.routes)
PACKAGE = "openvqa"
MODEL_USE = "TRAR"   # the original's module and config folder name (openvqa/models/TRAR)
# Our config keys the original's Net reads, copied onto its Cfgs so both sides build the same network.
CONFIG_KEYS = ("LAYER", "HIDDEN_SIZE", "FF_SIZE", "MULTI_HEAD", "DROPOUT_R", "FLAT_MLP_SIZE", "FLAT_GLIMPSES",
               "FLAT_OUT_SIZE", "WORD_EMBED_SIZE", "USE_GLOVE", "FEAT_SIZE", "USE_BBOX_FEAT", "BBOX_NORMALIZE",
               "BBOXFEAT_EMB_SIZE", "USE_AUX_FEAT", "BATCH_SIZE", "ORDERS", "IMG_SCALE", "ROUTING", "POOLING",
               "TAU_POLICY", "TAU_MAX", "TAU_MIN", "BINARIZE", "LOSS_REDUCTION", "OPT_PARAMS")
_NP_BOOL = re.compile(r"\bnp\.bool\b(?!_)")
_GET_MASKS = re.compile(r"^def getMasks\((\w+)[^\n]*\n(?:(?:[ \t][^\n]*)?\n)*", re.MULTILINE)


def patch_source(name, source):
    """(source with the two CPU / numpy 2 changes, {change: times applied}) for module ``name`` of the original."""
    source, np_bools = _NP_BOOL.subn("bool", source)
    applied = {"np.bool -> bool": np_bools}
    if name == f"{PACKAGE}.models.{MODEL_USE}.trar":
        cuda = 0

        def to_device(match):
            nonlocal cuda
            body = match.group(0)
            cuda += body.count(".cuda()")
            return body.replace(".cuda()", f".to({match.group(1)}.device)")
        source = _GET_MASKS.sub(to_device, source)
        applied[".cuda() -> .to(input device) in getMasks"] = cuda
    return source, applied


class _SourceFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves ``openvqa`` and its submodules from ``root``'s source files, patched by patch_source."""

    def __init__(self, root):
        self.root, self.applied = root, {}

    def find_spec(self, name, path=None, target=None):
        if name != PACKAGE and not name.startswith(PACKAGE + "."):
            return None
        where = os.path.join(self.root, *name.split("."))
        if os.path.isdir(where):
            spec = importlib.util.spec_from_loader(name, self, origin=os.path.join(where, "__init__.py"),
                                                   is_package=True)
            spec.submodule_search_locations = [where]
            return spec
        if os.path.isfile(where + ".py"):
            return importlib.util.spec_from_loader(name, self, origin=where + ".py")
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        origin = module.__spec__.origin
        source = ""
        if os.path.isfile(origin):
            with open(origin, encoding="utf-8") as f:
                source = f.read()
        source, applied = patch_source(module.__name__, source)
        for change, count in applied.items():
            self.applied[change] = self.applied.get(change, 0) + count
        module.__file__ = origin
        exec(compile(source, origin, "exec"), module.__dict__)  # noqa: S102 - the user's checkout, as its run.py would


@contextlib.contextmanager
def original_modules(root):
    """Within the block, ``import openvqa...`` loads ``root``'s modules (patched); afterwards they are gone from
    sys.modules again (objects built inside keep working). Yields the finder (its ``applied`` counts the changes)."""
    root = os.path.abspath(root)
    if not os.path.isdir(os.path.join(root, PACKAGE, "models", MODEL_USE)):
        raise ValueError(f"--original {root}: expected a TRAR-VQA checkout with {PACKAGE}/models/{MODEL_USE}/")
    if any(name == PACKAGE or name.startswith(PACKAGE + ".") for name in sys.modules):
        raise RuntimeError(f"--original: a module named {PACKAGE} is already imported in this process")
    finder = _SourceFinder(root)
    sys.meta_path.insert(0, finder)
    try:
        yield finder
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def original_config(cfg_module, cfg):
    """The original's Cfgs() with our ``cfg``'s CONFIG_KEYS (OPT_PARAMS as values, as its proc() leaves them).
    Cfgs() creates ./results/... and ./ckpts folders in the working directory: it runs in an empty temporary one."""
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="twinvqa-original-") as scratch:
        os.mkdir(os.path.join(scratch, "results"))
        os.chdir(scratch)
        try:
            original = cfg_module.Cfgs()
        finally:
            os.chdir(cwd)
    for key in CONFIG_KEYS:
        setattr(original, key, getattr(cfg, key))
    original.MODEL_USE, original.DATASET = MODEL_USE, cfg.DATA_FORMAT   # "vqa": the original names the format
    original.OPT_PARAMS = {k: ast.literal_eval(v) if isinstance(v, str) else v for k, v in cfg.OPT_PARAMS.items()}
    return original


def original_batch(samples):
    """The synthetic samples stacked into the tensors the original's train loop passes to its Net."""
    import torch
    keys = ("frcn_feat", "grid_feat", "bbox_feat", "ques_ix", "ans")
    return [torch.from_numpy(np.stack([s[k] for s in samples])) for k in keys]


def measure(spec):
    """Time the original's train step (see the module docstring); a result dict like bench.train_step.measure's."""
    import torch
    model, size = spec.get("model", ROUTED_MODEL), spec["size"]
    if model != ROUTED_MODEL:
        raise ValueError(f"model: the original code measured here is TRAR-VQA's {ROUTED_MODEL}, got {model!r}")
    steps, warmup = int(spec.get("steps", 3)), warmup_count(spec)
    if steps < 1 or (warmup is not None and warmup < 0):
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got steps={steps}, warmup={spec.get('warmup')}")
    cfg = bench_config(model, size)
    torch.manual_seed(0)
    rss_start, _ = rss_mib()
    with original_modules(spec["path"]) as finder:
        from importlib import import_module
        cfgs = original_config(import_module(f"{PACKAGE}.models.{MODEL_USE}.model_cfgs"), cfg)
        t0 = time.perf_counter()
        net = import_module(f"{PACKAGE}.models.{MODEL_USE}.net").Net(cfgs, None, TOKEN_SIZE[size], ANSWER_SIZE)
        build_s = time.perf_counter() - t0
    net.train()
    frcn, grid, bbox, ques, ans = original_batch(synthetic_samples(cfg, cfg.BATCH_SIZE, TOKEN_SIZE[size],
                                                                   ANSWER_SIZE))
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction=cfgs.LOSS_REDUCTION)
    optim = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=LR, **cfgs.OPT_PARAMS)
    rss_built, _ = rss_mib()

    def step():   # utils/train_engine.py's inner loop, one sub-batch
        optim.zero_grad()
        loss = loss_fn(net(frcn, grid, bbox, ques), ans)
        loss.backward()
        optim.step()
        return loss.item()

    warm_times, warm_settled = warm_up(step, warmup)
    times, cpu_times, windows = [], [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        last = step()
        t1 = time.perf_counter()
        times.append(t1 - t0)
        cpu_times.append(time.process_time() - c0)
        windows.append((t0, t1))
    _, peak = rss_mib()
    median = statistics.median(times)
    return {
        "kind": "train", "backend": "original", "model": model, "size": size, "device": "cpu", "amp": False,
        "batch_size": cfg.BATCH_SIZE, "hidden_size": cfg.HIDDEN_SIZE, "steps": steps, "warmup": len(warm_times),
        "warmup_rule": spec.get("warmup", 1), "warmup_times_s": warm_times, "warmup_settled": warm_settled,
        "times_s": [round(t, 5) for t in times], "median_s": round(median, 5),
        "cpu_times_s": [round(t, 5) for t in cpu_times], "step_windows": windows,
        "samples_per_s": round(cfg.BATCH_SIZE / median, 2), "peak_rss_mib": round(peak, 1),
        "rss_before_build_mib": round(rss_start, 1), "rss_after_build_mib": round(rss_built, 1),
        "step_peak_over_build_mib": round(peak - rss_built, 1), "gpu_peak_mib": None, "build_s": round(build_s, 3),
        "framework": {"version": torch.__version__, "threads": torch.get_num_threads()},
        "parameters": int(sum(p.numel() for p in net.parameters())), "load_avg": list(os.getloadavg()),
        "original": {"path": os.path.abspath(spec["path"]), "changes_in_memory": finder.applied},
        "loss": last,
    }


if __name__ == "__main__":
    child_main("bench.original", measure)
