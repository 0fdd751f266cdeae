"""python -m bench: speed and memory benchmarks per backend (docs/benchmarks.md).

    python -m bench PART [options]     # PART: all | train | eval | floor | data | convert | infer | report
    python -m bench PART --help        # what PART measures, and its options with their choices

Every measurement runs in a fresh subprocess with OMP_NUM_THREADS / MKL_NUM_THREADS = --threads; for each
(model, size) the backends run one after the other, in --rounds alternating rounds (5 at the demo size, where a step
is ~40 ms and a shared host's slow seconds matter), so they see the same machine state and are reported as ratios.
The 1-minute load average is recorded with every measurement; --max-load / --wait-quiet wait for a quiet machine.
Results go to results/bench/<date>.json (not tracked by git) with their report beside it (<date>.md); --docs
docs/benchmarks.md updates the generated block of the docs instead.
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

from bench import report
from bench.train_step import KINDS, MODELS, RESULT_MARK, SIZES
from core.logs import configure as configure_logging

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(REPO, "results", "bench")   # under /results/, which .gitignore keeps out of the tree
DOCS = os.path.join(REPO, "docs", "benchmarks.md")
BACKEND_NAMES = ("torch", "paddle")
ORIGINAL = "original"   # the backend name of the original code's runs (bench/original.py)
# part -> (one line for `python -m bench --help`, what `python -m bench PART --help` says it measures, option groups)
PARTS = {
    "all": ("every part below but report",
            "Train steps, eval batches, the arithmetic floor, feature loading, checkpoint conversion and the Paddle "
            "Inference predictor, one after the other.",
            ("backends", "models", "steps", "original", "device", "data", "convert", "infer", "machine", "output")),
    "train": ("train steps per (backend, model, size), and the floor",
              "trainer.train_step(batch, lr) on a synthetic batch with the real shapes: forward, the config's loss "
              "(VQA: summed BCE; classification: mean CE), backward, its optimizer (Adam; SGD); warm-up steps, then "
              "the median. Also measures the arithmetic floor (torch, CPU).",
              ("backends", "models", "steps", "original", "device", "machine", "output")),
    "eval": ("eval batches per (backend, model, size)",
             "be.predict (eval mode, no grad, float32) on a batch of EVAL_BATCH_SIZE.",
             ("backends", "models", "steps", "device", "machine", "output")),
    "floor": ("the arithmetic floor of a torch train step",
              "The matmul FLOPs of one torch train step divided by the best float32 matmul rate torch reaches here "
              "with the same threads (CPU only).",
              ("models", "machine", "output")),
    "data": ("feature loading: per-image files against the feature store",
             "VQADataset[i] at the real feature sizes, from one file per image and from the memory-mapped feature "
             "store (core.data.feature_store), from memory and from disk, and through each backend's DataLoader.",
             ("backends", "data", "machine", "output")),
    "convert": ("checkpoint conversion time, torch <-> paddle",
                "convert.checkpoints.convert_file on a torch checkpoint with weights and Adam state, both directions.",
                ("models", "convert", "machine", "output")),
    "infer": ("the Paddle Inference predictor against the dynamic graph",
              "deploy.timing.bench: the exported predictor and be.predict, call by call in turn (random weights).",
              ("models", "infer", "machine", "output")),
    "report": ("render result files into docs/benchmarks.md (or print them)",
               "Merges result JSON files (later files win) into the generated block of --docs.",
               ("report",)),
}


def _csv(allowed, flag):
    def parse(text):
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"{flag}: expected a comma list of {', '.join(allowed)}, got {text!r}")
        return items
    return parse


def _options():
    """Option group -> (title, [(flag, add_argument keywords)]); PARTS names the groups each part takes."""
    def comma_list(flag, allowed, what):   # --models trar,mcan: every item one of ``allowed``, all by default
        return flag, {"type": _csv(allowed, flag), "default": list(allowed), "metavar": ",".join(allowed),
                      "help": f"{what}: a comma list of {', '.join(allowed)} (default: all)"}

    def count(flag, default, what):
        return flag, {"type": int, "default": default, "metavar": "N", "help": f"{what} (default {default})"}

    return {
        "backends": ("backends", [comma_list("--backends", BACKEND_NAMES, "frameworks to measure")]),
        "models": ("models and sizes", [
            comma_list("--models", MODELS, "models"),
            comma_list("--sizes", SIZES, "sizes (demo = the generated data's configs, configs/demo*/*.yml; "
                                         "default = configs/vqa/*.yml, and ViT-B/16 at 224, batch 8)")]),
        "steps": ("steps and rounds", [
            count("--steps", 10, "measured steps at the demo size"),
            count("--warmup", 3, "warm-up steps at the demo size"),
            count("--default-steps", 3, "measured steps at the default size"),
            count("--default-warmup", 1, "warm-up steps at the default size"),
            count("--rounds", 5, "rounds at the demo size, each running every backend once (see model_runs)"),
            count("--default-rounds", 1, "rounds at the default size")]),
        "original": ("the original code", [
            ("--original", {"metavar": "PATH",
                            "help": "a checkout of github.com/rentainhe/TRAR-VQA: its TRAR train step is timed in the "
                                    "same rounds as the backends (bench/original.py), and every train step then "
                                    "warms up by bench.warm_up's rule (until stable) instead of a fixed count"})]),
        "device": ("device", [
            ("--gpu", {"default": "", "metavar": "ID", "help": "GPU id (e.g. 0); empty = CPU. A backend that sees "
                                                                "no GPU fails its runs (never CPU numbers)"}),
            ("--amp", {"action": "store_true", "help": "mixed precision (GPU only; train steps only)"})]),
        "data": ("feature loading", [count("--data-images", 300, "images for the data-loading benchmark")]),
        "convert": ("conversion", [count("--convert-repeats", 3, "timed conversions per direction")]),
        "infer": ("Paddle Inference", [
            ("--infer-batch-sizes", {"type": int, "nargs": "+", "default": [1, 64], "metavar": "N",
                                     "help": "batch sizes for the predictor timing (deploy.timing; default 1 64)"})]),
        "machine": ("machine", [
            ("--threads", {"type": int, "default": os.cpu_count() or 1, "metavar": "N",
                           "help": "intra-op threads per framework (default: the machine's cores)"}),
            ("--max-load", {"type": float, "default": 0.5, "metavar": "X",
                            "help": "other runnable tasks (averaged over 3 s) below which the machine counts as "
                                    "quiet (default 0.5)"}),
            ("--wait-quiet", {"type": float, "default": 0.0, "metavar": "SECONDS",
                              "help": "seconds to wait (at most) for a quiet machine before each measurement "
                                      "(default 0)"}),
            ("--timeout", {"type": float, "default": 1800, "metavar": "SECONDS",
                           "help": "seconds per measurement subprocess (default 1800)"})]),
        "output": ("output", [
            ("--out", {"metavar": "FILE.json",
                       "help": "result JSON (default results/bench/<date>.json, which git does not track)"}),
            ("--docs", {"metavar": "FILE.md",
                        "help": "markdown file whose generated block is rewritten, e.g. docs/benchmarks.md "
                                "(default: the report beside the JSON, <out>.md)"}),
            ("--no-docs", {"action": "store_true", "help": "write the JSON only"})]),
        "report": ("report", [
            ("results", {"nargs": "+", "metavar": "RESULTS.json", "help": "result JSON files (later files win)"}),
            ("--docs", {"default": DOCS, "metavar": "FILE.md",
                        "help": "markdown file whose generated block is rewritten (default docs/benchmarks.md)"}),
            ("--no-docs", {"action": "store_true", "help": "print the generated block instead of writing --docs"}),
            ("--before", {"nargs": "+", "default": [], "metavar": "OLD.json",
                          "help": "result files from before a change"}),
            ("--before-label", {"default": "", "metavar": "TEXT",
                                "help": "what changed between --before and the results"})]),
    }


def build_parser():
    p = argparse.ArgumentParser(prog="python -m bench", description="Speed and memory benchmarks per backend, each "
                                "measurement in a process of its own; results to results/bench/ by default.",
                                epilog="`python -m bench PART --help` describes a part. docs/benchmarks.md has the "
                                       "method and the results.")
    parts = p.add_subparsers(dest="command", required=True, metavar="PART", title="parts")
    options = _options()
    for name, (summary, description, groups) in PARTS.items():
        sub = parts.add_parser(name, help=summary, description=description)
        for group in groups:
            title, flags = options[group]
            target = sub.add_argument_group(title) if group != "report" else sub
            for flag, keywords in flags:
                target.add_argument(flag, **keywords)
    return p


def _fill_defaults(args):
    """A part's args plus every other option's default (``all`` has them all), for the code the parts share."""
    everything = build_parser().parse_args(["all"])
    for key, value in vars(everything).items():
        if not hasattr(args, key):
            setattr(args, key, value)
    return args


def machine():
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                info["cpu"] = line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            kb = int(f.readline().split()[1])
        info["memory_gib"] = round(kb / 2 ** 20, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, check=False, timeout=20).stdout.strip()
        if out:
            info["gpu"] = out.splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def _commit():
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=False).stdout.strip()
        return (out + ("+local changes" if dirty else "")) or "?"
    except OSError:
        return "?"


def running_now(seconds=3.0):
    """Average number of other runnable tasks over ``seconds`` (/proc/stat procs_running, minus this process).

    Unlike the 1-minute load average it does not remember our own previous measurement, so it says whether *other*
    work is running right now. Falls back to the load average where /proc/stat is missing."""
    samples = []
    end = time.time() + seconds
    while time.time() < end:
        try:
            with open("/proc/stat", encoding="ascii") as f:
                for line in f:
                    if line.startswith("procs_running"):
                        samples.append(int(line.split()[1]) - 1)
        except OSError:
            return os.getloadavg()[0]
        time.sleep(0.05)
    return sum(samples) / len(samples) if samples else os.getloadavg()[0]


def wait_quiet(max_load, seconds, sample=3.0):
    """Wait up to ``seconds`` for other work to drop below ``max_load`` runnable tasks (each reading averaged over
    ``sample`` seconds); returns (running, load1)."""
    deadline = time.time() + seconds
    running = running_now(sample)
    while running >= max_load and time.time() < deadline:
        time.sleep(min(10.0, max(0.0, deadline - time.time())))
        running = running_now(sample)
    return running, os.getloadavg()[0]


def _procs_running():
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            if line.startswith("procs_running"):
                return int(line.split()[1])
    raise OSError("no procs_running in /proc/stat")


def _running_threads(pid):
    count = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/stat", encoding="ascii", errors="replace") as f:
                count += f.read().rsplit(")", 1)[1].split()[0] == "R"
        except (OSError, IndexError):
            pass
    return count


SAMPLE_INTERVAL = 0.25


def _sample_others(proc, interval=SAMPLE_INTERVAL):
    """(time.perf_counter(), other runnable tasks) every ``interval`` s while ``proc`` runs: procs_running minus this
    sampler and the child's running threads. Sampled from the parent, so the measured process runs no extra thread."""
    samples = []
    while proc.poll() is None:
        try:
            samples.append((time.perf_counter(), _procs_running() - 1 - _running_threads(proc.pid)))
        except OSError:
            break
        time.sleep(interval)
    return samples


