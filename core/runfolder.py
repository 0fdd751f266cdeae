"""A training run's folder, ckpts/ckpt_<VERSION> (with its log, results/log/log_run_<VERSION>.txt): checked, locked and
never taken from another run.

- The folders a run writes (the run folder, results/log, results/cache) must be folders and writable: checked before
  the data is read, not after the first epoch.
- A run owns its folder under an fcntl.flock on <folder>/.run.lock (holding the owner's pid); a second run of the same
  name is refused. The OS drops the lock when the owner exits or is killed, so a crash never leaves it held.
- A folder holding another run (epoch files, or a log of that name) is refused unless this run resumes a checkpoint
  of that folder, or OVERWRITE is set, which removes that run's epoch files and log first.
- A run resumed without a VERSION continues the run it resumes (core/config.py resumed_run_name); resumed from an
  earlier epoch than its last, it rewrites the later epochs, and says so: saving an epoch again also removes the
  other framework's files of it (core/ckpt_policy.py).
"""
import contextlib
import fcntl
import logging
import os
import re
import tempfile

from core.checkpoints import saved_epochs
from core.ckpt_policy import best_record

LOCK_FILE = ".run.lock"
logger = logging.getLogger(__name__)


class RunFolderError(ValueError):
    """A run folder that is taken (another run's files, or its lock held), or a folder that cannot be written."""


def run_folder(cfg):
    return os.path.join(cfg.CKPTS_ROOT, f"ckpt_{cfg.VERSION}")


def run_log(cfg):
    return os.path.join(cfg.RESULTS_ROOT, "log", f"log_run_{cfg.VERSION}.txt")


def check_writable(folder, key):
    """Create ``folder`` if missing; RunFolderError naming ``key`` when it or a parent is a file, or it is not
    writable (probed with a file, which also catches read-only mounts and a full disk's refusals)."""
    path = folder
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    if path and not os.path.isdir(path):
        raise RunFolderError(f"{key}: {path} is not a folder (a file is in the way of {folder})")
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise RunFolderError(f"{key}: cannot write in {folder} ({exc.strerror or exc})") from None


def _lock(folder):
    """The open lock file of ``folder``, flock'd; RunFolderError naming the owner's pid when another run holds it.
    The owner removes the file before it lets go (_unlock), so a lock taken on a file that is no longer the one at
    ``path`` is a stale one: taken again on the new file."""
    path = os.path.join(folder, LOCK_FILE)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderError(f"VERSION: {folder} is in use by another run (pid {owner} holds {path}); wait for "
                                 "it, or give this run another --VERSION") from None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def _unlock(folder, fd):
    """Remove the lock file, then release it (a killed run's file stays, unlocked, and is taken over)."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(folder, LOCK_FILE))
    os.close(fd)


def _own_checkpoint(cfg, folder, resume_from):
    return bool(cfg.RESUME and resume_from and
                os.path.realpath(os.path.dirname(resume_from)) == os.path.realpath(folder))


def _refuse_or_clear_previous_run(cfg, folder, log, resume_from):
    epochs = saved_epochs(folder)
    if not epochs and not os.path.exists(log):
        return
    if _own_checkpoint(cfg, folder, resume_from):
        _say_what_a_rewind_rewrites(folder, resume_from, epochs)
        return
    if cfg.OVERWRITE:
        for name in epoch_files(folder):
            os.remove(os.path.join(folder, name))
        with contextlib.suppress(FileNotFoundError):
            os.remove(log)
        return
    held = f"epoch files ({', '.join(map(str, epochs))})" if epochs else f"no epoch files but its log {log}"
    if cfg.RESUME:
        raise RunFolderError(f"VERSION: {folder} holds another run's {held}, and the checkpoint to resume "
                             f"({resume_from}) is not from it; resume into a new --VERSION, or replace that run with "
                             "--SET OVERWRITE=True")
    raise RunFolderError(f"VERSION: {folder} holds an earlier run with {held}; continue it with --RESUME=True "
                         f"--CKPT_V={cfg.VERSION} --CKPT_E=N, replace it with --SET OVERWRITE=True, or give another "
                         "--VERSION")


def _epoch_of(folder, name, epochs):
    """The epoch the checkpoint file ``name`` of ``folder`` holds: from its name (epoch<N>.*), or for best.* /
    latest.* the epoch file it is a hard link to, else best.json's epoch for best; None when unknown (a copy whose
    epoch file was rewritten since)."""
    m = re.fullmatch(r"epoch(\d+)\..+", name)
    if m:
        return int(m.group(1))
    stem, _, ext = name.partition(".")
    if stem not in ("best", "latest"):
        return None
    path = os.path.join(folder, name)
    for epoch in epochs:
        with contextlib.suppress(OSError):
            if os.path.samefile(path, os.path.join(folder, f"epoch{epoch}.{ext}")):
                return epoch
    if stem == "best":
        record = best_record(folder)
        if record is not None and isinstance(record.get("epoch"), int):
            return record["epoch"]
    return None


def _say_what_a_rewind_rewrites(folder, resume_from, epochs):
    start = _epoch_of(folder, os.path.basename(resume_from), epochs)
    later = [e for e in epochs if start is not None and e > start]
    if later:
        saved = ", ".join(f"epoch{e} ({' '.join(epochs[e])})" for e in later)
        logger.warning(f"RESUME: {folder} continues from {os.path.basename(resume_from)}; this run rewrites its later "
                       f"epochs {saved} (saving one removes the other framework's files of it)")


def epoch_files(folder):
    """The names of the epoch<N>.* files in ``folder``, and the best.* / latest.* kept beside them
    (core/ckpt_policy.py)."""
    return sorted(n for n in os.listdir(folder) if re.fullmatch(r"(epoch\d+|best|latest)\..+", n))


@contextlib.contextmanager
def claim(cfg, resume_from=None):
    """Own the run folder of ``cfg`` for the duration of the block: folders checked, lock taken, a previous run
    refused (or cleared with OVERWRITE); ``resume_from`` is the checkpoint a resumed run loads."""
    folder = run_folder(cfg)
    check_writable(folder, "CKPTS_ROOT")
    for sub in ("log", "cache"):
        check_writable(os.path.join(cfg.RESULTS_ROOT, sub), "RESULTS_ROOT")
    fd = _lock(folder)
    try:
        _refuse_or_clear_previous_run(cfg, folder, run_log(cfg), resume_from)
        yield folder
    finally:
        _unlock(folder, fd)
