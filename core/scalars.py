"""Training scalars for dashboards: VisualDL's records (Paddle's dashboard) and TensorBoard's event files (the torch
side's), each written only when its package is installed and SCALAR_LOGS is True.

Neither package is a requirement, and neither imports a framework here: VisualDL's LogWriter, and TensorBoard's own
event-file writer and protos (what torch.utils.tensorboard builds on), so core stays free of torch and paddle. Each run
writes under <RESULTS_ROOT>/scalars/<VERSION>/{visualdl,tensorboard}; `visualdl --logdir results/scalars` or
`tensorboard --logdir results/scalars` shows every run. Tags: train/loss (per sample), train/lr, train/samples_per_s
by optimizer step; epoch/loss, epoch/val_accuracy by epoch.
"""
import importlib.util
import logging
import os
import time

log = logging.getLogger(__name__)

VISUALDL, TENSORBOARD = "visualdl", "tensorboard"


def installed(package):
    try:
        return importlib.util.find_spec(package) is not None
    except ValueError:   # in sys.modules without a spec (put there by hand): it is there
        return True


def folder(cfg, kind):
    return os.path.join(cfg.RESULTS_ROOT, "scalars", cfg.VERSION, kind)


class VisualDLWriter:
    def __init__(self, path):
        from visualdl import LogWriter
        self.path = path
        self._writer = LogWriter(logdir=path)

    def scalar(self, tag, value, step):
        self._writer.add_scalar(tag=tag, value=float(value), step=int(step))

    def flush(self):
        self._writer.flush()

    def close(self):
        self._writer.close()


class TensorBoardWriter:
    def __init__(self, path):
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
        self.path = path
        self._event, self._summary = Event, Summary
        self._writer = EventFileWriter(path)

    def scalar(self, tag, value, step):
        value = self._summary.Value(tag=tag, simple_value=float(value))
        self._writer.add_event(self._event(wall_time=time.time(), step=int(step),
                                           summary=self._summary(value=[value])))

    def flush(self):
        self._writer.flush()

    def close(self):
        self._writer.close()


WRITERS = {VISUALDL: VisualDLWriter, TENSORBOARD: TensorBoardWriter}


class Scalars:
    """The writers of one run (none when SCALAR_LOGS is False or neither package is installed); a run resumed under
    the same VERSION adds a file beside the earlier ones, which the dashboards read as one run."""

    def __init__(self, writers=()):
        self.writers = list(writers)

    @classmethod
    def open(cls, cfg, available=installed):
        if not cfg.SCALAR_LOGS:
            return cls()
        writers = []
        for kind, writer in WRITERS.items():
            if available(kind):
                path = folder(cfg, kind)
                os.makedirs(path, exist_ok=True)
                try:
                    writers.append(writer(path))
                except ImportError as exc:   # installed but broken (a missing dependency): the run goes on without
                    log.warning(f"SCALAR_LOGS: {kind} is installed but cannot be imported ({exc}); no {kind} scalars")
                    continue
                log.info(f"{kind} scalars: {path}")
        return cls(writers)

    def scalar(self, tag, value, step):
        for writer in self.writers:
            writer.scalar(tag, value, step)

    def flush(self):
        for writer in self.writers:
            writer.flush()

    def close(self):
        for writer in self.writers:
            writer.close()
