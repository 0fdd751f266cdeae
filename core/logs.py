"""What the command lines show. Library modules log to their module's logger (``logging.getLogger(__name__)``) and
print nothing; each command line's main() calls :func:`configure`, which shows the project's records as plain lines:
INFO and DEBUG on stdout, WARNING and above on stderr.

The handler is put on the project's package loggers, never on the root logger: Paddle's import gives the root logger
a handler of its own (backends/paddle/__init__.py takes it off again), and a program that imports this project keeps
its own logging set-up.

Levels: INFO is what a run reports (epoch summaries, accuracies, files written), always shown by a command line;
DEBUG is detail (e.g. how the DataLoader workers were sized), shown with ``--VERB=True`` (the default). ``--VERB=False``
hides DEBUG and the per-step progress bar (core/engine.py), as openvqa's VERBOSE hides its per-step lines.
"""
import logging
import sys

PACKAGES = ("core", "formats", "backends", "convert", "deploy", "bench")


class _ConsoleHandler(logging.Handler):
    """``%(message)s`` lines to the sys.stdout / sys.stderr of the moment of each record (not of configure(): a
    test's captured stream, a redirect_stdout)."""

    def __init__(self):
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record):
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def configure(verbose: bool = True) -> None:
    """Show the project's records on the console: level DEBUG when ``verbose``, else INFO. Calling it again (one
    process, several runs) replaces the handler it set before, so no line is shown twice."""
    level = logging.DEBUG if verbose else logging.INFO
    for name in PACKAGES:
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if isinstance(h, _ConsoleHandler)]:
            logger.removeHandler(handler)
        logger.addHandler(_ConsoleHandler())
        logger.setLevel(level)
