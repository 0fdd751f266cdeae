"""Data-parallel training (core/distributed.py, backends/<fw>/distributed.py) on the CPU over gloo.

The launcher runs (marked slow, ~30 s a backend on 2 cores): 2 processes with GRAD_ACCU_STEPS=1 under torchrun /
paddle.distributed.launch train bit for bit as 1 process with GRAD_ACCU_STEPS=2 (dropout on), write the same epoch
log lines, end with equal parameters on both ranks, and resume on 1 process from a 2-process checkpoint; without the
world-size loss scaling the checkpoints differ. Every process runs with one thread (tests/conftest.py sets
OMP_NUM_THREADS=1 and the children inherit it; the launchers set 1 too): float32 sums differ between thread counts.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import run
from core import distributed
from core.config import load_config
from core.data.demo import generate
from core.dropout_masks import CHUNK, MaskStream
from formats.restricted_pickle import read_pdparams, read_torch_checkpoint
from tests.conftest import BACKEND_NAMES

REPO = Path(__file__).resolve().parents[1]
TINY = ["--SET", "LAYER=1", "--SET", "HIDDEN_SIZE=32", "--SET", "FF_SIZE=64", "--SET", "FLAT_MLP_SIZE=32",
        "--SET", "FLAT_OUT_SIZE=64", "--SET", "WORD_EMBED_SIZE=16", "--BS=16", "--NW=0", "--VERB=False",
        "--SEED=3"]
EXT = {"torch": ".pkl", "paddle": ".pdparams"}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    generate(str(root), seed=0, n_train_images=24, n_val_images=8, n_test_images=6, questions_per_image=4)
    return root


def _flags(name, demo_root, work, *flags):
    return ["--RUN=train", "--MODEL=trar", "--DATASET=demo", f"--backend={name}", f"--DATA_ROOT={demo_root}",
            "--SET", f"RESULTS_ROOT={work / 'results'}", "--SET", f"CKPTS_ROOT={work / 'ckpts'}", *TINY, *flags]


def _launch(name, nproc, work, flags, env=None):
    """Start run.py (``nproc`` > 1: under the backend's launcher); a Popen writing to work/<VERSION>.out."""
    script = str(REPO / "run.py")
    version = next(f.split("=", 1)[1] for f in flags if f.startswith("--VERSION="))
    if nproc == 1:
        cmd = [sys.executable, script]
    elif name == "torch":
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--standalone", script]
    else:
        cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", str(nproc), "--log_dir",
               str(work / f"launch_{version}"), script]
    out = open(work / f"{version}.out", "w")
    child_env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", **(env or {})}
    return subprocess.Popen(cmd + flags, cwd=work, stdout=out, stderr=subprocess.STDOUT, env=child_env)


def _wait(proc, work, version):
    rc = proc.wait(timeout=600)
    text = (work / f"{version}.out").read_text()   # torchrun: every rank's output; paddle's launcher: rank 0's
    assert rc == 0, text[-3000:]
    return text


def _other_ranks_output(work, version):
    """What paddle's launcher kept of ranks > 0 (each rank's output in log_dir/workerlog.N); '' under torchrun."""
    logs = sorted((work / f"launch_{version}").glob("workerlog.[1-9]*"))
    return "".join(path.read_text() for path in logs)


def _weights(path):
    if path.endswith(".pkl"):
        return read_torch_checkpoint(path)["state_dict"]
    return {k: v for k, v in read_pdparams(path).items() if isinstance(v, np.ndarray)}


def _ckpt(work, version, epoch, name):
    return str(work / "ckpts" / f"ckpt_{version}" / f"epoch{epoch}{EXT[name]}")


def _log_lines(work, version):
    text = (work / "results" / "log" / f"log_run_{version}.txt").read_text()
    return [line for line in text.splitlines() if line.startswith(("Epoch: ", "Overall Accuracy", "yes/no"))]


def _same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module", params=BACKEND_NAMES)
def runs(request, demo_root, tmp_path_factory):
    """Per backend: 'one' (1 process, ACCU=2), 'two' (2 processes, ACCU=1), 'unscaled' (2 processes without the loss
    scaling, 1 epoch), then 'resumed' (1 process, ACCU=2, resuming 'two' after epoch 1). The first three run at once."""
    name = request.param
    pytest.importorskip(name)
    work = tmp_path_factory.mktemp(f"dp_{name}")
    procs = {
        "one": _launch(name, 1, work, _flags(name, demo_root, work, "--VERSION=one", "--ACCU=2", "--MAX_EPOCH=2")),
        "two": _launch(name, 2, work, _flags(name, demo_root, work, "--VERSION=two", "--MAX_EPOCH=2")),
        "unscaled": _launch(name, 2, work, _flags(name, demo_root, work, "--VERSION=unscaled", "--MAX_EPOCH=1",
                                                  "--EVAL_EE=False"),
                            env={distributed.UNSCALED_LOSS_ENV: "1"}),
    }
    out = {version: _wait(proc, work, version) for version, proc in procs.items()}
    resumed = _launch(name, 1, work, _flags(name, demo_root, work, "--VERSION=resumed", "--ACCU=2", "--MAX_EPOCH=2",
                                            "--RESUME=True", "--CKPT_V=two", "--CKPT_E=1"))
    out["resumed"] = _wait(resumed, work, "resumed")
    return name, work, out


