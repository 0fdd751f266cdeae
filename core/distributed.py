"""Data-parallel training, the framework-neutral part: who this process is, which rows of each batch it trains on,
and what a multi-device request without a launcher is told.

A run is data-parallel when a launcher starts it: ``python -m torch.distributed.run`` (torchrun, --backend=torch) or
``python -m paddle.distributed.launch`` (--backend=paddle). The launchers put the rank, the world size and the local
rank in the environment (RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE; PADDLE_TRAINER_ID / PADDLE_TRAINERS_NUM /
PADDLE_LOCAL_RANK / PADDLE_LOCAL_SIZE), so run.py takes no new flag. Every process builds the same seeded global
batches (core.data.sampler) and trains on its contiguous slice of each: rank r of W takes rows
[r * B / W, (r + 1) * B / W) of a batch of B, so the batch order does not depend on the world size. The twin modules
backends/<fw>/distributed.py hold the process group, the wrappers and the collectives.

``--GPU=0,1`` without a launcher is refused with the two launch commands (not re-executed under a launcher: the
launchers' own flags, multi-machine rendezvous and log folders included, stay the user's to choose).
"""
from __future__ import annotations

import contextlib
import logging
import os
import shlex
import sys
import warnings
from dataclasses import dataclass

from core import runfolder

# Seconds a collective (a barrier, an all-reduce) waits for the other ranks before the run fails: long enough for rank
# 0's evaluation and saving between two collectives, short enough that a rank that died or hangs ends the others.
TIMEOUT_S = 1800


# Set only by tests/test_distributed.py, to show that the bit-identity it checks needs loss_scale.
UNSCALED_LOSS_ENV = "TWINVQA_TEST_UNSCALED_DDP_LOSS"


class DistributedError(ValueError):
    """A data-parallel request that cannot run: devices without a launcher, a batch that does not split, a launcher
    of the other framework."""


class GPUUnavailable(ValueError):
    """--GPU names a device the backend cannot use (no CUDA device, or a build without CUDA); a backend's set_device
    raises it, and the run falls back to the CPU only with ALLOW_CPU_FALLBACK."""


@dataclass(frozen=True)
class World:
    """This process's place among the launched ones; the default is a run without a launcher."""
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    launcher: str | None = None   # 'torch' (torchrun) | 'paddle' (paddle.distributed.launch) | None

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, saves, evaluates and plots."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1


def world(env=None) -> World:
    """The World of this process, read from the launcher's environment (paddle's variables first: its launcher sets
    no RANK, torchrun no PADDLE_*)."""
    env = os.environ if env is None else env
    if "PADDLE_TRAINERS_NUM" in env and "PADDLE_TRAINER_ID" in env:
        size = int(env["PADDLE_TRAINERS_NUM"])
        return World(int(env["PADDLE_TRAINER_ID"]), size, int(env.get("PADDLE_LOCAL_RANK", 0)),
                     int(env.get("PADDLE_LOCAL_SIZE", size)), "paddle")
    if "WORLD_SIZE" in env and "RANK" in env:
        size = int(env["WORLD_SIZE"])
        return World(int(env["RANK"]), size, int(env.get("LOCAL_RANK", 0)), int(env.get("LOCAL_WORLD_SIZE", size)),
                     "torch")
    return World()


