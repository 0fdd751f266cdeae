"""Training and evaluation loops, framework-neutral: the backend supplies the steps, this module the schedule and files.

One epoch: decay lr_base at the listed epochs, set tau (hard routing), reseed the framework RNG from (SEED, epoch) so a
resumed run repeats an uninterrupted one, build the epoch's batches from core.data.sampler, step with the per-step
learning rate of core.schedules, save the checkpoint, log, and validate.
"""
from __future__ import annotations

import logging
import os
import random
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from core import checkpoints, ckpt_policy, distributed, progress, registry, tasks
from core.data import build_dataset, fingerprints
from core.data.sampler import epoch_batches, eval_batches
from core.data.workers import compute_threads, loader_workers
from core.runlog import RunLog
from core.schedules import decayed_lr_base, step_lr, tau_at, warmup_lr

if TYPE_CHECKING:
    from core.config import Config
    from core.data import Dataset

# ``be`` below is a backends.base.Backend and ``net`` one of its models: the layer above core, so not imported here
# (tests/test_import_graph.py).
log = logging.getLogger(__name__)


def run(cfg: Config, be) -> dict[str, Any]:
    """Dispatch on cfg.RUN_MODE; returns a summary dict (run.py returns it from main())."""
    _seed_everything(cfg, be, 0)
    cfg, parallel = distributed.start(cfg, be)   # the device; under a launcher the process group (core/distributed.py)
    if cfg.NUM_WORKERS is None:
        why = "on a GPU" if _on_gpu(be) else f"on the CPU, the cores the model's {compute_threads()} threads leave free"
        _say(cfg, f"DataLoader workers: {_workers(cfg, be)} of {os.cpu_count() or 1} cores (NUM_WORKERS unset: {why}; "
                  "--NW N to choose)")
    if cfg.RUN_MODE == "train":
        return train(cfg, be, parallel)
    if cfg.RUN_MODE in ("val", "test"):
        return evaluate_checkpoint(cfg, be)
    raise ValueError(f"RUN_MODE {cfg.RUN_MODE!r} is not handled by the engine")


def _seed_everything(cfg, be, epoch):
    seed = int(cfg.SEED) * 1000 + epoch
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    be.seed(seed)


def _on_gpu(be):
    return str(be.device) != "cpu"   # torch.device('cpu') or paddle's 'cpu'


def _workers(cfg, be):
    """NUM_WORKERS, or when unset the number core.data.workers sizes to this machine and device."""
    return loader_workers(cfg.NUM_WORKERS, on_gpu=_on_gpu(be))


def _loader(cfg, be, dataset, batches):
    return be.make_loader(dataset, batches, _workers(cfg, be), cfg.PIN_MEM)


def _say(cfg, text):
    """A line of the run's report, at INFO: a command line shows it whatever VERBOSE says (VERBOSE hides only the
    per-step output: core/progress.py; core/logs.py)."""
    log.info(text)


def train(cfg: Config, be, parallel: distributed.Parallel | None = None) -> dict[str, Any]:
    """A training run (or a resumed one) in its run folder, which it owns until it ends (core/runfolder.py);
    data-parallel with ``parallel`` from core.distributed.start under a launcher."""
    parallel = parallel or distributed.Parallel(distributed.World())
    resume_from = checkpoints.resume_path(cfg, be.checkpoint_ext) if cfg.RESUME else None
    with parallel.claim(cfg, resume_from):
        return _train(cfg, be, parallel)


