"""What a training run keeps in its folder after each epoch, on top of the epoch<N> files the trainer saves:

- latest<ext>: the files of the last finished epoch (latest.pkl; latest.pdparams + latest.pdopt);
- best<ext>: those of the epoch with the best validation score (the task's main metric, 'overall': VQA accuracy,
  classification top-1), when the run validates (EVAL_EVERY_EPOCH); its epoch and score in best.json. A tie keeps
  the earlier epoch;
- CKPT_KEEP_LAST=N: the epoch files of all but the last N epochs are removed (default None: all kept, as openvqa);
  best and latest never are.
best and latest are hard links to the epoch's files where the file system allows (no extra space; the trainer
replaces a file by renaming a new one over it, so a link keeps the content it was made with), else copies. Each is
put in place by a rename, the weights file last, as the trainer writes a pair. --CKPT_E=best / latest loads them
(core/checkpoints.resume_path) for val, test, export and resume.

An epoch saved again replaces that epoch: the trainer renames its new files over its own framework's, and
remove_replaced (called by the engine right after the save, and again by epoch_saved) removes the other framework's
files of the same epoch (a run resumed from epoch 3 of a torch run by paddle would otherwise leave the abandoned run's
epoch4.pkl beside its own epoch4.pdparams, and resume_path, which prefers the loading backend's extension, would give
torch the stale one; latest would link both). best is left as it is: the best-validated epoch of any run of the
folder, named with its score in best.json.
"""
import contextlib
import json
import logging
import os
import shutil

from core.checkpoints import CHECKPOINT_EXTS, SAVED_TOGETHER, atomic_save, atomic_write, saved_epochs

log = logging.getLogger(__name__)

ALIASES = ("best", "latest")
BEST_RECORD = "best.json"
METRIC = "overall"


def checkpoint_files(folder, stem, weights=CHECKPOINT_EXTS):
    """{extension: name} of <stem>.* in ``folder`` (stem 'epoch3', 'best', 'latest'), the weights file (an extension
    of ``weights``) last."""
    found = {}
    if os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            base, dot, ext = name.partition(".")
            if base == stem and dot and name != BEST_RECORD:
                found["." + ext] = name
    return dict(sorted(found.items(), key=lambda item: item[0] in weights))


def _place(source, target):
    """``target`` made a hard link to (or, where links fail, a copy of) ``source``, put in place by a rename."""
    folder, name = os.path.split(target)
    temp = os.path.join(folder, f".{name}.{os.getpid()}.link")
    with contextlib.suppress(FileNotFoundError):
        os.remove(temp)
    try:
        os.link(source, temp)
    except OSError:
        atomic_save(target, lambda tmp: shutil.copyfile(source, tmp))
        return
    try:
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)
        raise


def point(folder, alias, epoch, weights=CHECKPOINT_EXTS):
    """Make <alias>.* the files of epoch<epoch>.* (files of the alias that epoch lacks are removed first); ``weights``
    the extensions of a weights file (a backend's own checkpoint_ext added by epoch_saved)."""
    source = checkpoint_files(folder, f"epoch{int(epoch)}", weights)
    if not any(ext in weights for ext in source):
        raise FileNotFoundError(f"{folder}: epoch{int(epoch)} has no weights file ({' or '.join(weights)}) "
                                f"to make {alias} of")
    for ext, name in checkpoint_files(folder, alias, weights).items():
        if ext not in source:
            os.remove(os.path.join(folder, name))
    for ext, name in source.items():
        _place(os.path.join(folder, name), os.path.join(folder, alias + ext))


def best_record(folder):
    """best.json of a run folder ({'epoch', 'score', 'metric'}), or None when missing or unreadable."""
    try:
        with open(os.path.join(folder, BEST_RECORD), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("score"), (int, float)) else None


def prune(folder, epoch, keep_last):
    """Remove the epoch files of epochs up to ``epoch - keep_last``; returns the epochs removed."""
    removed = []
    for old in saved_epochs(folder):
        if old <= epoch - keep_last:
            for name in reversed(checkpoint_files(folder, f"epoch{old}").values()):   # the weights file first
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(folder, name))
            removed.append(old)
    return removed


def remove_replaced(folder, epoch, ext):
    """Remove the files of epoch<epoch> that a save with weights extension ``ext`` did not write (another
    framework's, from an earlier run of this folder), the weights file first; returns their names."""
    own = SAVED_TOGETHER.get(ext)
    if own is None:
        return []
    theirs = {e for exts in SAVED_TOGETHER.values() for e in exts} - set(own)
    stale = [name for other, name in reversed(checkpoint_files(folder, f"epoch{int(epoch)}").items())
             if other in theirs]
    for name in stale:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(folder, name))
    if stale:
        log.warning("%s: removed %s, an earlier run's checkpoint of epoch %d in the other framework's format: "
                    "epoch %d is now this run's epoch%d%s", folder, ", ".join(stale), epoch, epoch, epoch, ext)
    return stale


def epoch_saved(cfg, ckpt, epoch, score=None):
    """After epoch ``epoch`` was saved to ``ckpt`` (and validated, with ``score`` the task's main metric): remove the
    other framework's files of that epoch, point latest at it, best when ``score`` beats best.json's, and remove
    what CKPT_KEEP_LAST lets go. Returns {'best': bool, 'removed': [epochs], 'replaced': [file names]}."""
    folder = os.path.dirname(os.path.abspath(ckpt))
    ext = os.path.splitext(ckpt)[1]
    replaced = remove_replaced(folder, epoch, ext)
    weights = tuple(dict.fromkeys(CHECKPOINT_EXTS + (ext,)))
    point(folder, "latest", epoch, weights)
    record = best_record(folder)
    better = score is not None and (record is None or float(score) > float(record["score"]))
    if better:
        point(folder, "best", epoch, weights)
        with atomic_write(os.path.join(folder, BEST_RECORD), "w") as f:
            json.dump({"epoch": int(epoch), "score": float(score), "metric": METRIC}, f)
    keep = cfg.CKPT_KEEP_LAST
    return {"best": better, "removed": prune(folder, epoch, int(keep)) if keep else [], "replaced": replaced}
