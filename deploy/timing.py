"""Latency and throughput: a timing helper, and the Paddle Inference predictor against the dynamic graph.

    from deploy.timing import time_call
    stats = time_call(lambda: predictor.logits(batch), warmup=3, repeats=20)   # {'median_s', 'mean_s', ...}

    python -m deploy bench --MODEL trar --DATASET vqa --batch-sizes 1 64      # random weights, default-size TRAR
"""
import statistics
import tempfile
import time

import numpy as np


def time_call(fn, warmup=2, repeats=10, items=1):
    """Run ``fn()`` ``warmup`` times untimed, then ``repeats`` times; seconds per call and items per second.

    items: how many samples one call handles (the batch size), for 'items_per_s' (from the median).
    """
    if repeats < 1:
        raise ValueError(f"repeats: expected >= 1, got {repeats}")
    for _ in range(max(0, int(warmup))):
        fn()
    times = []
    for _ in range(int(repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return _stats(times, items)


def time_interleaved(fns, warmup=2, repeats=10, items=1):
    """time_call for several callables at once, taking turns call by call, so that a busy machine slows them
    alike: {name: stats}."""
    for _ in range(max(0, int(warmup))):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(int(repeats)):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: _stats(t, items) for name, t in times.items()}


def _stats(times, items):
    median = statistics.median(times)
    return {"median_s": median, "mean_s": statistics.fmean(times), "min_s": min(times), "max_s": max(times),
            "repeats": len(times), "items_per_s": items / median if median > 0 else float("inf")}


# Paddle Inference CPU settings compared by `bench`: the defaults, then each knob changed alone.
# (enable_memory_optim is left out: it fails with Paddle 3.3.1 PIR programs, see deploy/predict.py.)
KNOB_SETTINGS = {
    "default (oneDNN + IR optim)": {"mkldnn": True, "ir_optim": True},
    "no oneDNN": {"mkldnn": False, "ir_optim": True},
    "no IR optim": {"mkldnn": True, "ir_optim": False},
    "bare (both off)": {"mkldnn": False, "ir_optim": False},
}


def _full_batch(batch, batch_size):
    """The four Net inputs for the dynamic graph; (B, 1) zeros for those the model ignores."""
    from backends.base import INPUT_KEYS
    zeros = np.zeros((batch_size, 1), np.float32)
    return {key: batch.get(key, zeros) for key in INPUT_KEYS}


def bench(cfg, batch_sizes=(1, 64), threads=None, warmup=2, repeats=10, token_size=400, answer_size=3129,
          settings=None, seed=0, log=print):
    """Time the dynamic graph (backend predict) and the exported Paddle Inference predictor of a randomly
    initialised model of ``cfg``, on CPU, taking turns call by call. Returns rows {'runner', 'batch_size',
    'threads', **time_call stats}."""
    from backends import get_backend
    from deploy.bundle import sample_inputs
    from deploy.export import export_net
    from deploy.predict import PaddleRunner, default_threads

    threads = int(threads or default_threads())
    be = get_backend("paddle")
    be.set_device("")
    be.seed(seed)
    token_to_ix = {"PAD": 0, "UNK": 1, "CLS": 2, **{f"w{i}": i for i in range(3, token_size)}}
    answers = [f"answer{i}" for i in range(answer_size)]
    net = be.build_model(cfg, token_size, answer_size)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        manifest = export_net(net, cfg, tmp, token_to_ix, answers, _max_token(cfg))
        files = manifest["files"]
        runners = {name: PaddleRunner(f"{tmp}/{files['model']}", f"{tmp}/{files['params']}", threads=threads, **knobs)
                   for name, knobs in (settings or KNOB_SETTINGS).items()}
        for batch_size in batch_sizes:
            batch = sample_inputs(manifest["inputs"], batch_size, token_size, seed=seed)
            full = _full_batch(batch, batch_size)
            candidates = {"dynamic graph": lambda: be.predict(net, full)}
            candidates.update({f"inference: {name}": (lambda r: lambda: r.run(batch))(r)
                               for name, r in runners.items()})
            stats = time_interleaved(candidates, warmup=warmup, repeats=repeats, items=batch_size)
            for name, st in stats.items():
                row = {"runner": name, "batch_size": batch_size, "threads": threads, **st}
                rows.append(row)
                if log:
                    log(format_row(row))
    return rows


def _max_token(cfg):
    return int(cfg.MAX_TOKEN) if cfg.DATA_FORMAT == "vqa" else CLEVR_BENCH_TOKENS


CLEVR_BENCH_TOKENS = 45   # a CLEVR vocabulary's longest question is about this long


def format_row(row):
    return (f"{row['runner']:<48} batch {row['batch_size']:>3}  median {row['median_s'] * 1000:9.2f} ms  "
            f"{row['items_per_s']:9.1f} samples/s")


def speedups(rows):
    """{batch size: {runner: dynamic median / runner median}}."""
    out = {}
    for batch_size in sorted({r["batch_size"] for r in rows}):
        mine = [r for r in rows if r["batch_size"] == batch_size]
        base = next(r for r in mine if r["runner"] == "dynamic graph")["median_s"]
        out[batch_size] = {r["runner"]: base / r["median_s"] for r in mine if r["runner"] != "dynamic graph"}
    return out