@pytest.mark.slow
def test_two_processes_train_as_one_with_accumulation(runs):
    name, work, _ = runs
    for epoch in (1, 2):
        assert _same_weights(_ckpt(work, "one", epoch, name), _ckpt(work, "two", epoch, name)), f"epoch {epoch}"
    if name == "paddle":   # the optimizer state too (torch's .pkl holds it with the weights, compared above in full)
        one, two = (Path(_ckpt(work, v, 2, name)).with_suffix(".pdopt").read_bytes() for v in ("one", "two"))
        assert one == two
    else:
        assert Path(_ckpt(work, "one", 2, name)).read_bytes() == Path(_ckpt(work, "two", 2, name)).read_bytes()
    one, two = _log_lines(work, "one"), _log_lines(work, "two")
    assert len([line for line in one if line.startswith("Epoch: ")]) == 2 and any("Overall" in line for line in one)
    assert one == two


@pytest.mark.slow
def test_ranks_end_with_equal_parameters(runs):
    name, work, out = runs
    pattern = r"Parameter checksums by rank \(sha256\): ([0-9a-f ]+)"
    sums = re.findall(pattern, out["two"])
    assert len(sums) == 1, out["two"][-2000:]   # rank 0 alone logs
    if name == "paddle":
        assert "Training trar" not in _other_ranks_output(work, "two") and "Epoch 1" in out["two"]
    ranks = sums[0].split()
    assert len(ranks) == 2 and ranks[0] == ranks[1] and len(ranks[0]) == 64


@pytest.mark.slow
def test_a_two_process_checkpoint_resumes_on_one_process(runs):
    name, work, out = runs
    assert "Resumed from" in out["resumed"]
    assert _same_weights(_ckpt(work, "resumed", 2, name), _ckpt(work, "one", 2, name))
    assert _log_lines(work, "resumed")[-2:] == _log_lines(work, "one")[-2:]


@pytest.mark.slow
def test_without_the_loss_scaling_the_weights_differ(runs):
    name, work, _ = runs
    assert not _same_weights(_ckpt(work, "unscaled", 1, name), _ckpt(work, "one", 1, name))


# --- without a launcher --------------------------------------------------------------------------------------------

def test_world_is_read_from_either_launcher():
    assert distributed.world({}) == distributed.World()
    torch_env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    assert distributed.world(torch_env) == distributed.World(3, 4, 1, 2, "torch")
    paddle_env = {"PADDLE_TRAINER_ID": "2", "PADDLE_TRAINERS_NUM": "4", "PADDLE_LOCAL_RANK": "0",
                  "PADDLE_LOCAL_SIZE": "2"}
    assert distributed.world(paddle_env) == distributed.World(2, 4, 0, 2, "paddle")
    assert distributed.cores_per_process(16, torch_env) == 8 and distributed.cores_per_process(1, torch_env) == 1


def _cfg(**overrides):
    return load_config("trar", "demo", overrides={"BATCH_SIZE": 12, **overrides})


def test_each_rank_takes_a_contiguous_slice_of_every_batch():
    batches = [np.arange(12) + 100, np.arange(12) + 200]
    cfg = _cfg()
    slices = [distributed.shard(batches, cfg, distributed.World(r, 3, r, 3, "torch")) for r in range(3)]
    assert [list(s[1]) for s in slices] == [[200, 201, 202, 203], [204, 205, 206, 207], [208, 209, 210, 211]]
    assert distributed.shard(batches, cfg, distributed.World()) is batches


def test_batch_size_must_split_into_whole_sub_batches():
    where = distributed.World(0, 4, 0, 4, "torch")
    distributed.check_batch(_cfg(GRAD_ACCU_STEPS=3), distributed.World(0, 2, 0, 2, "torch"))
    with pytest.raises(distributed.DistributedError, match=r"BATCH_SIZE: 12 is not divisible by the world size x "
                                                           r"GRAD_ACCU_STEPS = 4 x 2"):
        distributed.check_batch(_cfg(GRAD_ACCU_STEPS=2), where)