def cores_per_process(cores=None, env=None) -> int:
    """This machine's cores divided among the processes a launcher started on it (at least 1)."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // world(env).local_size)


def gpu_ids(gpu) -> list[str]:
    return [part.strip() for part in str(gpu or "").split(",") if part.strip()]


def check_launch(cfg, where: World, env=None) -> None:
    """DistributedError (one line) for a run that cannot start as launched: several GPUs without a launcher (with the
    two launch commands), a launcher of the other framework, GPU ids that do not give one per local process, a run
    mode other than training under a launcher."""
    ids = gpu_ids(cfg.GPU)
    if not where.parallel:
        if len(ids) > 1:
            raise DistributedError(f"GPU: {cfg.GPU!r} names {len(ids)} devices; run.py trains on one device per "
                                   f"process, so start one process per device: {launch_commands(ids)}")
        return
    if where.launcher != cfg.BACKEND:
        other = "torch.distributed.run (torchrun)" if cfg.BACKEND == "torch" else "paddle.distributed.launch"
        raise DistributedError(f"--backend={cfg.BACKEND} was started by {where.launcher}'s launcher; start it with "
                               f"python -m {other}")
    if cfg.RUN_MODE != "train":
        raise DistributedError(f"--RUN={cfg.RUN_MODE} runs in one process; start it without a launcher "
                               f"(only training is data-parallel)")
    if ids and len(ids) != where.local_size:
        raise DistributedError(f"GPU: {cfg.GPU!r} gives {len(ids)} device(s) for the {where.local_size} processes "
                               "started on this machine; give one id per process (e.g. --GPU=0,1 with "
                               "--nproc_per_node=2)")
    launched_on = (os.environ if env is None else env).get("FLAGS_selected_gpus")   # paddle's --devices, per rank
    if ids and where.launcher == "paddle" and launched_on is not None and launched_on != ids[where.local_rank]:
        raise DistributedError(f"GPU: {cfg.GPU!r} puts local rank {where.local_rank} on GPU {ids[where.local_rank]} "
                               f"but paddle.distributed.launch --devices gave it GPU {launched_on}; give --devices "
                               "the same ids as --GPU")


@contextlib.contextmanager
def one_process_at_a_time(folder, where: World):
    """Under a launcher, hold an flock on <parent of folder>/.<name>.lock (one lock per machine, or per shared file
    system where flock reaches across machines): the processes of a launcher generate the demo data into a missing
    DATA_ROOT one after the other, so the first writes it and the others find it complete. Without a launcher:
    nothing."""
    if not where.parallel:
        yield
        return
    import fcntl
    path = os.path.abspath(folder)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def device_of(cfg, where: World) -> str:
    """The GPU id this process trains on ('' for the CPU): under a launcher the local rank's entry of GPU."""
    ids = gpu_ids(cfg.GPU)
    if not where.parallel or not ids:
        return ",".join(ids)
    return ids[where.local_rank]


def check_batch(cfg, where: World) -> None:
    """BATCH_SIZE must split into equal slices of whole sub-batches: divisible by world size x GRAD_ACCU_STEPS."""
    parts = where.size * cfg.GRAD_ACCU_STEPS
    if cfg.BATCH_SIZE % parts:
        raise DistributedError(f"BATCH_SIZE: {cfg.BATCH_SIZE} is not divisible by the world size x GRAD_ACCU_STEPS "
                               f"= {where.size} x {cfg.GRAD_ACCU_STEPS}; every process trains on an equal slice of "
                               "each batch")


def loss_scale(cfg, where: World) -> float:
    """What each rank's loss is multiplied by before backward. Both engines average the ranks' gradients; the
    originals' loss is summed over the batch (LOSS_REDUCTION 'sum'), so the world size undoes the averaging and the
    step equals one process's over the whole batch. A 'mean' loss is already an average: 1. The logged loss is the
    unscaled one."""
    if cfg.LOSS_REDUCTION != "sum" or os.environ.get(UNSCALED_LOSS_ENV) == "1":
        return 1.0
    return float(where.size)


def rows_per_rank(cfg, where: World) -> int:
    return cfg.BATCH_SIZE // where.size


def first_row(cfg, where: World) -> int:
    """Where this rank's slice starts in the global batch (the dropout masks are keyed by it, core/dropout_masks.py)."""
    return where.rank * rows_per_rank(cfg, where)


def shard(batches, cfg, where: World):
    """This rank's contiguous slice of each global batch (all of them without a launcher)."""
    if not where.parallel:
        return batches
    start, rows = first_row(cfg, where), rows_per_rank(cfg, where)
    return [batch[start:start + rows] for batch in batches]


class LossTally:
    """The epoch's summed loss: each rank's per-step losses, gathered at the epoch's end and added step by step, rank
    by rank, which is the order a one-process run with GRAD_ACCU_STEPS = world size adds its sub-batches in (so the
    epoch log lines agree to the last digit)."""

    def __init__(self, gather=None):
        self.steps = []
        self.gather = gather   # list of float -> list (one per rank) of lists; None without a launcher

    def add(self, loss: float) -> None:
        self.steps.append(float(loss))

    def total(self) -> float:
        if self.gather is None:
            per_step = [[loss] for loss in self.steps]
        else:
            per_step = list(zip(*self.gather(self.steps)))
        total = 0.0
        for losses in per_step:
            step = 0.0
            for loss in losses:
                step += loss
            total += step
        return total


