"""Watching a training run: the per-step output, the scalars, and the figures redrawn after every epoch.

- Per step: the progress bar (VERBOSE only) and, every LOG_EVERY optimizer steps, a line with the loss per sample and
  the samples per second over those steps, the learning rate and the ETA (of the epoch's and the run's remaining
  training steps, at this epoch's pace; validations not counted). The line goes to the run log always and to the
  console when VERBOSE: --VERB=False hides the per-step output only, as openvqa's VERBOSE does.
- Scalars (core/scalars.py): the step lines' numbers by optimizer step, the epoch's loss and val accuracy by epoch.
- After every epoch: <log>_curves.png from the run log (so a resumed run's earlier epochs, whichever backend ran them,
  are drawn too, and a killed run keeps the figures of its last finished epoch) and, for a routing model validated
  every epoch, <log>_routing.png from the routing weights gathered during that validation (RoutingMean: the alphas of
  the forward passes the validation makes anyway, no extra pass over the data).
Nothing here changes what is computed: it reads the losses, learning rates and alphas the engine already has.
"""
import datetime
import logging
import os
import sys
import time

import numpy as np

from core import plots, registry, runfolder
from core.runlog import backend_spans, read_history
from core.scalars import Scalars

log = logging.getLogger(__name__)


def bar(cfg, iterable, total, desc):
    """``iterable`` wrapped in a tqdm progress bar when VERBOSE, else itself."""
    if not cfg.VERBOSE:
        return iterable
    from tqdm import tqdm
    # redirected to a file (a log, a notebook's captured output), a bar every 30 s rather than every second
    interval = 1.0 if sys.stderr.isatty() else 30.0
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=interval)


def _clock():
    return time.monotonic()


def duration(seconds):
    """H:MM:SS of a number of seconds (rounded)."""
    return str(datetime.timedelta(seconds=int(round(max(seconds, 0.0)))))


class RoutingMean:
    """Mean routing weight per decoder layer and span over the samples of the forward passes added."""

    def __init__(self):
        self.sums, self.count = None, 0

    def add(self, alphas):
        """``alphas``: Backend.routing_alphas(net) after a forward, one (batch, spans) array per decoder layer."""
        stacked = np.stack([a.sum(0) for a in alphas])
        self.sums = stacked if self.sums is None else self.sums + stacked
        self.count += len(alphas[0])

    def mean(self):
        return self.sums / max(self.count, 1)


class TrainWatch:
    """The per-step and per-epoch output of one training run. ``run_log`` is its core.runlog.RunLog."""

    def __init__(self, cfg, backend, run_log, scalars=None):
        self.cfg, self.backend, self.run_log = cfg, backend, run_log
        self.base = os.path.splitext(run_log.path)[0]
        self.scalars = Scalars.open(cfg) if scalars is None else scalars
        validated = cfg.EVAL_EVERY_EPOCH
        self.routing = RoutingMean() if registry.model_of(cfg).routes and validated else None
        figures = f"{self.base}_curves.png" + (f", {self.base}_routing.png" if self.routing is not None else "")
        log.info(f"Writing the checkpoints to {runfolder.run_folder(cfg)}, the log to "
                 f"{run_log.path}, the figures to {figures} (after every epoch)")

    def epoch(self, loader, epoch, steps):
        """Begin epoch ``epoch`` (0-based) of ``steps`` optimizer steps; returns ``loader`` to iterate (in a bar when
        VERBOSE)."""
        self.epoch_index, self.steps, self.done = epoch, steps, 0
        self.start = self.window_start = _clock()
        self.window_loss, self.window_steps = 0.0, 0
        self.bar = bar(self.cfg, loader, steps, f"epoch {epoch + 1}/{self.cfg.MAX_EPOCH}")
        self._iterable = loader
        return self.bar

    def step(self, loss, lr):
        """After each optimizer step: its summed ``loss`` and its learning rate."""
        cfg = self.cfg
        self.done += 1
        self.window_loss += loss
        self.window_steps += 1
        now = _clock()
        if self.bar is not self._iterable:
            samples = self.done * cfg.BATCH_SIZE
            self.bar.set_postfix(loss=f"{loss / cfg.BATCH_SIZE:.4f}", lr=f"{lr:.2e}",
                                 sps=f"{samples / max(now - self.start, 1e-9):.0f}", refresh=False)   # mininterval
        if cfg.LOG_EVERY and self.done % cfg.LOG_EVERY == 0:
            self._report(lr, now)

    def _report(self, lr, now):
        cfg = self.cfg
        samples = self.window_steps * cfg.BATCH_SIZE
        loss = self.window_loss / samples
        speed = samples / max(now - self.window_start, 1e-9)
        per_step = (now - self.start) / self.done
        epoch_left = per_step * (self.steps - self.done)
        run_left = epoch_left + per_step * self.steps * (cfg.MAX_EPOCH - self.epoch_index - 1)
        text = (f"[Epoch {self.epoch_index + 1}/{cfg.MAX_EPOCH}][Step {self.done}/{self.steps}] Loss: {loss:.4f}, "
                f"Lr: {lr:.2e}, {speed:.0f} samples/s, ETA {duration(epoch_left)} (epoch), {duration(run_left)} (run)")
        self.run_log.line(text)
        if cfg.VERBOSE:
            log.info(text)
        step = self.epoch_index * self.steps + self.done
        self.scalars.scalar("train/loss", loss, step)
        self.scalars.scalar("train/lr", lr, step)
        self.scalars.scalar("train/samples_per_s", speed, step)
        self.window_loss, self.window_steps, self.window_start = 0.0, 0, now

    def epoch_end(self, epoch, loss, val=None):
        """After epoch ``epoch`` (1-based) is logged (and validated): its scalars, then the figures redrawn."""
        self.scalars.scalar("epoch/loss", loss, epoch)
        if val is not None:
            self.scalars.scalar("epoch/val_accuracy", val, epoch)
        self.scalars.flush()
        history = read_history(self.run_log.path)
        if history:
            plots.training_curves(history, self.base + "_curves.png",
                                  title=f"{self.cfg.MODEL} / {self.cfg.DATASET} ({self._backends(history)})")
        if self.routing is not None and self.routing.count:
            plots.routing_weights(self.routing.mean(), self.cfg.ORDERS, self.base + "_routing.png",
                                  title=f"Span preferred per decoder layer, epoch {epoch} ({self.backend})")
            self.routing = RoutingMean()

    def _backends(self, history):
        spans = backend_spans(history)
        if len({name for name, _, _ in spans}) <= 1:
            return self.backend
        return ", ".join(f"{name} {a}" if a == b else f"{name} {a}-{b}" for name, a, b in spans)

    def close(self):
        self.scalars.close()


class QuietWatch:
    """The watch of a data-parallel rank other than 0: rank 0 alone reports and draws (core/distributed.py)."""
    routing = None

    def epoch(self, loader, epoch, steps):
        return loader

    def step(self, loss, lr):
        pass

    def epoch_end(self, epoch, loss, val=None):
        pass

    def close(self):
        pass
