"""What a command line prints for a bad input or a failing disk: one line naming the file, key or flag.

The project's errors are subclasses of these, so a command line catches them here without importing the layers
that define them: ConfigError, the data errors, CheckpointReadError, CheckpointMismatch, BundleError and ExportError
are ValueErrors (a non-UTF-8 file's UnicodeDecodeError too), RefusedPickle is a pickle.UnpicklingError, and a
missing, unreadable, unwritable or full disk's file an OSError.
"""
import errno
import os
import pickle

from core.config import ConfigError

USER_ERRORS = (ValueError, OSError, pickle.UnpicklingError)


def one_line(exc):
    """The message of ``exc`` on one line; an OSError as '<file>: <what happened>' (-> '<other file>')."""
    in_the_way = _file_in_the_way(exc)
    if in_the_way is not None:
        text = f"{in_the_way}: a file where a folder is needed"
        if os.fspath(exc.filename) != in_the_way:
            text += f" (for {exc.filename})"
    elif isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
        if exc.filename2 is not None:
            text += f" (-> {exc.filename2})"
    else:
        text = str(exc)
    return " ".join(text.split()) or type(exc).__name__


def _file_in_the_way(exc):
    """The file that stands where a folder must be (makedirs says 'File exists' or 'Not a directory'), or None."""
    if not isinstance(exc, OSError) or exc.errno not in (errno.EEXIST, errno.ENOTDIR) or exc.filename is None:
        return None
    path = os.fspath(exc.filename)
    while path and not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    return path if path and os.path.isfile(path) else None


def error_line(exc):
    """'config error: ...' for a configuration error, 'error: ...' for anything else."""
    prefix = "config error" if isinstance(exc, ConfigError) else "error"
    return f"{prefix}: {one_line(exc)}"
