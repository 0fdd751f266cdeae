"""What the command lines show. Library modules log to their module's logger (``logging.getLogger(__name__)``) and
print nothing; each command line's main() calls :func:`configure`, which shows the project's INFO records as plain
lines on stdout and its warnings on stderr.

The handler is put on the project's package loggers, never on the root logger: Paddle's import gives the root logger
a handler of its own (backends/paddle/__init__.py takes it off again), and a program that imports this project keeps
its own logging set-up. Records still propagate to the root logger, so such a program (and pytest's caplog) sees them.

Levels: INFO is what a run reports (epoch summaries, accuracies, files written, notes), always shown by a command
line; DEBUG is detail a command line does not show (cache hits and writes), for a program that sets the level itself.
``--VERB`` (VERBOSE) is not a logging level: ``--VERB=False`` hides the per-step output only, the progress bar and the
LOG_EVERY step lines (core/progress.py; the step lines stay in the run log), as openvqa's VERBOSE hides its per-step
lines, and the run's report stays.
"""
import logging
import sys

PACKAGES = ("core", "formats", "backends", "convert", "deploy", "bench")


class _ConsoleHandler(logging.Handler):
    """``%(message)s`` lines, below WARNING to stdout, the rest to stderr: the sys.stdout / sys.stderr of the moment
    of each record (not of configure(): a test's captured stream, a redirect_stdout)."""

    def __init__(self):
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record):
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            text = self.format(record)
            bars = _active_bars()
            if bars is not None:   # a line printed under a progress bar would be glued to it: tqdm clears and redraws
                bars.write(text, file=stream)
            else:
                stream.write(text + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def _active_bars():
    """tqdm's class while a progress bar is open (core/progress.py), else None; tqdm is not imported for this."""
    module = sys.modules.get("tqdm")
    bars = getattr(module, "tqdm", None)
    return bars if bars is not None and getattr(bars, "_instances", None) else None


def configure(level: int = logging.INFO) -> None:
    """Show the project's records of ``level`` and above on the console. Calling it again (one process, several
    runs) replaces the handler it set before, so no line is shown twice."""
    for name in PACKAGES:
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if isinstance(h, _ConsoleHandler)]:
            logger.removeHandler(handler)
        logger.addHandler(_ConsoleHandler())
        logger.setLevel(level)
