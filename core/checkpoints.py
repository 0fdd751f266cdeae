"""Atomic file writes and the original names of checkpoints, logs and result files.

ckpts/ckpt_<VERSION>/epoch<N><ext> (+ best<ext>, latest<ext>: core/ckpt_policy.py); results/log/log_run_<version>.txt;
results/cache/result_run_<version>.json; results/result_test/result_run_<CKPT_VERSION>_epoch<CKPT_EPOCH>.json
(_best / _latest for --CKPT_E=best / latest); results/pred/...pkl.
Runs other than training name their log and val results after the checkpoint they evaluate (CKPT_VERSION).
"""
import contextlib
import fcntl
import functools
import inspect
import os
import re
import stat
import tempfile

# The temp files _temp_in makes: .<name>.<mkstemp's 8 random characters>.tmp<name's extension>
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp(?P<ext>(\.[^.]*)?)")


def _temp_in(path):
    """A new empty temp file next to ``path``, keeping its extension (some savers insist on one), with the mode
    ``path`` will have: its current one when it exists, else what the umask gives a new file (mkstemp's is 0600).

    The temp file is flock'd while it is written (the lock goes with the returned fd); the stale temp files of
    writers that were killed (unlocked, non-empty) are removed first."""
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    remove_stale_temps(folder)
    ext = os.path.splitext(name)[1]
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f".tmp{ext}", dir=folder)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        mode = _new_file_mode()
    os.fchmod(fd, mode)
    return fd, tmp