def run_child(module, spec, threads, timeout, max_others=0.5):
    """Run ``python -m <module> '<spec json>'`` in a fresh process; returns its result dict (or {'error': ...}).

    When the child reports 'step_windows', each measured step gets the mean number of other runnable tasks seen
    during it ('others_running_per_step'), and 'clean_median_s' is the median over the steps that had the machine
    to themselves (fewer than ``max_others``)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", module, json.dumps(spec)]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=err, text=True)
        deadline = time.time() + timeout
        samples = []
        while proc.poll() is None and time.time() < deadline:
            samples += _sample_others(_Deadline(proc, deadline))
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            return {**spec, "error": f"timed out after {timeout:.0f} s"}
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return _attach_others(json.loads(line[len(RESULT_MARK):]), samples, max_others)
    tail = (stderr.strip().splitlines() or ["no output"])[-1]
    return {**spec, "error": f"exit {proc.returncode}: {tail}"}


class _Deadline:
    """A Popen whose poll() also reports the timeout, so the sampler stops at the deadline."""

    def __init__(self, proc, deadline):
        self.proc, self.deadline, self.pid = proc, deadline, proc.pid

    def poll(self):
        return self.proc.poll() if time.time() < self.deadline else -1


def _attach_others(result, samples, max_others):
    windows = result.pop("step_windows", None)
    if not windows:
        return result
    per_step = []
    for t0, t1 in windows:  # a step shorter than the sampling interval takes the samples around it
        seen = [v for t, v in samples if t0 - SAMPLE_INTERVAL <= t <= t1 + SAMPLE_INTERVAL]
        per_step.append(round(sum(seen) / len(seen), 2) if seen else None)
    clean = [t for t, o in zip(result["times_s"], per_step) if o is not None and o < max_others]
    result["others_running_per_step"] = per_step
    result["clean_steps"] = len(clean)
    result["clean_median_s"] = round(statistics.median(clean), 5) if clean else None
    return result


def _say(text):
    print(text, file=sys.stderr, flush=True)


def model_runs(args, kinds, state, on_result=None):
    """Every (size, model, kind) measured in rounds: each round runs every backend once, in alternating order
    (torch, paddle, then paddle, torch, ...), so that a slow minute of a shared host falls on both backends of a
    round; the report's paddle / torch ratio is the median of the per-round ratios. ``on_result(runs)``, when given,
    gets the runs measured so far after every measurement (the current one's rounds combined as far as they went).
    With --original, TRAR's train steps also run the original code (bench/original.py) in every round, and every
    measurement warms up by bench.warm_up's rule."""
    runs, original = [], getattr(args, "original", None)
    sample = 0.5 if args.gpu else 3.0   # seconds of load sampling around each measurement; a GPU's time is scarce
    for size in args.sizes:
        steps, warmup = (args.steps, args.warmup) if size == "demo" else (args.default_steps, args.default_warmup)
        rounds = args.rounds if size == "demo" else args.default_rounds
        for model in args.models:
            for kind in kinds:
                names = measured_names(args, kind, model)
                by_backend = {backend: [] for backend in names}
                for r in range(rounds):
                    for backend in names[::-1] if r % 2 else names:
                        spec = {"kind": kind, "backend": backend, "model": model, "size": size, "steps": steps,
                                "warmup": "stable" if original else warmup, "gpu": args.gpu, "amp": args.amp}
                        if backend == ORIGINAL:
                            spec["path"] = original
                        # the floor's rate at the moment of the torch steps (bench.train_step.floor_here)
                        spec["floor_here"] = size == "default" and kind == "train" and not args.gpu
                        running, load = wait_quiet(args.max_load, args.wait_quiet, sample)
                        state["quiet"] &= running < args.max_load
                        module = "bench.original" if backend == ORIGINAL else "bench.train_step"
                        result = run_child(module, spec, args.threads, args.timeout, args.max_load)
                        result["others_running_before"] = round(running, 2)
                        result["load_before"] = round(load, 2)
                        result["others_running_after"] = round(running_now(min(1.0, sample)), 2)
                        by_backend[backend].append(result)
                        _say(_summary(result) + (f" [round {r + 1}/{rounds}]" if rounds > 1 else ""))
                        if on_result:
                            on_result(runs + [combine_rounds(done, args.max_load)
                                              for done in by_backend.values() if done])
                runs += [combine_rounds(by_backend[backend], args.max_load) for backend in names]
    return runs


def measured_names(args, kind, model):
    """The backends measured for (kind, model): --backends, and with --original the original code for TRAR's train
    step (bench/original.py times TRAR-VQA's TRAR only)."""
    names = list(args.backends)
    if getattr(args, "original", None) and kind == "train" and model == report.GOAL_MODEL and not args.gpu:
        names.append(ORIGINAL)
    return names


def combine_rounds(results, max_others):
    """One run from the rounds of one measurement: every round's steps together, the worst memory and load, and
    'round_times_s' (each round's reported time, for the paired ratios). A failed round fails the measurement."""
    if len(results) == 1:
        return results[0]
    failed = [r for r in results if "error" in r]
    if failed:
        return {**failed[0], "error": f"{len(failed)} of {len(results)} rounds failed; first: {failed[0]['error']}"}
    run = dict(results[0])
    for key in ("times_s", "cpu_times_s", "others_running_per_step"):
        if all(key in r for r in results):
            run[key] = [v for r in results for v in r[key]]
    run["steps"] = sum(r["steps"] for r in results)
    run["median_s"] = round(statistics.median(run["times_s"]), 5)
    run["samples_per_s"] = round(run["batch_size"] / run["median_s"], 2)
    if "others_running_per_step" in run:
        clean = [t for t, o in zip(run["times_s"], run["others_running_per_step"]) if o is not None and o < max_others]
        run["clean_steps"] = len(clean)
        run["clean_median_s"] = round(statistics.median(clean), 5) if clean else None
    for key in ("peak_rss_mib", "step_peak_over_build_mib", "gpu_peak_mib", "others_running_before",
                "others_running_after", "load_before"):
        values = [r[key] for r in results if r.get(key) is not None]
        if values:
            run[key] = max(values)
    scaling = [r["loss_scale"] for r in results if r.get("loss_scale")]
    if scaling:   # AMP: every round's steps and skips
        run["loss_scale"] = {"settle_steps": max(x["settle_steps"] for x in scaling),
                             "settled": all(x.get("settled", True) for x in scaling),
                             "after_each_step": [v for x in scaling for v in x["after_each_step"]],
                             "fell": sum(x["fell"] for x in scaling)}
    run["rounds"] = len(results)
    run["round_times_s"] = [report.step_time(r) for r in results]
    for key in ("best_gflops_per_s", "matmul_s"):
        if all(key in r for r in results):
            run[f"round_{key}"] = [r[key] for r in results]
    return run


def _summary(r):
    head = report.run_name(r)
    if "error" in r:
        return f"{head}: ERROR {r['error']}"
    return (f"{head}: median {r['median_s']:.4f} s, clean {r.get('clean_steps')}/{r['steps']} steps "
            f"(median {r.get('clean_median_s')}), peak RSS {r['peak_rss_mib']:.0f} MiB, others running "
            f"{r.get('others_running_before')} before / {r.get('others_running_after')} after")


def default_out():
    return os.path.join(RESULTS_DIR, f"{datetime.date.today().isoformat()}.json")


def docs_beside(out):
    """Where a measurement's report goes without --docs: ``A.json`` -> ``A.md``, beside the results."""
    return os.path.splitext(out)[0] + ".md"


def partial_path(out):
    """Where a run writes its measurements so far: ``A.json`` -> ``A.partial.json``."""
    root, ext = os.path.splitext(out)
    return f"{root}.partial{ext or '.json'}"


def write_json(path, obj):
    from core.data.paths import atomic_write_json
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_json(path, obj)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    configure_logging()
    if args.command == "report":
        try:
            merged = report.load_results(args.results)
            if args.before:
                report.add_before(merged, args.before, args.before_label)
        except ValueError as exc:
            raise SystemExit(f"python -m bench report: {exc}") from None
        if args.no_docs:
            print(report.render(merged), end="")
        else:
            print(report.write_docs(merged, args.docs, _chart_path(args.docs)))
        return
    args = _fill_defaults(args)
    if min(args.threads, args.steps, args.default_steps, args.rounds, args.default_rounds) < 1:
        raise SystemExit("--threads, --steps, --default-steps, --rounds and --default-rounds must be >= 1")
    if min(args.warmup, args.default_warmup) < 0:
        raise SystemExit("--warmup and --default-warmup must be >= 0")
    if args.amp and not args.gpu:
        raise SystemExit("--amp: mixed precision is a GPU measurement; add --gpu N")
    if args.original:
        if args.gpu:
            raise SystemExit("--original: the original code is timed on the CPU; drop --gpu")
        if report.GOAL_MODEL not in args.models:
            raise SystemExit(f"--original: it times the original's {report.GOAL_MODEL}; add it to --models")
        if not os.path.isdir(os.path.join(args.original, "openvqa", "models", "TRAR")):
            raise SystemExit(f"--original {args.original}: expected a TRAR-VQA checkout with openvqa/models/TRAR/")
    if args.amp and args.command == "eval":
        raise SystemExit("--amp: evaluation (be.predict) always runs in float32; measure eval without --amp")
    state = {"quiet": True}
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
            "command": "python -m bench " + " ".join(shlex.quote(a) for a in argv), "commit": _commit(),
            "threads": args.threads, "max_load": args.max_load, "load_before": round(os.getloadavg()[0], 2),
            "software": f"python {platform.python_version()}, {_versions()}"}
    results = {"meta": meta, "runs": []}
    out = args.out or default_out()
    partial_out = partial_path(out)

    def save_partial(runs=None):
        # Written after every measurement, so a run cut off (a time limit, a crash) keeps what it measured, beside
        # (never over) an earlier complete result of the same name; replaced by ``out`` when the run ends.
        if runs is not None:
            results["runs"] = runs
        write_json(partial_out, dict(results, meta=dict(meta, partial=True)))

    cmd = args.command
    if cmd in ("all", "train", "eval"):
        kinds = list(KINDS) if cmd == "all" else [cmd]
        if args.amp and "eval" in kinds:
            kinds.remove("eval")
            _say("--amp: eval is not measured (be.predict always runs in float32; the fp32 run measures it)")
        results["runs"] = model_runs(args, kinds, state, on_result=save_partial)
        state["quiet"] &= all(r.get("clean_steps") == r.get("steps") for r in results["runs"] if "error" not in r)
    parts = {   # part -> (the commands that run it, its module, its spec)
        "floor": (("all", "train", "floor"), "bench.floor", {"models": args.models, "sizes": args.sizes}),
        "data": (("all", "data"), "bench.data_loading",
                 {"images": args.data_images, "backends": args.backends, "workers": os.cpu_count() or 1}),
        "convert": (("all", "convert"), "bench.conversion",
                    {"models": args.models, "sizes": args.sizes, "repeats": args.convert_repeats}),
        "infer": (("all", "infer"), "bench.inference",
                  {"models": args.models, "sizes": args.sizes, "batch_sizes": args.infer_batch_sizes,
                   "threads": args.threads}),
    }
    for part, (commands, module, spec) in parts.items():
        if cmd not in commands or (part == "floor" and ("torch" not in args.backends or args.gpu)):
            continue   # the floor is torch's matmul rate on the CPU
        running, _ = wait_quiet(args.max_load, args.wait_quiet)
        state["quiet"] &= running < args.max_load
        results[part] = run_child(module, spec, args.threads, args.timeout)
        _say(f"{part}: {json.dumps(results[part])[:300]}")
        save_partial()
    meta["quiet"] = state["quiet"]
    meta["load_after"] = round(os.getloadavg()[0], 2)
    write_json(out, results)
    if os.path.exists(partial_out):
        os.remove(partial_out)
    print(out)
    if not args.no_docs:
        docs = args.docs or docs_beside(out)
        print(report.write_docs(report.load_results([out]), docs, _chart_path(docs)))
    for line in report.original_lines(report.load_results([out])):
        print(line)
    failed = [report.run_name(r) for r in results["runs"] if "error" in r]
    failed += [part for part in ("floor", "data", "convert", "infer") if "error" in (results.get(part) or {})]
    if failed:
        raise SystemExit(f"python -m bench: {len(failed)} measurement(s) failed ({', '.join(failed)}); the reasons "
                         f"are in {out}")


def _chart_path(docs):
    """The chart beside its report, named after it (docs/benchmarks.md -> docs/benchmarks.png): reports written to one
    folder (bench/results/<run>.md) each keep their own chart instead of overwriting a shared one."""
    return os.path.splitext(os.path.abspath(docs))[0] + ".png"


def _versions():
    from importlib import metadata
    parts = []
    for dist in ("torch", "paddlepaddle", "paddlepaddle-gpu", "numpy"):
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(parts)


if __name__ == "__main__":
    main()
