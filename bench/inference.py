"""Paddle Inference predictor against the dynamic graph, through deploy.timing.bench (random weights).

    python -m bench.inference '{"models": ["trar"], "sizes": ["default"], "batch_sizes": [1, 64]}'

prints one line ``BENCH_RESULT {json}``. deploy.timing exports the net with paddle.jit.save and times the predictor and
``be.predict`` call by call in turn; this module only picks the configs and keeps the knob setting deploy uses by
default (oneDNN + IR optimisation) unless ``all_settings`` is true. deploy.timing builds VQA nets only: the models
of other tasks are listed under 'skipped', with the reason.
"""
import os

from bench.train_step import ANSWER_SIZE, MODELS, TOKEN_SIZE, bench_config, child_main, task_of
from deploy import timing

DEFAULT_SETTING = "default (oneDNN + IR optim)"


def measure(spec):
    settings = None if spec.get("all_settings") else {DEFAULT_SETTING: timing.KNOB_SETTINGS[DEFAULT_SETTING]}
    rows, skipped = [], {}
    for size in spec.get("sizes", ["default"]):
        for model in spec.get("models", list(MODELS[:1])):
            if task_of(model) != "vqa":
                skipped[model] = f"deploy.timing.bench times VQA nets only ({task_of(model)} task)"
                continue
            cfg = bench_config(model, size)
            for row in timing.bench(cfg, batch_sizes=tuple(spec.get("batch_sizes", (1, 64))),
                                    threads=spec.get("threads"), warmup=int(spec.get("warmup", 2)),
                                    repeats=int(spec.get("repeats", 5)), token_size=TOKEN_SIZE[size],
                                    answer_size=ANSWER_SIZE, settings=settings, log=None):
                rows.append({"model": model, "size": size, **row})
    return {"rows": rows, "skipped": skipped, "load_avg": list(os.getloadavg())}


if __name__ == "__main__":
    child_main("bench.inference", measure)
