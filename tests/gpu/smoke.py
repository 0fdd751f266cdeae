"""The whole run on a device, end to end: train demo epochs with run.py there, evaluate the checkpoint on the CPU.

    python -m tests.gpu.smoke --backend torch --gpu 0 [--amp] [--model mcan_small] [--epochs 2]

tests/gpu/gpu_check.sh runs it for every backend that sees a GPU, and so do the `gpu` tests (tests/gpu/test_on_gpu.py):
the train-step benchmarks exercise the trainer, this the rest of a GPU run (run.py's device choice, the DataLoader,
validation, the checkpoint written from GPU tensors and read back on the CPU). The last epoch's validation on the
device and the CPU's evaluation of the saved checkpoint score the same weights, so their answers agree up to those
that float rounding flips (float16 under --amp); with --gpu "" both run on the CPU and agree exactly
(tests/gpu/test_scripts_on_cpu.py). Two epochs by default: after one, the demo models still answer "yes" to nearly
everything, which any weights would agree on. One JSON line on stdout; exit 1 when a step fails, or when the answers
agree on less than --min-agree of the questions.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from core import registry

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_ACCURACY = re.compile(r"Overall Accuracy is: ([0-9.]+)")
MIN_AGREE = 0.98   # fraction of questions the device's and the CPU's evaluation must answer alike


def _run_py(flags, timeout):
    """(seconds, last 'Overall Accuracy' printed or None, output) of one run.py call; RuntimeError if it fails."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.join(REPO, "run.py"), *flags], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"run.py {' '.join(flags)} exited with {proc.returncode}: {out.strip()[-600:]}")
    found = _ACCURACY.findall(out)
    return time.perf_counter() - start, float(found[-1]) if found else None, out


def _check_device(backend, gpu, timeout):
    """RuntimeError (the reason) when ``backend`` would run --GPU=``gpu`` on the CPU instead. Asked in a child process
    (tests.gpu.device_probe): this one must not hold a CUDA context while run.py trains (a GPU in exclusive-process mode
    would refuse the run)."""
    proc = subprocess.run([sys.executable, "-m", "tests.gpu.device_probe", backend, gpu], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)
    if proc.stdout.strip() != "yes":
        lines = proc.stderr.strip().splitlines() or [f"tests.gpu.device_probe exited with {proc.returncode}"]
        raise RuntimeError(lines[-1])


def _answers(path):
    with open(path, encoding="utf-8") as f:
        return {r["question_id"]: r["answer"] for r in json.load(f)}


def smoke(backend, gpu="", amp=False, model="mcan_small", epochs=2, workdir=None, timeout=1800):
    """Train ``epochs`` demo epochs on ``gpu`` ('' = the CPU), then evaluate the last checkpoint on the CPU."""
    if gpu:
        _check_device(backend, gpu, timeout)      # refused before training, as run.py would fall back to the CPU
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        common = [f"--MODEL={model}", f"--DATASET={registry.generated_dataset('vqa')}", f"--backend={backend}",
                  f"--DATA_ROOT={tmp}/demo", f"--SET=CKPTS_ROOT={tmp}/ckpts", f"--SET=RESULTS_ROOT={tmp}/results"]
        train = common + ["--RUN=train", f"--MAX_EPOCH={epochs}", "--VERSION=smoke", f"--AMP={bool(amp)}"]
        train_s, device_acc, out = _run_py(train + ([f"--GPU={gpu}"] if gpu else []), timeout)
        if gpu and "running on the CPU" in out:
            raise RuntimeError(f"--GPU={gpu}: {backend} sees no CUDA device; the run fell back to the CPU")
        if device_acc is None:
            raise RuntimeError(f"the training run printed no validation accuracy: {out.strip()[-600:]}")
        answers_file = os.path.join(tmp, "results", "cache", "result_run_smoke.json")
        device_answers = _answers(answers_file)          # the CPU evaluation writes the same file next
        _, cpu_acc, out = _run_py(common + ["--RUN=val", "--CKPT_V=smoke", f"--CKPT_E={epochs}"], timeout)
        if cpu_acc is None:
            raise RuntimeError(f"the CPU evaluation printed no accuracy: {out.strip()[-600:]}")
        cpu_answers = _answers(answers_file)
    if set(device_answers) != set(cpu_answers):
        raise RuntimeError("the two evaluations answered different questions")
    same = sum(device_answers[q] == cpu_answers[q] for q in cpu_answers)
    return {"backend": backend, "device": f"gpu:{gpu}" if gpu else "cpu", "amp": bool(amp), "model": model,
            "epochs": epochs, "train_s": round(train_s, 1), "device_val_accuracy": device_acc,
            "cpu_val_accuracy": cpu_acc, "questions": len(cpu_answers),
            "answers_agree": round(same / len(cpu_answers), 4), "distinct_answers": len(set(cpu_answers.values()))}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tests.gpu.smoke", description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", required=True, choices=("torch", "paddle"))
    p.add_argument("--gpu", default="", metavar="ID", help='device to train on (default "": the CPU)')
    p.add_argument("--amp", action="store_true", help="train in mixed precision (a GPU's)")
    p.add_argument("--model", default="mcan_small", choices=[m.name for m in registry.MODELS.values()
                                                             if registry.generated_dataset("vqa") in m.datasets])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--timeout", type=float, default=1800, help="seconds per run.py process (default 1800)")
    p.add_argument("--min-agree", type=float, default=MIN_AGREE,
                   help=f"smallest accepted fraction of questions both evaluations answer alike (default {MIN_AGREE})")
    args = p.parse_args(argv)
    try:
        row = smoke(args.backend, args.gpu, args.amp, args.model, args.epochs, timeout=args.timeout)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        row = {"backend": args.backend, "device": f"gpu:{args.gpu}" if args.gpu else "cpu", "amp": args.amp,
               "model": args.model, "error": str(exc)}
    row["ok"] = "error" not in row and row["answers_agree"] >= args.min_agree
    print(json.dumps(row))
    return 0 if row["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