def _train(cfg: Config, be, parallel) -> dict[str, Any]:
    train_set = build_dataset(cfg, "train")
    evaluates = cfg.EVAL_EVERY_EPOCH and parallel.is_main
    val_set = build_dataset(cfg.copy(RUN_MODE="val"), "val") if evaluates else None
    net = be.build_model(cfg, **train_set.facts())
    trainer = be.make_trainer(net, cfg)

    start_epoch, lr_base = 0, float(cfg.LR_BASE)
    data_hashes = fingerprints.of_dataset(train_set)   # stored in every checkpoint, checked when resuming
    if cfg.RESUME:
        path = checkpoints.resume_path(cfg, be.checkpoint_ext)
        meta = be.load_checkpoint(net, path)
        fingerprints.check(meta, data_hashes, path)
        start_epoch, lr_base = resume_point(cfg, path, meta)
        trainer.load_optimizer_state(meta)
        _say(cfg, f"Resumed from {path}: epoch {start_epoch}, lr_base {lr_base:g}")
    trainer = parallel.wrap(trainer, cfg)
    if start_epoch >= cfg.MAX_EPOCH:
        raise ValueError(f"MAX_EPOCH is {cfg.MAX_EPOCH} but the checkpoint already finished epoch {start_epoch}")

    log_file = checkpoints.log_path(cfg, cfg.VERSION)
    log = RunLog(log_file) if parallel.is_main else distributed.SilentLog()
    log.start(cfg, resume=cfg.RESUME, backend=be.name, first_epoch=start_epoch + 1,
              resumed_from=path if cfg.RESUME else None)
    data_size, unit = len(train_set), registry.task_of(cfg).unit
    if data_size < cfg.BATCH_SIZE:
        raise ValueError(f"the training split has {data_size} {unit}, fewer than BATCH_SIZE={cfg.BATCH_SIZE}")
    step = int(data_size / cfg.BATCH_SIZE * start_epoch)
    _say(cfg, f"Training {cfg.MODEL} on {cfg.DATASET} ({data_size} {unit}) with the {be.name} backend, "
              f"version {cfg.VERSION}, epochs {start_epoch + 1}..{cfg.MAX_EPOCH}")

    last = {}
    watch = progress.TrainWatch(cfg, be.name, log) if parallel.is_main else progress.QuietWatch()
    for epoch in range(start_epoch, cfg.MAX_EPOCH):
        log.epoch_header()
        if epoch in cfg.LR_DECAY_LIST:
            lr_base *= cfg.LR_DECAY_R
        if registry.model_of(cfg).routes and cfg.ROUTING == "hard":
            trainer.set_tau(tau_at(epoch, cfg.TAU_POLICY, cfg.TAU_MAX, cfg.TAU_MIN, cfg.MAX_EPOCH, cfg.WARMUP_EPOCH))
        _seed_everything(cfg, be, epoch + 1)
        parallel.seed_device_dropout(be, int(cfg.SEED) * 1000 + epoch + 1)
        if hasattr(train_set, "set_epoch"):   # image datasets draw their flips from (SEED, epoch, index)
            train_set.set_epoch(epoch)
        batches = epoch_batches(data_size, cfg.BATCH_SIZE, cfg.SEED, epoch)
        loader = _loader(cfg, be, train_set, parallel.shard(batches, cfg))
        losses, lr, start = parallel.tally(), lr_base, time.time()
        for i, batch in enumerate(watch.epoch(loader, epoch, len(batches))):
            step += 1
            lr = _lr(cfg, step, lr_base, data_size, epoch * len(batches) + i + 1, cfg.MAX_EPOCH * len(batches))
            loss = trainer.train_step(batch, lr)
            if not np.isfinite(loss):
                raise FloatingPointError(f"loss became {loss} at epoch {epoch + 1}, step {i + 1}; "
                                         f"lower LR_BASE or set GRAD_NORM_CLIP")
            losses.add(loss)
            watch.step(loss * parallel.world.size, lr)   # rank 0's slice scaled to the global batch (step lines only)
        loss_sum, elapsed = losses.total(), time.time() - start
        ckpt = checkpoints.ckpt_path(cfg, epoch + 1, be.checkpoint_ext)
        parallel.save(trainer, ckpt, epoch + 1, lr_base, data_hashes=data_hashes)
        if parallel.is_main:   # before validating, which may fail: the other framework's files of this epoch go now
            ckpt_policy.remove_replaced(os.path.dirname(os.path.abspath(ckpt)), epoch + 1, be.checkpoint_ext)
        log.epoch_end(epoch + 1, loss_sum / data_size, lr, elapsed, elapsed / max(len(batches), 1))
        last = {"epoch": epoch + 1, "loss": loss_sum / data_size, "checkpoint": ckpt, "seconds": elapsed}
        _say(cfg, f"Epoch {epoch + 1}: loss {last['loss']:.4f}, lr {lr:.2e}, {elapsed:.1f}s -> {ckpt}")
        if val_set is not None:
            acc = evaluate(cfg, be, net, val_set, "val", cfg.VERSION, routing=watch.routing)
            log.accuracy(acc["overall"], acc.get("per_type", {}))
            last["val"] = acc["overall"]
        if parallel.is_main:
            ckpt_policy.epoch_saved(cfg, ckpt, epoch + 1, last.get("val"))   # latest, best, CKPT_KEEP_LAST
        watch.epoch_end(epoch + 1, last["loss"], last.get("val"))

    watch.close()
    checksums = parallel.finish(net, lambda text: _say(cfg, text))
    if checksums:
        last["rank_checksums"] = checksums
    return last


def resume_point(cfg, path, meta):
    """(epoch to start from, lr_base) of a resumed run from checkpoint ``path`` and its meta. A checkpoint without
    optimizer state is refused unless RESUME_WEIGHTS_ONLY (then the optimizer starts afresh, said in a warning); one
    with an
    epoch but no lr_base gets the rate LR_BASE decays to by then."""
    epoch = meta.get("epoch")
    if epoch is None and cfg.CKPT_PATH is None:   # a file without an epoch (RWSAN's container): after --CKPT_E, as
        epoch = cfg.CKPT_EPOCH                     # the original's resume does
    if not meta.get("optimizer"):
        if not cfg.RESUME_WEIGHTS_ONLY:
            raise ValueError(f"RESUME: {path} has weights but no optimizer state (a .pdparams without its .pdopt, or a "
                             "weights-only file); resuming would restart the optimizer and the warm-up: resume a full "
                             "checkpoint, or --SET RESUME_WEIGHTS_ONLY=True to continue with a fresh optimizer")
        where = f"after epoch {epoch}" if epoch is not None else "from epoch 0 (the file holds no epoch)"
        warnings.warn(f"RESUME_WEIGHTS_ONLY: {path} has no optimizer state; training continues with a fresh optimizer "
                      f"(moments from zero) {where}", RuntimeWarning, stacklevel=2)
    start = int(epoch or 0)
    lr_base = meta.get("lr_base")
    if lr_base is None:
        lr_base = decayed_lr_base(float(cfg.LR_BASE), start - 1, cfg.LR_DECAY_LIST, cfg.LR_DECAY_R)
    return start, float(lr_base)


