"""Data-parallel training timed on this machine: a demo epoch of run.py as 1 process and as N processes under the
backend's launcher (torchrun / paddle.distributed.launch), on the CPU (gloo) or on GPUs (NCCL, --gpu 0,1).

    python -m bench.data_parallel [--backends torch paddle] [--nproc 2] [--gpu 0,1] [--model MODEL] [--epochs 1]
                                  [--data-root DIR]

Per backend, on the CPU: 1 process with every core's threads (the speed baseline), 1 process with one thread and
GRAD_ACCU_STEPS=N (what N processes of one thread each, as the launchers start them, must equal bit for bit), and
N processes. With --gpu: 1 process on the first id, then N processes on the ids. One JSON line per run on stdout:
backend, processes, device, threads, the last epoch's seconds (the engine's own timing, from its "Epoch k: ... X s"
line), seconds per step, the 1-minute load average before the run, and for the N-process run whether its weights
equal the reference's bit for bit (CPU only: GPU kernels are not bit-deterministic). Without --data-root the demo
data is generated into a temporary folder (the default sizes: a demo epoch of 6000 questions, 93 steps of 64).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

from core import registry

DATASET = registry.generated_dataset("vqa")   # the generated VQA data, and the first of its models by default
MODEL = next(name for name, spec in registry.MODELS.items() if DATASET in spec.datasets)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_EPOCH = re.compile(r"^Epoch (\d+): loss \S+, lr \S+, ([0-9.]+)s -> (\S+)$", re.M)
_SIZE = re.compile(r"^Training \S+ on \S+ \((\d+) \w+\)", re.M)


def epoch_seconds(output):
    """(seconds of the last epoch, its checkpoint path, samples per epoch) from run.py's output; ValueError if none."""
    epochs, size = _EPOCH.findall(output), _SIZE.search(output)
    if not epochs or not size:
        raise ValueError(f"no epoch line in the run's output: {output.strip()[-400:]}")
    return float(epochs[-1][1]), epochs[-1][2], int(size.group(1))


def _weights(path):
    from formats.restricted_pickle import read_pdparams, read_torch_checkpoint
    if path.endswith(".pkl"):
        return read_torch_checkpoint(path)["state_dict"]
    return {k: v for k, v in read_pdparams(path).items() if isinstance(v, np.ndarray)}


def _same(a, b):
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


def _run(cmd, work, threads):
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    else:
        env.pop("OMP_NUM_THREADS", None)   # the backend's default: every core
    load = os.getloadavg()[0]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=work, env=env, timeout=3600)
    out = proc.stdout + proc.stderr
    log0 = os.path.join(work, "launch", "workerlog.0")   # paddle's launcher: rank 0's output also here
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... exited with {proc.returncode}: {out.strip()[-800:]}")
    if "Epoch" not in out and os.path.exists(log0):
        with open(log0) as f:
            out += f.read()
    return out, load


def measure(backend, nproc, gpu, model, epochs, data_root, work):
    """The rows of one backend (module docstring)."""
    from core.config import load_config
    os.makedirs(work, exist_ok=True)
    batch = load_config(model, DATASET).BATCH_SIZE
    script = os.path.join(REPO, "run.py")
    common = ["--RUN=train", f"--MODEL={model}", f"--DATASET={DATASET}", f"--backend={backend}",
              f"--DATA_ROOT={data_root}", f"--MAX_EPOCH={epochs}", "--EVAL_EE=False", "--VERB=False", "--SEED=1",
              "--NW=0", "--SET", f"RESULTS_ROOT={work}/results", "--SET", f"CKPTS_ROOT={work}/ckpts"]
    ids = [i for i in (gpu or "").split(",") if i]
    if ids:
        runs = [("one", 1, [script, f"--GPU={ids[0]}"], None)]
        launch_gpu = [f"--GPU={','.join(ids)}"]
    else:
        runs = [("one", 1, [script], 0), ("reference", 1, [script, f"--ACCU={nproc}"], 1)]
        launch_gpu = []
    if backend == "torch":
        launcher = ["-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--standalone"]
    else:
        launcher = ["-m", "paddle.distributed.launch", "--log_dir", os.path.join(work, "launch")]
        launcher += ["--devices", ",".join(ids)] if ids else ["--nproc_per_node", str(nproc)]
    runs.append(("parallel", nproc, [*launcher, script, *launch_gpu], 1 if not ids else None))
    rows, paths = [], {}
    for name, procs, cmd, threads in runs:
        out, load = _run([sys.executable, *cmd, *common, f"--VERSION={backend}_{name}"], work, threads)
        seconds, paths[name], size = epoch_seconds(out)
        steps = size // batch
        rows.append({"backend": backend, "run": name, "processes": procs, "device": "gpu" if ids else "cpu",
                     "threads": threads or os.cpu_count(), "epoch_s": seconds, "s_per_step": round(seconds / steps, 4),
                     "steps": steps, "load_1min": round(load, 2)})
    if not ids:
        rows[-1]["bit_identical_to_reference"] = _same(paths["reference"], paths["parallel"])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.data_parallel", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=["torch", "paddle"], choices=["torch", "paddle"])
    parser.add_argument("--nproc", type=int, default=2, help="processes of the data-parallel run (default 2)")
    parser.add_argument("--gpu", default="", help="GPU ids, one per process, e.g. 0,1 (default: the CPU)")
    parser.add_argument("--model", default=MODEL, help=f"a model of the {DATASET} dataset (default {MODEL})")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per run; the last one is timed (default 1)")
    parser.add_argument("--data-root", help="the demo data (default: generated into a temporary folder)")
    args = parser.parse_args(argv)
    if args.gpu and len(args.gpu.split(",")) != args.nproc:
        parser.error(f"--gpu {args.gpu}: give one id per process (--nproc {args.nproc})")
    with tempfile.TemporaryDirectory(prefix="bench-dp-") as tmp:
        data_root = args.data_root or os.path.join(tmp, "data")
        if not args.data_root:
            from core.config import load_config
            from core.data import ensure_generated
            ensure_generated(load_config(args.model, DATASET, overrides={"DATA_ROOT": data_root}))
        for backend in args.backends:
            for row in measure(backend, args.nproc, args.gpu, args.model, args.epochs, data_root,
                               os.path.join(tmp, backend)):
                print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
