"""What a command line prints for a bad input or a failing disk: one line naming the file, key or flag.

The project's errors are subclasses of these, so a command line catches them here without importing the layers
that define them: ConfigError, the data errors, CheckpointReadError, CheckpointMismatch, BundleError and ExportError
are ValueErrors (a non-UTF-8 file's NotUtf8 too), RefusedPickle is a pickle.UnpicklingError, and a missing,
unreadable, unwritable or full disk's file an OSError.
"""
import errno
import os
import pickle

USER_ERRORS = (ValueError, OSError, pickle.UnpicklingError)


def _message(exc):
    in_the_way = _file_in_the_way(exc)
    if in_the_way is not None:
        text = f"{in_the_way}: a file where a folder is needed"
        return text if os.fspath(exc.filename) == in_the_way else f"{text} (for {exc.filename})"
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
        return text if exc.filename2 is None else f"{text} (-> {exc.filename2})"
    return str(exc)


def one_line(exc):
    """The message of ``exc`` on one line; an OSError as '<file>: <what happened>' (-> '<other file>')."""
    return " ".join(_message(exc).split()) or type(exc).__name__


def error_line(exc):
    """'config error: ...' for a configuration error, 'error: ...' for anything else: the message's first line on one
    line. A message with more lines on purpose (the data layout expected where a file is missing) keeps them below,
    indented, as hints."""
    from core.config import ConfigError  # here: the command lines import this module before any config is read
    lines = [" ".join(line.split()) for line in _message(exc).splitlines()]
    lines = [line for line in lines if line] or [type(exc).__name__]
    prefix = "config error" if isinstance(exc, ConfigError) else "error"
    return "\n  ".join([f"{prefix}: {lines[0]}"] + lines[1:])


def file_in_the_way(path):
    """The file that stands at ``path`` or at one of its folders, where a folder is needed; None when there is none."""
    path = os.fspath(path)
    while path and not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    return path if path and os.path.isfile(path) else None


def _file_in_the_way(exc):
    """For makedirs' 'File exists' / 'Not a directory': the file standing where a folder must be, or None."""
    if not isinstance(exc, OSError) or exc.errno not in (errno.EEXIST, errno.ENOTDIR) or exc.filename is None:
        return None
    return file_in_the_way(exc.filename)