def _lr(cfg, step, lr_base, data_size, opt_step, total_steps):
    """The learning rate of one optimizer step: openvqa's warm-up by ``step`` (the original's count, which a resumed
    run restarts at int(data_size / BATCH_SIZE * epoch)), or the ViT originals' warm-up and decay by ``opt_step``,
    the 1-based count of optimizer steps over the run (epochs x batches per epoch)."""
    if cfg.LR_SCHEDULE == "openvqa":
        return warmup_lr(step, lr_base, data_size, cfg.BATCH_SIZE, cfg.WARMUP_EPOCH)
    return step_lr(opt_step, lr_base, cfg.WARMUP_STEPS, total_steps, cfg.LR_SCHEDULE)


def _progress(cfg, iterable, total, desc):
    return progress.bar(cfg, iterable, total, desc)


def routing_weights(cfg: Config, be, net, dataset: Dataset) -> np.ndarray:
    """Mean routing weight per decoder layer and span over a dataset: array (layers, len(ORDERS))."""
    sums, count = None, 0
    for idx in eval_batches(len(dataset), cfg.EVAL_BATCH_SIZE):
        batch = _stack([dataset[int(i)] for i in idx])
        be.predict(net, batch)
        alphas = np.stack([a.sum(0) for a in be.routing_alphas(net)])
        sums = alphas if sums is None else sums + alphas
        count += len(idx)
    return sums / max(count, 1)


def _stack(samples):
    return {k: np.stack([s[k] for s in samples]) for k in samples[0]}


def load_for_eval(cfg: Config, be, net, path: str, dataset=None) -> dict[str, Any]:
    """Load checkpoint ``path`` (either framework's) into ``net`` as `run.py --RUN=val` does; returns its meta.
    A routing model's (TRAR's) hard routing then runs at the temperature of the checkpoint's last training epoch (the
    original evaluates at TAU_MAX; README, deliberate differences). With ``dataset``, a checkpoint trained with
    another vocabulary or answer list is refused (core/data/fingerprints.py)."""
    meta = be.load_checkpoint(net, path)
    if dataset is not None:
        fingerprints.check(meta, fingerprints.of_dataset(dataset), path)
    if registry.model_of(cfg).routes and cfg.ROUTING == "hard" and meta.get("epoch"):
        net.set_tau(tau_at(int(meta["epoch"]) - 1, cfg.TAU_POLICY, cfg.TAU_MAX, cfg.TAU_MIN, cfg.MAX_EPOCH,
                           cfg.WARMUP_EPOCH))
    return meta


def evaluate_checkpoint(cfg: Config, be) -> dict[str, Any]:
    mode = cfg.RUN_MODE
    dataset = build_dataset(cfg, mode)
    net = be.build_model(cfg, **dataset.facts())
    path = checkpoints.resume_path(cfg, be.checkpoint_ext)
    meta = load_for_eval(cfg, be, net, path, dataset)
    _say(cfg, f"Loaded {path}")
    version = cfg.CKPT_VERSION
    log = RunLog(checkpoints.log_path(cfg, version))
    log.evaluation(mode, path, be.name, meta.get("epoch"))
    if mode == "val":
        acc = evaluate(cfg, be, net, dataset, "val", version)
        log.accuracy(acc["overall"], acc.get("per_type", {}))
        _say(cfg, f"Wrote the val answers to {acc['result_file']}")
        return acc
    out = evaluate(cfg, be, net, dataset, "test", version)
    log.line(f"Wrote the test answers to {out['result_file']}\n\n")
    return out


def evaluate(cfg: Config, be, net, dataset: Dataset, mode: str, version: str, routing=None) -> dict[str, Any]:
    """Predict every sample of ``dataset``; the task (core/tasks) writes the result file and scores it when the
    answers are known. ``routing`` (a core.progress.RoutingMean) gathers the routing weights of these forwards."""
    task = tasks.module_of(cfg)
    batches = eval_batches(len(dataset), cfg.EVAL_BATCH_SIZE)
    loader = _loader(cfg, be, dataset, batches)
    outputs = []
    for batch in _progress(cfg, loader, len(batches), mode):
        outputs.append(task.batch_outputs(cfg, be.predict(net, batch)))
        if routing is not None:
            routing.add(be.routing_alphas(net))
    outputs = {k: np.concatenate([o[k] for o in outputs]) for k in outputs[0]} if outputs else {}
    return task.evaluate(cfg, dataset, mode, version, outputs, log.info)
