"""The run log results/log/log_run_<VERSION>.txt in the original openvqa format, and a reader for plotting.

Layout: the str(cfg) dump at the start of every (re)started training run, then per epoch a '=====' + nowTime header,
"Epoch: e, Loss: l, Lr: lr" / "Elapsed time: ..., Speed(s/batch): ..." and, after a validation, the accuracy lines.
Beyond the original's lines, read back by read_history and ignored by the original's readers:
- "Training on the <backend> backend from epoch <e>[, resumed from <checkpoint>]" after each config dump, so a run
  resumed in the other framework says which epochs ran where;
- "[Epoch e/E][Step s/S] Loss: ..." every LOG_EVERY steps (core/progress.py);
- a val or test run of a checkpoint appends an entry of its own: '=====' + nowTime, then "Evaluation (<mode>) of
  <checkpoint> (epoch e) on the <backend> backend", then its accuracy (val) or result file (test).
"""
import datetime
import os
import re

SEPARATOR = "=" * 37


class RunLog:
    """Appends to one log file; every write opens, writes and closes it, so the file is current after each call."""

    def __init__(self, path):
        self.path = path

    def _append(self, text):
        folder = os.path.dirname(self.path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()

    def start(self, cfg, resume=False, backend=None, first_epoch=1, resumed_from=None):
        """Begin a training run: remove the previous log unless resuming, then write the config dump and, given the
        ``backend``'s name, the line that marks the epochs from ``first_epoch`` on as run by it."""
        if not resume and os.path.exists(self.path):
            os.remove(self.path)
        self._append(str(cfg))
        if backend is not None:
            source = f", resumed from {resumed_from}" if resumed_from else ""
            self._append(f"Training on the {backend} backend from epoch {first_epoch}{source}\n")

    def evaluation(self, mode, checkpoint, backend, epoch=None, now=None):
        """The header of a val or test run's entry: date, checkpoint (and its epoch when known), backend."""
        now = now or datetime.datetime.now()
        which = f" (epoch {epoch})" if epoch is not None else ""
        self._append(f"{SEPARATOR}\nnowTime: {now.strftime('%Y-%m-%d %H:%M:%S')}\n"
                     f"Evaluation ({mode}) of {checkpoint}{which} on the {backend} backend\n")

    def epoch_header(self, now=None):
        now = now or datetime.datetime.now()
        self._append(f"{SEPARATOR}\nnowTime: {now.strftime('%Y-%m-%d %H:%M:%S')}\n")

    def epoch_end(self, epoch, loss, lr, elapsed, speed):
        """``epoch`` is the number of finished epochs (1-based), ``loss`` the mean loss per sample."""
        self._append(f"Epoch: {epoch}, Loss: {loss}, Lr: {lr}\n"
                     f"Elapsed time: {int(elapsed)}, Speed(s/batch): {speed}\n\n")

    def accuracy(self, overall, per_type):
        """Overall accuracy and a {type: accuracy} dict, in percent."""
        text = "Overall Accuracy is: %.02f\n" % overall
        text += "".join("%s : %.02f " % (name, value) for name, value in per_type.items())
        self._append(text + "\n\n")

    def line(self, text):
        self._append(text if text.endswith("\n") else text + "\n")


_EPOCH = re.compile(r"Epoch: (\d+), Loss: (\S+), Lr: (\S+)$")
_TIME = re.compile(r"Elapsed time: (\d+), Speed\(s/batch\): (\S+)$")
_OVERALL = re.compile(r"Overall Accuracy is: (\S+)$")
_TYPE = re.compile(r"(\S.*?) : (-?\d+(?:\.\d+)?) ")
_BACKEND = re.compile(r"Training on the (\S+) backend from epoch \d+")
_EVALUATION = re.compile(r"Evaluation \((?:val|test)\) of ")


def read_history(path):
    """Epoch records of a log, in epoch order: {'epoch', 'loss', 'lr', 'elapsed', 'speed'} plus 'val_overall' and
    'val_per_type' when a validation followed the epoch, and 'backend' in a log that marks it. A resumed run that
    repeats an epoch replaces it; the accuracy of a separate val run (its own entry) belongs to no epoch."""
    records = {}
    last = backend = None
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for i, text in enumerate(lines):
        m = _EPOCH.match(text)
        if m:
            last = {"epoch": int(m.group(1)), "loss": float(m.group(2)), "lr": float(m.group(3))}
            if backend is not None:
                last["backend"] = backend
            records[last["epoch"]] = last
            continue
        m = _BACKEND.match(text)
        if m:
            backend, last = m.group(1), None
            continue
        if _EVALUATION.match(text):
            last = None
            continue
        m = _TIME.match(text)
        if m and last is not None:
            last.update(elapsed=int(m.group(1)), speed=float(m.group(2)))
            continue
        m = _OVERALL.match(text)
        if m and last is not None:
            last["val_overall"] = float(m.group(1))
            following = lines[i + 1] + " " if i + 1 < len(lines) else ""
            last["val_per_type"] = {name: float(v) for name, v in _TYPE.findall(following)}
    return [records[e] for e in sorted(records)]


def backend_spans(history):
    """[(backend, first epoch, last epoch)] of consecutive epochs run by one backend, in epoch order; epochs of a log
    that does not mark its backend are left out."""
    spans = []
    for record in history:
        name = record.get("backend")
        if name is None:
            continue
        if spans and spans[-1][0] == name and spans[-1][2] == record["epoch"] - 1:
            spans[-1] = (name, spans[-1][1], record["epoch"])
        else:
            spans.append((name, record["epoch"], record["epoch"]))
    return spans
