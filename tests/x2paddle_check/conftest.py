"""Optional: collected only where x2paddle is installed (it is in no requirements file; the README's "Why not x2paddle
/ PaConvert" says how it was run). Not collected elsewhere rather than skipped, so that it never passes unrun."""
import importlib.util


def pytest_ignore_collect(collection_path, config):
    return importlib.util.find_spec("x2paddle") is None
