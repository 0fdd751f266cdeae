"""Checkpoint conversion time: torch .pkl -> paddle .pdparams/.pdopt and back, through convert.checkpoints.convert_file.

    python -m bench.conversion '{"models": ["trar"], "sizes": ["default"], "repeats": 3}'

prints one line ``BENCH_RESULT {json}``. The source is a checkpoint the torch backend writes after one train step
(weights and optimizer state: Adam, or SGD momentum for the classifiers), so the converter moves both. Each
direction is timed ``repeats`` times; the median counts.
"""
import os
import statistics
import tempfile
import time

from bench.train_step import (
    CONFIGS,
    LR,
    MODELS,
    TASK_SIZES,
    bench_config,
    child_main,
    framework_batch,
    model_facts,
    task_of,
    task_samples,
)
from convert.checkpoints import convert_file


def torch_checkpoint(model, size, path):
    """Write a torch checkpoint (weights + optimizer state after one step) of (model, size); returns its bytes."""
    from backends import get_backend
    be = get_backend("torch")
    be.set_device("")
    be.seed(0)
    cfg = bench_config(model, size, BATCH_SIZE=2)
    facts = model_facts(model, size)
    net = be.build_model(cfg, **facts)
    trainer = be.make_trainer(net, cfg)
    trainer.train_step(framework_batch(be, task_samples(cfg, 2, facts)), LR)
    trainer.save(path, 1, LR)
    return os.path.getsize(path)


def measure(spec):
    repeats = int(spec.get("repeats", 3))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-convert-", dir=spec.get("root")) as root:
        for size in spec.get("sizes", ["default"]):
            for model in spec.get("models", list(MODELS[:1])):
                name, dataset = CONFIGS[(model, size)]
                sets = [("USE_GLOVE", False), *TASK_SIZES[task_of(model)][size][1].items()]
                src = os.path.join(root, f"{model}_{size}.pkl")
                mb = torch_checkpoint(model, size, src) / 1e6
                pd_path = os.path.join(root, f"{model}_{size}.pdparams")
                back = os.path.join(root, f"{model}_{size}_back.pkl")
                for direction, a, b in (("torch2paddle", src, pd_path), ("paddle2torch", pd_path, back)):
                    times, summary = [], None
                    for _ in range(repeats):
                        start = time.perf_counter()
                        summary = convert_file(direction, a, b, name, dataset, sets=sets)
                        times.append(time.perf_counter() - start)
                    rows.append({"model": model, "size": size, "direction": direction, "mb": round(mb, 1),
                                 "times_s": [round(t, 4) for t in times],
                                 "median_s": round(statistics.median(times), 4),
                                 "tensors": summary.get("tensors"), "optimizer": summary.get("optimizer")})
    return {"rows": rows, "repeats": repeats, "load_avg": list(os.getloadavg())}


if __name__ == "__main__":
    child_main("bench.conversion", measure)