def test_the_loss_is_scaled_by_the_world_size_for_a_summed_loss_only():
    where = distributed.World(0, 2, 0, 2, "torch")
    assert distributed.loss_scale(_cfg(), where) == 2.0
    assert distributed.loss_scale(_cfg(LOSS_REDUCTION="mean"), where) == 1.0
    assert distributed.loss_scale(_cfg(), distributed.World()) == 1.0


def test_the_epoch_loss_adds_in_the_order_of_one_process_with_accumulation():
    # step by step (1e16 + 1 rounds to 1e16, then + 8) gives 1e16 + 8; rank by rank (1e16 + 3, then + 6) 1e16 + 10
    rank_losses = [[1e16, 3.0], [1.0, 5.0]]
    tally = distributed.LossTally(gather=lambda mine: rank_losses)
    for loss in rank_losses[0]:
        tally.add(loss)
    one_process = 0.0
    for step in zip(*rank_losses):
        total = 0.0
        for loss in step:          # TorchTrainer.train_step: total += each sub-batch's loss
            total += loss
        one_process += total       # the engine: loss_sum += the step's total
    assert tally.total() == one_process
    alone = distributed.LossTally()
    for loss in (0.1, 0.2, 0.3):
        alone.add(loss)
    assert alone.total() == (0.0 + 0.1) + 0.2 + 0.3


def test_ranks_that_disagree_fail_the_run():
    class Ops:
        def gather_objects(self, value):
            return ["a" * 64, "b" * 64]

        def parameter_checksum(self, net):
            return "a" * 64

        def barrier(self):
            pass

        def finish(self):
            pass

    said = []
    parallel = distributed.Parallel(distributed.World(0, 2, 0, 2, "torch"), Ops())
    with pytest.raises(RuntimeError, match="the 2 ranks ended with different parameters"):
        parallel.finish(object(), said.append)
    assert said and "a" * 64 in said[0]


