"""core/logs.py: what the command lines show of the library's log records."""
import ast
import logging
import pathlib

import pytest

from core import logs


@pytest.fixture
def restore_loggers():
    saved = {name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers)) for name in logs.PACKAGES}
    yield
    for name, (level, handlers) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers[:] = handlers


def test_info_on_stdout_warnings_on_stderr_plain_lines_no_debug(restore_loggers, capsys):
    logs.configure()
    logging.getLogger("core.engine").info("Epoch 1: loss 0.5")
    logging.getLogger("deploy.export").warning("note: static export runs on Paddle")
    logging.getLogger("core.data.glove").debug("vocabulary read from cache x.json")
    out, err = capsys.readouterr()
    assert out == "Epoch 1: loss 0.5\n"
    assert err == "note: static export runs on Paddle\n"


def test_a_level_shows_the_detail_too(restore_loggers, capsys):
    logs.configure(logging.DEBUG)
    logging.getLogger("core.data.glove").debug("vocabulary read from cache x.json")
    assert capsys.readouterr().out == "vocabulary read from cache x.json\n"


def test_configuring_twice_shows_each_line_once_on_the_current_stdout(restore_loggers, capsys):
    logs.configure()
    logs.configure()                               # a second run in one process (the tests call run.main often)
    logging.getLogger("backends.torch.backend").info("once")
    assert capsys.readouterr().out == "once\n"      # capsys's stream, which was not sys.stdout at configure()


def test_the_root_logger_and_other_libraries_are_left_alone(restore_loggers, capsys):
    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    logs.configure()
    assert (root.level, list(root.handlers)) == before
    logging.getLogger("onnxscript").info("a pass ran")
    assert capsys.readouterr().out == ""


def test_library_records_still_reach_the_root_logger(restore_loggers, caplog):
    logs.configure()
    with caplog.at_level(logging.INFO):
        logging.getLogger("core.data.glove").info("word vectors")
    assert caplog.messages == ["word vectors"]


# Command-line modules print their results and end with sys.exit; in these two only main() does.
COMMAND_LINES = ("convert/cli.py", "convert/__main__.py", "deploy/__main__.py")
MAINS_IN_LIBRARY_MODULES = ("core/data/demo.py", "core/data/demo_images.py", "core/data/feature_store.py")


@pytest.mark.parametrize("package", ["core", "formats", "backends", "convert", "deploy"])
def test_library_code_neither_prints_nor_exits(package):
    root = pathlib.Path(__file__).resolve().parents[1]
    found = []
    for path in sorted((root / package).rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in COMMAND_LINES:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        allowed = set()
        if rel in MAINS_IN_LIBRARY_MODULES:
            main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
            allowed = {id(n) for n in ast.walk(main)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and id(node) not in allowed and \
                    ast.unparse(node.func) in ("print", "sys.exit", "exit", "quit"):
                found.append(f"{rel}:{node.lineno} {ast.unparse(node.func)}")
    assert found == []


def test_a_line_under_an_open_progress_bar_goes_through_tqdm_write(capsys):
    """A report line while the epoch's bar is open is written by tqdm.write (which clears the bar and redraws it), not
    glued to the end of the bar's line; without an open bar it is a plain line."""
    import io

    from tqdm import tqdm

    from core.logs import configure
    configure()
    logger = logging.getLogger("core.test_bars")
    logger.info("before")
    sink = io.StringIO()
    with tqdm(total=3, file=sink, mininterval=0) as bar:
        bar.update(1)
        calls = []
        real = tqdm.write
        tqdm.write = classmethod(lambda cls, s, file=None, end="\n", nolock=False: calls.append((s, file)))
        try:
            logger.info("under the bar")
        finally:
            tqdm.write = real
    logger.info("after")
    assert [s for s, _ in calls] == ["under the bar"]
    out = capsys.readouterr().out
    assert "before\n" in out and "after\n" in out and "under the bar" not in out