def remove_stale_temps(folder):
    """Remove the temp files of our naming in ``folder`` that a killed save left: those no live writer holds
    locked. An empty one is kept: a writer's temp is empty between its creation and its lock."""
    try:
        names = [n for n in os.listdir(folder) if n.startswith(".") and ".tmp" in n]
    except OSError:
        return
    for name in names:
        m = _TEMP_NAME.fullmatch(name)
        if m is None or os.path.splitext(m.group("name"))[1] != m.group("ext"):
            continue
        path = os.path.join(folder, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue                      # a live writer's
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        finally:
            os.close(fd)


def _new_file_mode():
    """The permission bits open() would give a new file under the current umask."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync(path):
    with open(path, "rb") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def _naming(path):
    """OSErrors inside name ``path``: a failed write() names no file (a full disk) and a failed temp file its own
    hidden name (a read-only folder). Errors naming another file (a folder that is a file) are left as they are."""
    try:
        yield
    except OSError as exc:
        name = os.path.basename(os.fspath(path))
        if exc.errno is None or (exc.filename is not None
                                 and not os.path.basename(os.fspath(exc.filename)).startswith(f".{name}.")):
            raise
        raise OSError(exc.errno, exc.strerror, os.fspath(path)) from exc


def _errors_name_the_target(write):
    """``write(path, ...)`` (a function or a generator) with its OSErrors naming ``path`` (_naming)."""
    if inspect.isgeneratorfunction(write):
        @functools.wraps(write)
        def wrapper(path, *args, **kwargs):
            with _naming(path):
                return (yield from write(path, *args, **kwargs))
    else:
        @functools.wraps(write)
        def wrapper(path, *args, **kwargs):
            with _naming(path):
                return write(path, *args, **kwargs)
    return wrapper


@contextlib.contextmanager
@_errors_name_the_target
def atomic_write(path, mode="wb", encoding=None):
    """Yield a file object for a temp file beside ``path``; on success fsync and rename it over ``path``.

    On an exception the temp file is removed and ``path`` keeps its old content.
    """
    if "w" not in mode:
        raise ValueError(f"atomic_write: mode must write ('w' or 'wb'), got {mode!r}")
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    fd, tmp = _temp_in(path)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, path)             # while the temp file is still open and locked
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


@_errors_name_the_target
def atomic_save(path, writer):
    """Call ``writer(tmp_path)`` (for savers that take a path), then rename the temp file over ``path``."""
    fd, tmp = _temp_in(path)
    try:
        writer(tmp)
        if not os.path.isfile(tmp):
            raise FileNotFoundError(f"{path}: the writer did not write its temp file {tmp}")
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    finally:
        os.close(fd)                          # held (and so locked) until the rename


def _in_dir(*parts):
    folder = os.path.join(*parts[:-1])
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, parts[-1])


def _run_version(cfg, version):
    """The name a run's log and val results go under: VERSION when training, else CKPT_VERSION."""
    if version is not None:
        return version
    return cfg.VERSION if cfg.RUN_MODE == "train" else cfg.CKPT_VERSION


def ckpt_dir(cfg, version=None):
    path = os.path.join(cfg.CKPTS_ROOT, f"ckpt_{version or cfg.VERSION}")
    os.makedirs(path, exist_ok=True)
    return path


def ckpt_path(cfg, epoch, ext, version=None):
    """<CKPTS_ROOT>/ckpt_<version>/epoch<epoch><ext> (epoch = number of finished epochs)."""
    if not ext.startswith("."):
        raise ValueError(f"checkpoint extension must start with '.', got {ext!r}")
    return os.path.join(ckpt_dir(cfg, version), f"epoch{int(epoch)}{ext}")


def saved_epochs(folder):
    """{epoch: [extensions]} of the epoch<N>.* files in ``folder`` (empty if it does not exist)."""
    found = {}
    if os.path.isdir(folder):
        for name in os.listdir(folder):
            m = re.fullmatch(r"epoch(\d+)(\..+)", name)
            if m:
                found.setdefault(int(m.group(1)), []).append(m.group(2))
    return {epoch: sorted(exts) for epoch, exts in sorted(found.items())}


# The files one epoch's save writes, by its weights file's extension (backends/*/checkpoint.py: torch's openvqa
# container; paddle's state dict and its optimizer state).
SAVED_TOGETHER = {".pkl": (".pkl",), ".pdparams": (".pdparams", ".pdopt")}
# The weight files of the two backends; every backend reads both.
CHECKPOINT_EXTS = tuple(SAVED_TOGETHER)
# What --CKPT_E takes besides an epoch number: the copies core/ckpt_policy.py keeps in a run folder.
EPOCH_ALIASES = ("best", "latest")


def checkpoint_stem(ckpt_epoch):
    """The file stem of a CKPT_EPOCH: 'epoch13' for 13, 'best' / 'latest' for those."""
    return ckpt_epoch if ckpt_epoch in EPOCH_ALIASES else f"epoch{int(ckpt_epoch)}"


def resume_path(cfg, ext):
    """The checkpoint a val/test/resumed run loads: CKPT_PATH, else ckpts/ckpt_<CKPT_VERSION>/epoch<CKPT_EPOCH><ext>
    (best<ext> / latest<ext> for CKPT_EPOCH 'best' / 'latest'), else the same epoch saved by the other framework
    (CHECKPOINT_EXTS)."""
    if cfg.CKPT_PATH is not None:
        if not os.path.isfile(cfg.CKPT_PATH):
            raise FileNotFoundError(f"CKPT_PATH: no such file {cfg.CKPT_PATH}")
        return cfg.CKPT_PATH
    folder = os.path.join(cfg.CKPTS_ROOT, f"ckpt_{cfg.CKPT_VERSION}")
    stem = checkpoint_stem(cfg.CKPT_EPOCH)
    for candidate in (ext,) + tuple(e for e in CHECKPOINT_EXTS if e != ext):
        path = os.path.join(folder, f"{stem}{candidate}")
        if os.path.isfile(path):
            return path
    path = os.path.join(folder, f"{stem}{ext}")
    if not os.path.isdir(folder):
        runs = sorted(n[len("ckpt_"):] for n in os.listdir(cfg.CKPTS_ROOT) if n.startswith("ckpt_")) \
            if os.path.isdir(cfg.CKPTS_ROOT) else []
        raise FileNotFoundError(f"CKPT_VERSION: no checkpoint folder {folder}; "
                                f"runs in {cfg.CKPTS_ROOT}: {', '.join(runs) or 'none'}")
    epochs = saved_epochs(folder)
    listing = ", ".join(f"{e} ({' '.join(exts)})" for e, exts in epochs.items()) or "none"
    hint = ""
    if cfg.CKPT_EPOCH in EPOCH_ALIASES:
        hint = (f"; {cfg.CKPT_EPOCH} is kept after each epoch by runs of this version on"
                + ("" if cfg.CKPT_EPOCH == "latest" else " when they validate (EVAL_EVERY_EPOCH)"))
    elif cfg.CKPT_EPOCH in epochs:
        hint = f"; epoch{cfg.CKPT_EPOCH} has no weights file ({' or '.join(CHECKPOINT_EXTS)})"
    raise FileNotFoundError(f"CKPT_EPOCH: no checkpoint {path}; epochs saved there: {listing}{hint}")


def log_path(cfg, version=None):
    return _in_dir(cfg.RESULTS_ROOT, "log", f"log_run_{_run_version(cfg, version)}.txt")


def val_result_path(cfg, version=None, ext=".json"):
    return _in_dir(cfg.RESULTS_ROOT, "cache", f"result_run_{_run_version(cfg, version)}{ext}")


def _test_name(cfg):
    if cfg.CKPT_PATH is not None:
        return f"result_run_{cfg.CKPT_VERSION}"
    return f"result_run_{cfg.CKPT_VERSION}_{checkpoint_stem(cfg.CKPT_EPOCH)}"


def test_result_path(cfg, ext=".json"):
    return _in_dir(cfg.RESULTS_ROOT, "result_test", _test_name(cfg) + ext)


def pred_path(cfg):
    """Raw predictions of a test run with TEST_SAVE_PRED."""
    return _in_dir(cfg.RESULTS_ROOT, "pred", _test_name(cfg) + ".pkl")