def _old_keying(seed, index, n, p):
    """The masks before the row keying: chunk c of mask ``index`` from SFC64(SeedSequence(seed, (index, c)))."""
    threshold = np.uint32(round(p * (1 << 32)))
    out = []
    for start in range(0, n, CHUNK):
        size = min(CHUNK, n - start)
        bits = np.random.SFC64(np.random.SeedSequence(seed, spawn_key=(index, start // CHUNK)))
        out.append(bits.random_raw((size + 1) // 2).view(np.uint32)[:size] >= threshold)
    return np.concatenate(out)


@pytest.mark.parametrize("shape", [(6, 5, 7), (4, CHUNK // 3 + 5)], ids=["small", "over-a-chunk"])
def test_dropout_masks_are_keyed_by_the_rows_place_in_the_global_batch(shape):
    whole_stream = MaskStream(9)
    rows = shape[0]
    whole = [m for part in whole_stream.step_parts([slice(0, rows)]) for m in
             (whole_stream.keep_mask(shape, 0.3), whole_stream.keep_mask(shape, 0.3))]
    # a step over the whole batch draws the masks of the keying before (1-process runs without accumulation)
    assert np.array_equal(whole[0].ravel(), _old_keying(9, 0, int(np.prod(shape)), 0.3))
    assert np.array_equal(whole[1].ravel(), _old_keying(9, 1, int(np.prod(shape)), 0.3))
    half = rows // 2
    accumulated = MaskStream(9)       # 1 process, GRAD_ACCU_STEPS=2
    parts = []
    for part in accumulated.step_parts([slice(0, half), slice(half, rows)]):
        parts.append([accumulated.keep_mask((half, *shape[1:]), 0.3) for _ in range(2)])
    rank1 = MaskStream(9)             # rank 1 of 2, its slice starting at row `half`
    for _ in rank1.step_parts([slice(0, half)], row_offset=half):
        rank1_masks = [rank1.keep_mask((half, *shape[1:]), 0.3) for _ in range(2)]
    for k in range(2):
        assert np.array_equal(parts[0][k], whole[k][:half]) and np.array_equal(parts[1][k], whole[k][half:])
        assert np.array_equal(rank1_masks[k], whole[k][half:])
    assert accumulated.count == whole_stream.count == rank1.count == 2   # the next step goes on from index 2


def test_several_gpus_without_a_launcher_print_the_launch_commands(demo_root, tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "run.py"), *_flags("torch", demo_root, tmp_path, "--GPU=0,1")],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: GPU: '0,1' names 2 devices")
    assert "python -m torch.distributed.run --nproc_per_node=2 --standalone" in lines[0]
    assert "python -m paddle.distributed.launch --devices 0,1 --log_dir log" in lines[0]
    assert "--GPU=0,1 " in lines[0] and "--backend=torch`" in lines[0] and "--backend=paddle`" in lines[0]


def test_launch_commands_keep_the_flags_and_replace_the_backend():
    text = distributed.launch_commands(["2", "3"], ["--RUN=train", "--MODEL=trar", "--backend", "paddle",
                                                    "--SET", "A=b c", "--GPU=2,3"])
    assert ("`python -m torch.distributed.run --nproc_per_node=2 --standalone run.py --RUN=train --MODEL=trar --SET "
            "'A=b c' --GPU=2,3 --backend=torch` (torch)") in text
    assert ("`python -m paddle.distributed.launch --devices 2,3 --log_dir log run.py --RUN=train "
            "--MODEL=trar --SET 'A=b c' --GPU=2,3 --backend=paddle` (paddle)") in text


def test_a_launcher_of_the_other_framework_is_refused():
    with pytest.raises(distributed.DistributedError, match="--backend=paddle was started by torch's launcher"):
        distributed.check_launch(_cfg(BACKEND="paddle"), distributed.World(0, 2, 0, 2, "torch"))
    with pytest.raises(distributed.DistributedError, match="give one id per process"):
        distributed.check_launch(_cfg(BACKEND="torch", GPU="0"), distributed.World(0, 2, 0, 2, "torch"))
    with pytest.raises(distributed.DistributedError, match="--RUN=val runs in one process"):
        distributed.check_launch(_cfg(BACKEND="paddle").copy(RUN_MODE="val"), distributed.World(0, 2, 0, 2, "paddle"))
    paddle_rank1 = distributed.World(1, 2, 1, 2, "paddle")
    distributed.check_launch(_cfg(BACKEND="paddle", GPU="0,1"), paddle_rank1, env={"FLAGS_selected_gpus": "1"})
    with pytest.raises(distributed.DistributedError, match="--devices gave it GPU 3; give --devices the same ids"):
        distributed.check_launch(_cfg(BACKEND="paddle", GPU="0,1"), paddle_rank1, env={"FLAGS_selected_gpus": "3"})
    assert distributed.device_of(_cfg(GPU="0,1"), distributed.World(1, 2, 1, 2, "paddle")) == "1"


def _has_gpu(name):
    if name == "torch":
        import torch
        return torch.cuda.is_available()
    import paddle
    return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


def test_gpu_without_a_usable_gpu_is_an_error_naming_the_flag(backend, demo_root, tmp_path, capsys):
    if _has_gpu(backend.name):
        pytest.skip("a GPU is present")
    flags = _flags(backend.name, demo_root, tmp_path, "--GPU=0", "--MAX_EPOCH=1", "--EVAL_EE=False", "--VERSION=g")
    with pytest.raises(SystemExit) as exc:
        run.main(flags)
    assert re.fullmatch(r"error: GPU: --GPU=0 but \w+ sees no CUDA device; leave --GPU out to train on the CPU, or "
                        r"--SET ALLOW_CPU_FALLBACK=True to fall back to it", str(exc.value.code))
    with pytest.warns(RuntimeWarning, match="ALLOW_CPU_FALLBACK: running on the CPU"):
        summary = run.main(flags + ["--SET", "ALLOW_CPU_FALLBACK=True"])
    assert summary["epoch"] == 1 and np.isfinite(summary["loss"])


def test_the_data_parallel_bench_reads_the_engines_epoch_line():
    from bench.data_parallel import epoch_seconds
    out = ("Training trar on demo (6000 questions) with the torch backend, version x, epochs 1..2\n"
           "Epoch 1: loss 287.1990, lr 1.00e-03, 46.4s -> /w/ckpts/ckpt_x/epoch1.pkl\n"
           "Epoch 2: loss 200.0000, lr 1.00e-03, 41.5s -> /w/ckpts/ckpt_x/epoch2.pkl\n")
    assert epoch_seconds(out) == (41.5, "/w/ckpts/ckpt_x/epoch2.pkl", 6000)
    with pytest.raises(ValueError, match="no epoch line"):
        epoch_seconds("Training trar on demo (6000 questions)\n")


def test_a_launchers_processes_generate_the_data_one_at_a_time(tmp_path):
    import threading
    import time
    where = distributed.World(0, 2, 0, 2, "torch")
    order = []

    def second():
        with distributed.one_process_at_a_time(str(tmp_path / "data" / "demo"), where):
            order.append("second")

    with distributed.one_process_at_a_time(str(tmp_path / "data" / "demo"), where):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        order.append("first")
    thread.join(timeout=10)
    assert order == ["first", "second"] and (tmp_path / "data" / ".demo.lock").exists()
    with distributed.one_process_at_a_time(str(tmp_path / "other"), distributed.World()):
        pass
    assert not (tmp_path / ".other.lock").exists()   # without a launcher: no lock file