class SilentLog:
    """The run log of a rank other than 0: every RunLog call does nothing (rank 0 writes the log)."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _without_backend(argv):
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--backend":
            skip = True
        elif not arg.startswith("--backend="):
            out.append(arg)
    return out


def launch_commands(ids, argv=None) -> str:
    """The torchrun and paddle launch commands that train on the GPUs ``ids``, with this command line's flags."""
    args = _without_backend(list(sys.argv[1:] if argv is None else argv))
    script = shlex.quote(os.path.relpath(sys.argv[0])) if argv is None and sys.argv[0].endswith(".py") else "run.py"
    flags = shlex.join(args)
    n = len(ids)
    torch_cmd = f"python -m torch.distributed.run --nproc_per_node={n} --standalone {script} {flags} --backend=torch"
    paddle_cmd = (f"python -m paddle.distributed.launch --devices {','.join(ids)} --log_dir log "
                  f"{script} {flags} --backend=paddle")
    return f"`{torch_cmd}` (torch) or `{paddle_cmd}` (paddle)"


def set_device(cfg, be, where: World) -> str:
    """Put ``be`` on this process's device; a GPU it cannot use is an error naming --GPU unless ALLOW_CPU_FALLBACK,
    which trains on the CPU after a warning."""
    gpu = device_of(cfg, where)
    try:
        return be.set_device(gpu)
    except GPUUnavailable as exc:
        if not cfg.ALLOW_CPU_FALLBACK:
            raise
        warnings.warn(f"{exc}; ALLOW_CPU_FALLBACK: running on the CPU", RuntimeWarning, stacklevel=2)
        return be.set_device("")


class Parallel:
    """The engine's view of data parallelism; without a launcher every method is the one-process behaviour."""

    def __init__(self, where: World, ops=None):
        self.world = where
        self.ops = ops   # backends/<fw>/distributed.py under a launcher, else None

    @property
    def is_main(self) -> bool:
        return self.world.is_main

    def claim(self, cfg, resume_from):
        """Rank 0 owns the run folder (core/runfolder.py); the other ranks write nothing there."""
        return runfolder.claim(cfg, resume_from) if self.is_main else contextlib.nullcontext()

    def wrap(self, trainer, cfg):
        return self.ops.wrap(trainer, cfg, self.world) if self.ops else trainer

    def seed_device_dropout(self, be, seed):
        """On a GPU the frameworks draw dropout from their own generator, seeded alike on every rank by the engine:
        each rank > 0 reseeds it from (seed, rank), so the ranks' slices do not share one dropout pattern. On the CPU
        the masks come from core.dropout_masks, keyed by the rows' place in the global batch, and nothing changes."""
        if self.ops and self.world.rank and str(be.device) != "cpu":
            self.ops.seed_device(seed * 1000 + self.world.rank)

    def shard(self, batches, cfg):
        return shard(batches, cfg, self.world)

    def tally(self) -> LossTally:
        return LossTally(self.ops.gather_objects if self.ops else None)

    def save(self, trainer, path, *args, **kwargs):
        """Rank 0 writes the checkpoint (atomically, Trainer.save); every rank waits for it before going on."""
        if self.is_main:
            trainer.save(path, *args, **kwargs)
        if self.ops:
            self.ops.barrier()

    def finish(self, net, say):
        """Check that every rank ends with the same parameters (an unused parameter would let them drift apart
        silently in paddle) and leave the process group. Returns the ranks' checksums (one without a launcher)."""
        if not self.ops:
            return []
        sums = self.ops.gather_objects(self.ops.parameter_checksum(net))
        say(f"Parameter checksums by rank (sha256): {' '.join(sums)}")
        self.ops.barrier()
        self.ops.finish()
        if len(set(sums)) != 1:
            raise RuntimeError(f"the {len(sums)} ranks ended with different parameters (checksums {sums}); a "
                               "parameter unused in the forward pass is the usual cause")
        return sums


def start(cfg, be):
    """Check the launch, put ``be`` on this process's device and, under a launcher, join the process group and agree
    on the run's name (a default VERSION holds each process's clock). Returns (cfg, Parallel); the config of a rank
    other than 0 shows no progress bar, and that process logs warnings only."""
    where = world()
    check_launch(cfg, where)
    set_device(cfg, be, where)
    if not where.parallel:
        return cfg, Parallel(where)
    check_batch(cfg, where)
    ops = be.distributed
    ops.start(where, be.device)
    version = ops.broadcast_object(cfg.VERSION)
    if version != cfg.VERSION:
        cfg = cfg.copy(VERSION=version)
    if not where.is_main:
        cfg = cfg.copy(VERBOSE=False)
        logging.disable(logging.INFO)
    return cfg, Parallel(where, ops)
